"""Offline simulation of successive halving on recorded benchmark trajectories.

A benchmark results file holds every candidate's full fine-tuning trajectory, so the decisions a
successive-halving scheduler would have taken, and what they would have cost, can be replayed
without training anything.

Successive halving (synchronous, as in Jamieson & Talwalkar 2016 and one bracket of Hyperband)
----------------------------------------------------------------------------------------------
Candidates ``0..n-1``; rung budgets ``r_0 < r_1 < ...`` are fractions of the full budget ``T``
(:func:`halving_budgets`: ``r_k = min_budget * eta**k``, capped at ``max_budget``). At rung ``k``
every survivor is trained to ``r_k`` and ranked by its score *at that budget*; the top
``ceil(len / eta)`` continue. It stops when one candidate remains or when the last (maximum)
budget has been scored, where the best survivor is picked. The pick is then trained on to ``T``.

- **Ranking.** Higher scores are better. A failed score (``None``, NaN or infinite: the method
  could not score that candidate at that budget) ranks below every scored candidate. Ties, failed
  candidates included, are broken by candidate index: the lower index ranks first.
- **Compute.** ``sum over candidates of the budget each was trained to`` (the pick counting as
  ``T``), divided by ``n * T``: the fraction of the compute of training every candidate to ``T``.
  With per-candidate ``costs`` (the seconds of a full run), each candidate's share is weighted
  by its cost instead: the fraction of the *time* of training everything.

Simulation protocol on a benchmark (:func:`simulate_results`)
-------------------------------------------------------------
- **Cells.** One ranking problem per target and per seed ``s`` (the seed protocol of
  :mod:`ncap.bench.evaluate`): the candidates are every model, the scores come from the runs of
  seed ``s`` and the truth of a model is the final accuracy (mean validation accuracy over the last
  epoch) of its runs with the *other* seeds. Figures are means over all cells (targets x seeds);
  the report half (seeds after the first, on which nothing was chosen) is given separately.
- **Scores** are those of :func:`ncap.bench.evaluate.score_run` at each rung's budget (only the
  points with ``step <= budget * T * steps_per_epoch``), computed once per (run, budget, method).
- **Cell-level scores** (``fit/...``, ``ravg/...``: the pre-registered study's fitted models and
  rank averages, :mod:`ncap.bench.simulate_cells`) are those of
  :func:`ncap.bench.study.combine.cell_scores` on the study's score table built at the rung
  budgets: a fitted model (e.g. ``fit/base``) is trained, for cell (target ``t``, seed ``s``) at
  budget ``r_k``, on the runs of seed ``s`` of the *other* targets at ``r_k`` (leave one target
  out), with the other seed's final accuracy as truth, and predicts the final accuracy of the runs
  of ``t``; it never reads a run of ``t``'s other seed. A rank average ranks among all the cell's
  candidates at ``r_k``, as in the study (a live run would only have the survivors: this uses the
  dropped candidates' trajectories beyond their last rung, so its rows read more than a live run).
- **Regret** of a cell: ``max over models of truth - truth(pick)``, in accuracy points.
- **Baselines.** "train-all": every candidate trained to ``T``, the pick is the best last observed
  validation accuracy at ``T`` (compute 100%); and halving driven by the last observed accuracy
  (``last-observed``), which is what ASHA / Hyperband do.
- **Bootstrap over models**, paired: each replicate draws ``n`` models with replacement (a model
  drawn twice is two candidates with identical trajectories); the *same* draw is used for every
  target, seed, method and setting (models are the sampled unit, and a model good on one target
  tends to be good on the others). The halving is re-run on the drawn candidates (ties by position
  in the draw) and regrets averaged over cells; intervals are 95% percentile intervals, and a
  method's difference from last-observed halving is taken replicate by replicate. The cell-level
  scores are **refitted in every replicate** on the drawn models (a model drawn twice is two
  training rows of every other target too; rank averages re-ranked among the drawn candidates),
  so the intervals include the fitted model's variation with the model zoo; ``refit=False``
  fixes them per cell (fitted once on all models) and only resamples candidates.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ncap.bench.evaluate import (
    PAPER_FORM,
    SAME_BUDGET,
    _budget_step,
    baseline_context,
    final_accuracy,
    nc_grid,
    nc_name,
    unpack_results,
)
from ncap.bench.simulate_cells import CellScorer, is_cell_method
from ncap.bench.stats import percentile_interval
from ncap.predict.settings import PredictorSettings
from ncap.ranking import halving_core as core

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_SETTINGS",
    "HalvingResult",
    "HalvingSetting",
    "Rung",
    "halving_budgets",
    "halving_schedule",
    "score_methods",
    "simulate_results",
    "successive_halving",
    "write_simulation",
]

# ncap's default before the study, in the legacy spelling: nc/abs-mean/quadratic/b0/logit
NC_DEFAULT = nc_name(PredictorSettings(variant="abs-mean", features="quadratic", link="logit"))
DEFAULT_METHODS = (
    "last-observed",
    "tse",
    "tse-e1",
    "param-count",
    "source-accuracy",
    "logme",
    NC_DEFAULT,
    nc_name(PAPER_FORM),
)
TRAINING_FREE = ("param-count", "source-accuracy", "logme")
REFERENCE = "last-observed"  # the score ASHA / Hyperband use
TRAIN_ALL = "train-all"
FULL = 1.0


def _key(budget: float) -> float:
    """Budgets are rounded so that 0.025 * 3 and 0.075 are the same cache key."""
    return round(float(budget), 10)


# --------------------------------------------------------------------------------------------
# the halving core (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HalvingSetting:
    """One scheduler configuration: ``eta`` and the minimum and maximum budget (fractions of T)."""

    eta: float = 2
    min_budget: float = 0.025
    max_budget: float = 0.2

    @property
    def budgets(self) -> tuple[float, ...]:
        return halving_budgets(self.min_budget, self.eta, self.max_budget)

    @property
    def name(self) -> str:
        return f"eta{self.eta:g} {100 * self.min_budget:g}%-{100 * self.max_budget:g}%"


# eta 2 or 3, from 2.5% or 5% of T, up to 20% of T (the benchmark's largest early budget) or T
DEFAULT_SETTINGS = tuple(
    HalvingSetting(eta, lo, hi)
    for eta, lo, hi in itertools.product((2, 3), (0.025, 0.05), (0.2, 1.0))
)


@dataclass(frozen=True)
class Rung:
    """One rung: who was scored at ``budget`` (best first), who continued, who was dropped."""

    budget: float
    ranked: tuple[int, ...]  # candidates scored at this rung, best first
    scores: tuple[float | None, ...]  # their scores, in the same order (None = failed)
    promoted: tuple[int, ...]  # the first len(promoted) of ``ranked``
    dropped: tuple[tuple[int, float | None], ...]  # (candidate, score) for the rest


@dataclass(frozen=True)
class HalvingResult:
    """The rungs, the pick and the compute of one successive-halving run (see module doc)."""

    n: int
    eta: float
    budgets: tuple[float, ...]
    rungs: tuple[Rung, ...]
    pick: int
    trained_to: tuple[float, ...]  # per candidate, as a fraction of T (the pick: 1.0)
    compute: float  # fraction of training every candidate to T (cost-weighted with ``costs``)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "eta": self.eta,
            "budgets": list(self.budgets),
            "pick": self.pick,
            "compute": self.compute,
            "trained_to": list(self.trained_to),
            "rungs": [
                {
                    "budget": r.budget,
                    "ranked": list(r.ranked),
                    "scores": list(r.scores),
                    "promoted": list(r.promoted),
                    "dropped": [list(d) for d in r.dropped],
                }
                for r in self.rungs
            ],
        }


def halving_budgets(min_budget: float, eta: float, max_budget: float = FULL) -> tuple[float, ...]:
    """``min_budget * eta**k`` for k = 0, 1, ..., capped at ``max_budget`` (its last element):
    :func:`ncap.ranking.halving_core.halving_budgets` in fractions of T, rounded to 10 digits."""
    if not 0.0 < min_budget <= max_budget <= FULL:
        raise ValueError(
            f"need 0 < min_budget <= max_budget <= 1 (fractions of T); got {min_budget}, "
            f"{max_budget}."
        )
    return tuple(_key(b) for b in core.halving_budgets(min_budget, eta, max_budget))


def _check(n: int, budgets: Sequence[float], eta: float) -> tuple[float, ...]:
    budgets = tuple(float(b) for b in budgets)
    if n < 1:
        raise ValueError(f"successive halving needs at least one candidate; got n={n}.")
    if eta <= 1:
        raise ValueError(f"eta must be > 1; got {eta}.")
    if not budgets or any(not 0.0 < b <= FULL for b in budgets):
        raise ValueError(f"budgets must be fractions of T in (0, 1]; got {budgets}.")
    if any(b >= c for b, c in zip(budgets, budgets[1:])):
        raise ValueError(f"budgets must be strictly increasing; got {budgets}.")
    return budgets


def halving_schedule(n: int, budgets: Sequence[float], eta: float) -> list[tuple[float, int, int]]:
    """The rungs ``(budget, candidates scored, candidates kept)`` for ``n`` candidates.

    The counts depend only on ``n``, the budgets and ``eta``: ``kept = ceil(scored / eta)``, or 1 at
    the last budget; the schedule ends at the first rung that keeps one candidate. Empty for n=1.
    """
    budgets = _check(n, budgets, eta)
    schedule: list[tuple[float, int, int]] = []
    alive = n
    for k, budget in enumerate(budgets):
        if alive <= 1:
            break
        kept = core.kept_count(alive, eta, last=k == len(budgets) - 1)
        schedule.append((budget, alive, kept))
        alive = kept
    return schedule


def _as_scores(values: Any, n: int) -> np.ndarray:
    """Scores as float64 with NaN for failures (None, NaN, +-inf)."""
    if not isinstance(values, np.ndarray):
        values = [np.nan if v is None else float(v) for v in values]
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"scores_at must give {n} scores (one per candidate); got {arr.shape}.")
    return np.where(np.isfinite(arr), arr, np.nan)


def rank_candidates(scores: np.ndarray, candidates: Sequence[int]) -> list[int]:
    """``candidates`` best first by :func:`ncap.ranking.halving_core.rank`: higher score first,
    failures (NaN) last, ties by lower index (the candidates are named in index order)."""
    values = {c: None if np.isnan(scores[c]) else float(scores[c]) for c in candidates}
    return list(core.rank(values, sorted(candidates)))


def successive_halving(
    scores_at: Callable[[int], Sequence[float | None] | np.ndarray] | Sequence[Any],
    n: int,
    budgets: Sequence[float],
    eta: float = 2,
    *,
    costs: Sequence[float] | None = None,
) -> HalvingResult:
    """Synchronous successive halving over candidates ``0..n-1`` (see the module docstring).

    Parameters
    ----------
    scores_at
        ``scores_at(k)``: the scores of all ``n`` candidates at rung ``k``'s budget
        ``budgets[k]`` (higher is better; ``None``/NaN = failed, ranked last); only the
        survivors' entries are read. A sequence indexed by ``k`` works too.
    n
        The number of candidates.
    budgets
        Strictly increasing rung budgets, fractions of the full budget T; the last is the maximum.
    eta
        The reduction factor: the top ``ceil(len / eta)`` survivors of a rung continue.
    costs
        Optional per-candidate cost of training to T (e.g. seconds); the compute is then weighted
        by it. Default: every candidate costs the same.
    """
    budgets = _check(n, budgets, eta)
    get = scores_at if callable(scores_at) else scores_at.__getitem__
    weights = np.ones(n) if costs is None else np.asarray(costs, dtype=np.float64)
    if weights.shape != (n,) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"costs must be {n} non-negative numbers, not all zero.")
    trained = np.zeros(n)
    rungs: list[Rung] = []
    alive = list(range(n))
    for k, (budget, _, kept) in enumerate(halving_schedule(n, budgets, eta)):
        scores = _as_scores(get(k), n)
        ranked = rank_candidates(scores, alive)
        trained[ranked] = budget
        as_list = [None if np.isnan(scores[c]) else float(scores[c]) for c in ranked]
        rungs.append(
            Rung(
                budget=budget,
                ranked=tuple(ranked),
                scores=tuple(as_list),
                promoted=tuple(ranked[:kept]),
                dropped=tuple(zip(ranked[kept:], as_list[kept:])),
            )
        )
        alive = ranked[:kept]
    pick = alive[0]
    trained[pick] = FULL
    return HalvingResult(
        n=n,
        eta=eta,
        budgets=budgets,
        rungs=tuple(rungs),
        pick=pick,
        trained_to=tuple(float(t) for t in trained),
        compute=float((trained * weights).sum() / weights.sum()),
    )


def halving_batch(
    rows: Sequence[np.ndarray], schedule: Sequence[tuple[float, int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Many halving runs at once, with the rules of :func:`successive_halving` (those of
    :mod:`ncap.ranking.halving_core`, vectorised: a test checks that they agree).

    ``rows[k]`` has shape (B, n): the scores of the n candidates of each of B problems at rung k
    (NaN = failed). Returns the picks (B,) and the budget each candidate was trained to (B, n).
    """
    B, n = rows[0].shape if rows else (1, 1)
    alive = np.broadcast_to(np.arange(n), (B, n)).copy()
    trained = np.zeros((B, n))
    for (budget, _, kept), scores in zip(schedule, rows):
        s = np.take_along_axis(np.asarray(scores, dtype=np.float64), alive, axis=1)
        failed = ~np.isfinite(s)
        order = np.lexsort((alive, np.where(failed, 0.0, -s), failed), axis=-1)
        np.put_along_axis(trained, alive, budget, axis=1)
        alive = np.take_along_axis(alive, order[:, :kept], axis=1)
    picks = alive[:, 0]
    trained[np.arange(B), picks] = FULL
    return picks, trained


def regret(truth: Sequence[float], pick: int) -> float:
    """Accuracy points lost by taking ``pick`` instead of the truly best candidate."""
    truth = np.asarray(truth, dtype=np.float64)
    return float(100.0 * (truth.max() - truth[pick]))


# --------------------------------------------------------------------------------------------
# scores of a recorded run, restricted to the methods asked for
# --------------------------------------------------------------------------------------------


def _nc_settings() -> dict[str, Any]:
    return {nc_name(s): s for s in nc_grid()}


def known_methods(free: Mapping[str, Any]) -> set[str]:
    """The method names :func:`score_methods` can compute for a run with training-free ``free``."""
    proxies = {p for p in (free.get("proxies") or {}) if p != "param_count"}
    return set(_nc_settings()) | set(SAME_BUDGET) | {*TRAINING_FREE} | proxies


def score_methods(
    run: Mapping[str, Any],
    free: Mapping[str, Any],
    total_epochs: float,
    fraction: float,
    methods: Sequence[str],
) -> dict[str, tuple[float | None, str | None]]:
    """:func:`ncap.bench.evaluate.score_run` for ``methods`` only (the same values, less work).

    A non-finite score counts as a failure (None), as in :func:`ncap.bench.metrics.ranking_metrics`.
    """
    from ncap.predict.baselines import BASELINES
    from ncap.predict.capacitance import predict_from_points

    unknown = set(methods) - known_methods(free)
    if unknown:
        raise ValueError(
            f"unknown method(s) {sorted(unknown)}; known: {sorted(known_methods(free))}"
        )
    max_step = _budget_step(run, total_epochs, fraction)
    points = [p for p in run["points"] if p["step"] <= max_step]
    context = baseline_context(run, free, total_epochs)
    nc = _nc_settings()
    out: dict[str, tuple[float | None, str | None]] = {}
    for name in methods:
        value: float | None
        reason: str | None = None
        if name in nc:
            try:
                value = predict_from_points(points, nc[name], max_step)["predicted_accuracy"]
            except ValueError as err:
                value, reason = None, str(err).split(";")[0]
        elif name in BASELINES:
            if not points and name in SAME_BUDGET:
                value, reason = None, "no evaluation point within the budget"
            else:
                try:
                    value, info = BASELINES[name](points, max_step, context)
                except ValueError as err:
                    value, info = None, {"reason": str(err)}
                if value is None:
                    reason = str(info.get("reason") or info.get("failures"))
        elif name == "logme":
            value = free.get("logme")
            reason = None if value is not None else "no LogME score in the results"
        else:  # a zero-cost proxy recorded with the training-free scores
            value = free["proxies"][name]
            reason = (free.get("proxy_failures") or {}).get(name)
        if value is not None and not math.isfinite(float(value)):
            value, reason = None, reason or f"non-finite score {value!r}"
        out[name] = (None if value is None else float(value), reason)
    return out


def _score_job(job) -> dict[float, dict[str, tuple[float | None, str | None]]]:
    run, free, total_epochs, wanted = job
    return {b: score_methods(run, free, total_epochs, b, ms) for b, ms in wanted}


# --------------------------------------------------------------------------------------------
# the simulation on a results file
# --------------------------------------------------------------------------------------------


def _summary(point: float, boot: np.ndarray) -> dict[str, Any]:
    return {
        "value": float(point),
        "ci95": percentile_interval(boot),
        "boot_mean": float(boot.mean()),
    }


def run_key(target: str, model: str, seed: int) -> str:
    return f"{target}/{model}/s{seed}"


def simulate_results(
    results: Mapping[str, Any],
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    settings: Sequence[HalvingSetting] = DEFAULT_SETTINGS,
    replicates: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    scores: Mapping[str, Any] | None = None,
    keep_replicates: bool = False,
    sigma: Mapping[str, float] | None = None,
    refit: bool = True,
) -> dict[str, Any]:
    """Replay successive halving driven by each method on a benchmark's trajectories.

    Returns a JSON-ready dict (see the module docstring for the protocol): ``rows`` (one per
    method and setting, plus the ``train-all`` baseline) with the compute, the mean regret and
    their bootstrap intervals, the difference from last-observed halving and from train-all;
    ``cells``, every rung decision of every (target, seed); and ``scores``, the per-(run, budget)
    scores, which can be passed back as ``scores`` to skip recomputing them.

    ``last-observed`` is always simulated (it is the reference). ``workers=1`` scores in-process.
    ``keep_replicates`` adds each row's bootstrap replicates of the mean regret and compute.

    Methods named ``fit/...`` or ``ravg/...`` are the study's cell-level candidates
    (:mod:`ncap.bench.simulate_cells`): ``sigma`` orients the raw dynamics components of rank
    averages (the study's selection.json ``sigma``); ``refit`` refits them on the drawn models in
    every bootstrap replicate (default), else their scores are fixed per cell and only resampled.
    """
    start = time.perf_counter()
    seeds, total_epochs, models, targets, runs = unpack_results(results)
    missing = [
        run_key(t, m, s) for t in targets for m in models for s in seeds if (t, m, s) not in runs
    ]
    if missing or len(seeds) < 2:
        raise ValueError(
            "the simulation uses the seed protocol: every (target, model) needs a run with each of "
            f"at least two seeds (missing: {missing[:5]}{'...' if len(missing) > 5 else ''})."
        )
    methods = [REFERENCE] + [m for m in dict.fromkeys(methods) if m != REFERENCE]
    cell_methods = [m for m in methods if is_cell_method(m)]
    run_methods = [m for m in methods if not is_cell_method(m)]
    unknown = set(run_methods) - known_methods(results["training_free"][targets[0]][models[0]])
    if unknown:
        raise ValueError(f"unknown method(s): {sorted(unknown)}")
    settings = list(dict.fromkeys(settings))
    n = len(models)
    schedules = {st: halving_schedule(n, st.budgets, st.eta) for st in settings}
    train_all = [(FULL, n, 1)]  # every candidate trained to T, the best by last-observed at T

    # ---- scores: each (run, budget, method) once
    rung_budgets = sorted({b for sch in schedules.values() for b, _, _ in sch})
    wanted_budgets = {m: rung_budgets for m in run_methods}
    wanted_budgets[REFERENCE] = sorted(set(wanted_budgets[REFERENCE]) | {FULL})
    table: dict[str, dict[str, dict[str, Any]]] = {
        k: {b: dict(v) for b, v in per.items()} for k, per in (scores or {}).items()
    }
    jobs, job_keys = [], []
    for t, m, s in itertools.product(targets, models, seeds):
        have = table.get(run_key(t, m, s), {})
        wanted: dict[float, list[str]] = {}
        for method, budgets in wanted_budgets.items():
            for b in budgets:
                if method not in have.get(str(b), {}):
                    wanted.setdefault(b, []).append(method)
        if wanted:
            jobs.append(
                (
                    runs[(t, m, s)],
                    results["training_free"][t][m],
                    total_epochs,
                    sorted(wanted.items()),
                )
            )
            job_keys.append(run_key(t, m, s))
    if jobs:
        if workers == 1 or len(jobs) == 1:
            scored = list(map(_score_job, jobs))
        else:
            with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
                scored = list(pool.map(_score_job, jobs, chunksize=2))
        for key, per in zip(job_keys, scored):
            for b, vals in per.items():
                table.setdefault(key, {}).setdefault(str(b), {}).update(
                    {m: list(v) for m, v in vals.items()}
                )

    scorer = None
    if cell_methods:
        scorer = CellScorer.build(results, cell_methods, rung_budgets, sigma=sigma, workers=workers)

    def score_array(t: str, s: int, method: str, budget: float) -> np.ndarray:
        if scorer is not None and method in scorer.cands:
            return scorer.point(method, t, s, budget)
        vals = [table[run_key(t, m, s)][str(budget)][method][0] for m in models]
        return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)

    final = {k: final_accuracy(r) for k, r in runs.items()}
    cells = [(t, s) for t in targets for s in seeds]
    truth = {
        (t, s): np.array([np.mean([final[(t, m, o)] for o in seeds if o != s]) for m in models])
        for t, s in cells
    }
    seconds = {
        (t, s): np.array([float(runs[(t, m, s)]["seconds"]) for m in models]) for t, s in cells
    }
    failures: dict[str, int] = {}
    for method in methods:
        for b in wanted_budgets.get(method, rung_budgets):
            count = sum(int(np.isnan(score_array(t, s, method, b)).sum()) for t, s in cells)
            if count:
                failures[f"{method}@{b:g}"] = count

    # ---- point estimates, with every rung decision
    combos = [(m, st.name, st.budgets, st.eta, schedules[st]) for m in methods for st in settings]
    combos.append((REFERENCE, TRAIN_ALL, (FULL,), 2, train_all))
    cell_records = []
    point: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for method, name, budgets, eta, sched in combos:
        per = {"regret": [], "compute": [], "compute_time": []}
        for t, s in cells:
            rows = [score_array(t, s, method, b) for b, _, _ in sched]
            res = successive_halving(rows, n, budgets, eta)
            weighted = np.dot(res.trained_to, seconds[(t, s)]) / seconds[(t, s)].sum()
            r = regret(truth[(t, s)], res.pick)
            per["regret"].append(r)
            per["compute"].append(res.compute)
            per["compute_time"].append(float(weighted))
            cell_records.append(
                {
                    "target": t,
                    "seed": s,
                    "method": method,
                    "setting": name,
                    "pick": models[res.pick],
                    "regret": r,
                    "compute": res.compute,
                    "compute_time": float(weighted),
                    "rungs": [
                        {
                            "budget": g.budget,
                            "ranked": [models[c] for c in g.ranked],
                            "scores": list(g.scores),
                            "promoted": [models[c] for c in g.promoted],
                            "dropped": [[models[c], v] for c, v in g.dropped],
                        }
                        for g in res.rungs
                    ],
                }
            )
        point[(method, name)] = {k: np.array(v) for k, v in per.items()}

    # ---- paired bootstrap over models
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(replicates, n))
    refitted = (
        scorer.boot(cell_methods, cells, rung_budgets, draws)
        if scorer is not None and refit
        else {}
    )

    def drawn(t: str, s: int, method: str, budget: float) -> np.ndarray:
        """(replicates, n): the scores of each replicate's drawn candidates."""
        if (method, t, s, budget) in refitted:
            return refitted[(method, t, s, budget)]
        return score_array(t, s, method, budget)[draws]

    boot: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    memo: dict[tuple[str, tuple], dict[str, np.ndarray]] = {}
    rows_b = np.arange(replicates)
    for method, name, _, _, sched in combos:
        mkey = (method, tuple(sched))
        if mkey not in memo:
            per = {
                k: np.empty((replicates, len(cells))) for k in ("regret", "compute", "compute_time")
            }
            for j, (t, s) in enumerate(cells):
                rows = [drawn(t, s, method, b) for b, _, _ in sched]
                picks, trained = halving_batch(rows, sched)
                tr = truth[(t, s)][draws]
                sec = seconds[(t, s)][draws]
                per["regret"][:, j] = 100.0 * (tr.max(axis=1) - tr[rows_b, picks])
                per["compute"][:, j] = trained.mean(axis=1)
                per["compute_time"][:, j] = (trained * sec).sum(axis=1) / sec.sum(axis=1)
            memo[mkey] = per
        boot[(method, name)] = memo[mkey]

    report_cols = [j for j, (_, s) in enumerate(cells) if s != seeds[0]]
    target_cols = {t: [j for j, (tt, _) in enumerate(cells) if tt == t] for t in targets}

    def summarise(key: tuple[str, str]) -> dict[str, Any]:
        p, b = point[key], boot[key]
        row: dict[str, Any] = {"method": key[0], "setting": key[1]}
        for k in ("regret", "compute", "compute_time"):
            row[k] = _summary(p[k].mean(), b[k].mean(axis=1))
        row["regret_report_half"] = _summary(
            p["regret"][report_cols].mean(), b["regret"][:, report_cols].mean(axis=1)
        )
        row["regret_by_target"] = {
            t: _summary(p["regret"][c].mean(), b["regret"][:, c].mean(axis=1))
            for t, c in target_cols.items()
        }
        for ref_name, ref in (
            ("last_observed", (REFERENCE, key[1])),
            ("train_all", (REFERENCE, TRAIN_ALL)),
        ):
            for suffix, cols in (("", slice(None)), ("_report_half", report_cols)):
                if ref in point and ref != key:
                    row[f"diff_{ref_name}{suffix}"] = _summary(
                        p["regret"][cols].mean() - point[ref]["regret"][cols].mean(),
                        b["regret"][:, cols].mean(axis=1)
                        - boot[ref]["regret"][:, cols].mean(axis=1),
                    )
                elif ref == key:
                    row[f"diff_{ref_name}{suffix}"] = _summary(0.0, np.zeros(replicates))
        if keep_replicates:
            row["replicates"] = {k: b[k].mean(axis=1).tolist() for k in b}
        return row

    setting_info = [
        {
            "name": st.name,
            "eta": st.eta,
            "min_budget": st.min_budget,
            "max_budget": st.max_budget,
            "budgets": list(st.budgets),
            "schedule": [list(r) for r in schedules[st]],
            "compute": successive_halving(
                [np.zeros(n)] * len(st.budgets), n, st.budgets, st.eta
            ).compute,
        }
        for st in settings
    ]
    return {
        "format": "ncap-halving-simulation-1",
        "protocol_text": __doc__,
        "source": {
            "plan": results["plan"].get("name"),
            "models": models,
            "targets": targets,
            "seeds": seeds,
            "total_epochs": total_epochs,
        },
        "methods": methods,
        "cell_methods": {
            "methods": cell_methods,
            "how": "the study's cell_scores (ncap.bench.study.combine): fitted models trained "
            "on the other targets' runs of the scored seed at the rung budget, truth = the "
            "other seed's final accuracy; rank averages among the cell's candidates",
            "bootstrap": (
                "refit (and re-ranked) on the drawn models in every replicate"
                if refit
                else "fixed per cell (fitted once on all models), resampled"
            ),
            "refit": refit,
            "table_budgets": rung_budgets if cell_methods else [],
            "sigma": dict(sigma or {}),
        },
        "training_free": [m for m in methods if m in TRAINING_FREE],
        "settings": setting_info,
        "train_all": {"name": TRAIN_ALL, "score": REFERENCE, "budget": FULL},
        "bootstrap": {
            "replicates": replicates,
            "seed": seed,
            "unit": "models (one draw shared by every target, seed, method and setting)",
            "interval": "95% percentile",
        },
        "cells": [{"target": t, "seed": s} for t, s in cells],
        "report_half_seeds": seeds[1:],
        "rows": [summarise(key) for key in point],
        "failures": failures,
        "truth": {f"{t}/s{s}": dict(zip(models, truth[(t, s)].tolist())) for t, s in cells},
        "decisions": cell_records,
        "scores": table,
        "seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------


def _ci(summary: Mapping[str, Any], digits: int = 2, signed: bool = False) -> str:
    f = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    lo, hi = summary["ci95"]
    return f"{f.format(summary['value'])} [{f.format(lo)}, {f.format(hi)}]"


def render_markdown(sim: Mapping[str, Any]) -> str:
    """The simulation's table: method x setting -> compute, regret, difference from last-observed."""
    src = sim["source"]
    boot = sim["bootstrap"]
    n = len(src["models"])
    lines = [
        "# Successive halving on recorded trajectories: regret against compute",
        "",
        f"{n} models x {len(src['targets'])} targets ({', '.join(src['targets'])}) x "
        f"{len(src['seeds'])} seeds, T = {src['total_epochs']:g} epochs. Each cell (target, seed) "
        "is one selection: the halving reads the scores of that seed's runs, and the pick's truth "
        "is its final accuracy with the other seed(s). **Regret**: best truth minus the pick's "
        "truth, in accuracy points, mean over all cells (targets x seeds). **Compute**: the budget "
        "every candidate was trained to, the pick trained on to T, as a % of training all "
        "candidates to T; *time* weighs each candidate by its recorded seconds. Intervals: 95% "
        f"percentile, paired bootstrap over models ({boot['replicates']} replicates, seed "
        f"{boot['seed']}, one draw of models shared by every target, seed, method and setting). "
        "**Δ LO**: regret minus that of halving driven by the last observed accuracy with the same "
        "setting (what ASHA / Hyperband do), replicate by replicate; negative is better. "
        "**Report half**: the cells of the seeds after the first, on which nothing was chosen "
        "(the study's report half): the headline.",
        "",
    ]
    cell = sim.get("cell_methods") or {}
    if cell.get("methods"):
        lines += [
            "**Cell-level scores** ("
            + ", ".join(f"`{m}`" for m in cell["methods"])
            + "): the study's `cell_scores` at each rung budget; a fitted model is trained on the "
            "other targets' runs of the scored seed at that budget (leave one target out), truth "
            "= the other seed's final accuracy. In the bootstrap: " + cell["bootstrap"] + ".",
            "",
        ]
    if sim.get("command"):
        lines += ["Reproduce: `" + sim["command"] + "`", ""]
    lines += [
        "## Settings",
        "",
        "| setting | rung budgets (% of T) | candidates per rung | compute |",
        "|---|---|---|---|",
    ]
    for st in sim["settings"]:
        counts = " → ".join(str(c) for _, c, _ in st["schedule"]) + " → 1"
        budgets = ", ".join(f"{100 * b:g}" for b, _, _ in st["schedule"])
        lines.append(f"| {st['name']} | {budgets} | {counts} | {100 * st['compute']:.1f}% |")
    lines += [
        "",
        "## Regret and compute",
        "",
        "| setting | method | compute % | time % [95% CI] | regret, points [95% CI] | Δ LO [95% CI] | report half: regret [95% CI] | report half: Δ LO [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = sim["rows"]
    for row in rows:
        if row["setting"] == TRAIN_ALL:
            continue
        t = row["compute_time"]
        lines.append(
            f"| {row['setting']} | `{row['method']}` | {100 * row['compute']['value']:.1f} | "
            f"{100 * t['value']:.1f} [{100 * t['ci95'][0]:.1f}, {100 * t['ci95'][1]:.1f}] | "
            f"{_ci(row['regret'])} | {_ci(row['diff_last_observed'], signed=True)} | "
            f"{_ci(row['regret_report_half'])} | "
            f"{_ci(row['diff_last_observed_report_half'], signed=True)} |"
        )
    base = next(r for r in rows if r["setting"] == TRAIN_ALL)
    lines += [
        f"| train everything to T | `{base['method']}` at T | 100.0 | 100.0 | "
        f"{_ci(base['regret'])} | – | {_ci(base['regret_report_half'])} | – |",
        "",
        "Training-free scores (" + ", ".join(f"`{m}`" for m in sim["training_free"]) + ") do not "
        "change with the budget: halving driven by them picks their favourite, which costs only "
        f"{100 / n:.1f}% of the compute when trained alone; the rows show what the halving would spend.",
        "",
        "## Difference from training everything to T (Δ regret, points [95% CI])",
        "",
        "| setting | " + " | ".join(f"`{m}`" for m in sim["methods"]) + " |",
        "|---|" + "---|" * len(sim["methods"]),
    ]
    by = {(r["method"], r["setting"]): r for r in rows}
    for st in sim["settings"]:
        lines.append(
            f"| {st['name']} | "
            + " | ".join(
                _ci(by[(m, st["name"])]["diff_train_all"], signed=True) for m in sim["methods"]
            )
            + " |"
        )
    if sim["failures"]:
        lines += ["", "## Scores that failed (ranked last)", ""]
        lines += [f"- `{k}`: {v} runs" for k, v in sorted(sim["failures"].items())]
    return "\n".join(lines) + "\n"


def plot_regret_vs_compute(sim: Mapping[str, Any], path: str | Path) -> Path:
    """Mean regret (95% CI) against compute, one colour per method, one marker per setting."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(8.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    methods = sim["methods"]
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    markers = {st["name"]: mk for st, mk in zip(sim["settings"], "os^vDP*Xhp<>")}
    k = len(methods)
    for row in sim["rows"]:
        m, name = row["method"], row["setting"]
        x = 100 * row["compute"]["value"]
        if name == TRAIN_ALL:
            marker, colour, label = "*", "black", "train all to T (last observed)"
        else:
            x *= 1.0 + 0.025 * (methods.index(m) - (k - 1) / 2)  # spread methods sharing a setting
            marker, colour, label = markers[name], colours[m], None
        y, (lo, hi) = row["regret"]["value"], row["regret"]["ci95"]
        ax.errorbar(
            x,
            y,
            yerr=[[max(y - lo, 0)], [max(hi - y, 0)]],
            fmt=marker,
            color=colour,
            ms=6 if name == TRAIN_ALL else 4.5,
            lw=0.8,
            capsize=2,
            alpha=0.9,
            label=label,
        )
    handles = [Line2D([], [], color=colours[m], marker="o", ls="", label=m) for m in methods]
    handles += [
        Line2D([], [], color="grey", marker=mk, ls="", label=nm) for nm, mk in markers.items()
    ]
    handles += [Line2D([], [], color="black", marker="*", ls="", label="train all to T")]
    ax.legend(handles=handles, fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xscale("log")
    ax.set_xlabel("compute (% of training every candidate to T)")
    ax.set_ylabel("top-1 regret (accuracy points), mean over cells")
    ax.set_title(
        "Successive halving on recorded trajectories (95% bootstrap CI over models)", fontsize=9
    )
    ax.axhline(0.0, color="black", lw=0.6)
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def write_simulation(sim: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """simulation.json, simulation.md and regret_vs_compute.png in ``out_dir``."""
    from ncap.storage import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    return {
        "json": atomic_write_json(sim, out / "simulation.json"),
        "markdown": atomic_write_text(render_markdown(sim), out / "simulation.md"),
        "plot": plot_regret_vs_compute(sim, out / "regret_vs_compute.png"),
    }
