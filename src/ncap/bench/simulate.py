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
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ncap.bench.evaluate import final_accuracy, unpack_results
from ncap.bench.simulate_cells import CellScorer, is_cell_method
from ncap.bench.simulate_halving import (
    DEFAULT_SETTINGS,
    FULL,
    TRAIN_ALL,
    HalvingResult,
    HalvingSetting,
    Rung,
    halving_batch,
    halving_budgets,
    halving_schedule,
    rank_candidates,
    regret,
    successive_halving,
)
from ncap.bench.simulate_render import plot_regret_vs_compute, render_markdown, write_simulation
from ncap.bench.simulate_scores import (
    DEFAULT_METHODS,
    REFERENCE,
    TRAINING_FREE,
    _score_job,
    known_methods,
    score_methods,
)
from ncap.bench.stats import percentile_interval
from ncap.exceptions import ConfigError

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_SETTINGS",
    "HalvingResult",
    "HalvingSetting",
    "Rung",
    "SimulationPlan",
    "halving_batch",
    "halving_budgets",
    "halving_schedule",
    "plot_regret_vs_compute",
    "rank_candidates",
    "regret",
    "render_markdown",
    "score_methods",
    "simulate_results",
    "successive_halving",
    "write_simulation",
]


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


def complete_grid(results: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``results`` restricted to the models with a run of every seed on every target, and the
    models left out (bench-v3 runs its large models on five targets only, by design): a halving
    replay needs the same candidates in every cell. Raises ConfigError with fewer than two seeds
    or fewer than two such models."""
    seeds, _, models, targets, runs = unpack_results(results)
    if len(seeds) < 2:
        raise ConfigError(
            "the simulation uses the seed protocol: every (target, model) needs a run with each of "
            f"at least two seeds (the plan has {seeds}); build the benchmark with seeds 0 and 1."
        )
    complete = [m for m in models if all((t, m, s) in runs for t in targets for s in seeds)]
    left_out = [m for m in models if m not in complete]
    if len(complete) < 2:
        missing = [run_key(t, m, s) for t in targets for m in models for s in seeds
                   if (t, m, s) not in runs]  # fmt: skip
        raise ConfigError(
            f"fewer than two models have a run of every seed on every target (missing: "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}); finish the build first."
        )
    if not left_out:
        return dict(results), []
    plan = dict(results["plan"], models=complete)
    kept = [r for r in results["runs"] if r["model"] in complete]
    return dict(results, plan=plan, runs=kept), left_out


Schedule = list[tuple[float, int, int]]
# (method, setting name, budgets, eta, schedule): one halving replayed on every cell
Combo = tuple[str, str, tuple[float, ...], float, Schedule]
_MEASURES = ("regret", "compute", "compute_time")


@dataclass(frozen=True)
class _Grid:
    """A results file ready to replay: its complete grid (:func:`complete_grid`), the methods
    (last-observed first, then the run-level and cell-level ones) and each setting's schedule."""

    results: dict[str, Any]
    left_out: list[str]
    seeds: list[int]
    total_epochs: float
    models: list[str]
    targets: list[str]
    runs: dict[tuple[str, str, int], dict[str, Any]]
    methods: list[str]
    settings: list[HalvingSetting]
    schedules: dict[HalvingSetting, Schedule]

    @classmethod
    def build(
        cls,
        results: Mapping[str, Any],
        methods: Sequence[str],
        settings: Sequence[HalvingSetting],
    ) -> _Grid:
        """Refuses an unknown method (before any scoring)."""
        results, left_out = complete_grid(results)
        seeds, total_epochs, models, targets, runs = unpack_results(results)
        methods = [REFERENCE] + [m for m in dict.fromkeys(methods) if m != REFERENCE]
        run_methods = [m for m in methods if not is_cell_method(m)]
        unknown = set(run_methods) - known_methods(results["training_free"][targets[0]][models[0]])
        if unknown:
            raise ValueError(f"unknown method(s): {sorted(unknown)}")
        settings = list(dict.fromkeys(settings))
        schedules = {st: halving_schedule(len(models), st.budgets, st.eta) for st in settings}
        return cls(results, left_out, seeds, total_epochs, models, targets, runs, methods,
                   settings, schedules)  # fmt: skip

    @property
    def cell_methods(self) -> list[str]:
        return [m for m in self.methods if is_cell_method(m)]

    @property
    def cells(self) -> list[tuple[str, int]]:
        return [(t, s) for t in self.targets for s in self.seeds]

    @property
    def rung_budgets(self) -> list[float]:
        return sorted({b for sch in self.schedules.values() for b, _, _ in sch})

    def wanted_budgets(self) -> dict[str, list[float]]:
        """The budgets each run-level method is scored at (last-observed at T as well)."""
        wanted = {m: self.rung_budgets for m in self.methods if not is_cell_method(m)}
        wanted[REFERENCE] = sorted(set(wanted[REFERENCE]) | {FULL})
        return wanted

    def combos(self) -> list[Combo]:
        """Every method under every setting, then the train-all baseline (every candidate
        trained to T, the best by last-observed at T)."""
        combos: list[Combo] = [(m, st.name, st.budgets, st.eta, self.schedules[st])
                               for m in self.methods for st in self.settings]  # fmt: skip
        combos.append((REFERENCE, TRAIN_ALL, (FULL,), 2, [(FULL, len(self.models), 1)]))
        return combos


def _score_table(
    grid: _Grid, scores: Mapping[str, Any] | None, workers: int | None
) -> dict[str, dict[str, dict[str, Any]]]:
    """The run-level scores of each (run, budget, method), computed once: ``scores`` (an earlier
    simulation's table) completed with the missing ones."""
    table: dict[str, dict[str, dict[str, Any]]] = {
        k: {b: dict(v) for b, v in per.items()} for k, per in (scores or {}).items()
    }
    jobs, job_keys = [], []
    wanted_budgets = grid.wanted_budgets()
    for t, m, s in itertools.product(grid.targets, grid.models, grid.seeds):
        have = table.get(run_key(t, m, s), {})
        wanted: dict[float, list[str]] = {}
        for method, budgets in wanted_budgets.items():
            for b in budgets:
                if method not in have.get(str(b), {}):
                    wanted.setdefault(b, []).append(method)
        if wanted:
            free = grid.results["training_free"][t][m]
            jobs.append((grid.runs[(t, m, s)], free, grid.total_epochs, sorted(wanted.items())))
            job_keys.append(run_key(t, m, s))
    if not jobs:
        return table
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
    return table


@dataclass
class _Replay:
    """The halving replays of a grid: each cell's scores (run-level from ``table``, cell-level
    from ``scorer``), truth (the other seeds' final accuracy) and candidates' seconds."""

    grid: _Grid
    table: dict[str, dict[str, dict[str, Any]]]
    scorer: CellScorer | None
    truth: dict[tuple[str, int], np.ndarray] = field(init=False)
    seconds: dict[tuple[str, int], np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        grid = self.grid
        final = {k: final_accuracy(r) for k, r in grid.runs.items()}
        self.truth = {
            (t, s): np.array(
                [np.mean([final[(t, m, o)] for o in grid.seeds if o != s]) for m in grid.models]
            )  # fmt: skip
            for t, s in grid.cells
        }
        self.seconds = {
            (t, s): np.array([float(grid.runs[(t, m, s)]["seconds"]) for m in grid.models])
            for t, s in grid.cells
        }

    def score_array(self, t: str, s: int, method: str, budget: float) -> np.ndarray:
        """The candidates' scores in cell (``t``, ``s``) at ``budget`` (NaN: failed)."""
        if self.scorer is not None and method in self.scorer.cands:
            return self.scorer.point(method, t, s, budget)
        vals = [self.table[run_key(t, m, s)][str(budget)][method][0] for m in self.grid.models]
        return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)

    def failures(self) -> dict[str, int]:
        """Failed scores (NaN) per ``method@budget``, over all cells."""
        failures: dict[str, int] = {}
        wanted = self.grid.wanted_budgets()
        for method in self.grid.methods:
            for b in wanted.get(method, self.grid.rung_budgets):
                count = sum(int(np.isnan(self.score_array(t, s, method, b)).sum())
                            for t, s in self.grid.cells)  # fmt: skip
                if count:
                    failures[f"{method}@{b:g}"] = count
        return failures

    def point_estimates(
        self, combos: list[Combo]
    ) -> tuple[dict[tuple[str, str], dict[str, np.ndarray]], list[dict[str, Any]]]:
        """Per (method, setting): each cell's regret and compute, and every rung decision."""
        models, n = self.grid.models, len(self.grid.models)
        cell_records = []
        point: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        for method, name, budgets, eta, sched in combos:
            per: dict[str, list[float]] = {k: [] for k in _MEASURES}
            for t, s in self.grid.cells:
                rows = [self.score_array(t, s, method, b) for b, _, _ in sched]
                res = successive_halving(rows, n, budgets, eta)
                weighted = np.dot(res.trained_to, self.seconds[(t, s)]) / self.seconds[(t, s)].sum()
                r = regret(self.truth[(t, s)], res.pick)
                per["regret"].append(r)
                per["compute"].append(res.compute)
                per["compute_time"].append(float(weighted))
                cell_records.append(
                    {"target": t, "seed": s, "method": method, "setting": name,
                     "pick": models[res.pick], "regret": r, "compute": res.compute,
                     "compute_time": float(weighted), "rungs": _rung_records(res, models)}
                )  # fmt: skip
            point[(method, name)] = {k: np.array(v) for k, v in per.items()}
        return point, cell_records

    def bootstrap(
        self, combos: list[Combo], draws: np.ndarray, refit: bool
    ) -> dict[tuple[str, str], dict[str, np.ndarray]]:
        """Per (method, setting): (replicates, cells) regrets and computes of the halving re-run on
        each replicate's ``draws`` of models (the cell-level scores refitted on them if
        ``refit``)."""
        grid, replicates = self.grid, len(draws)
        refitted = (
            self.scorer.boot(grid.cell_methods, grid.cells, grid.rung_budgets, draws)
            if self.scorer is not None and refit
            else {}
        )

        def drawn(t: str, s: int, method: str, budget: float) -> np.ndarray:
            """(replicates, n): the scores of each replicate's drawn candidates."""
            if (method, t, s, budget) in refitted:
                return refitted[(method, t, s, budget)]
            return self.score_array(t, s, method, budget)[draws]

        boot: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        memo: dict[tuple[str, tuple], dict[str, np.ndarray]] = {}
        rows_b = np.arange(replicates)
        for method, name, _, _, sched in combos:
            mkey = (method, tuple(sched))
            if mkey not in memo:
                per = {k: np.empty((replicates, len(grid.cells))) for k in _MEASURES}
                for j, (t, s) in enumerate(grid.cells):
                    rows = [drawn(t, s, method, b) for b, _, _ in sched]
                    picks, trained = halving_batch(rows, sched)
                    tr = self.truth[(t, s)][draws]
                    sec = self.seconds[(t, s)][draws]
                    per["regret"][:, j] = 100.0 * (tr.max(axis=1) - tr[rows_b, picks])
                    per["compute"][:, j] = trained.mean(axis=1)
                    per["compute_time"][:, j] = (trained * sec).sum(axis=1) / sec.sum(axis=1)
                memo[mkey] = per
            boot[(method, name)] = memo[mkey]
        return boot


def _rung_records(res: HalvingResult, models: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            "budget": g.budget,
            "ranked": [models[c] for c in g.ranked],
            "scores": list(g.scores),
            "promoted": [models[c] for c in g.promoted],
            "dropped": [[models[c], v] for c, v in g.dropped],
        }
        for g in res.rungs
    ]


@dataclass(frozen=True)
class _Rows:
    """The summary rows: each (method, setting)'s point estimates and bootstrap replicates, over
    all cells, the report half and each target, and its differences from the references."""

    grid: _Grid
    point: dict[tuple[str, str], dict[str, np.ndarray]]
    boot: dict[tuple[str, str], dict[str, np.ndarray]]
    keep_replicates: bool

    def row(self, key: tuple[str, str]) -> dict[str, Any]:
        cells, seeds = self.grid.cells, self.grid.seeds
        report_cols = [j for j, (_, s) in enumerate(cells) if s != seeds[0]]
        target_cols = {t: [j for j, (tt, _) in enumerate(cells) if tt == t]
                       for t in self.grid.targets}  # fmt: skip
        p, b = self.point[key], self.boot[key]
        row: dict[str, Any] = {"method": key[0], "setting": key[1]}
        for k in _MEASURES:
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
                if ref in self.point and ref != key:
                    row[f"diff_{ref_name}{suffix}"] = _summary(
                        p["regret"][cols].mean() - self.point[ref]["regret"][cols].mean(),
                        b["regret"][:, cols].mean(axis=1)
                        - self.boot[ref]["regret"][:, cols].mean(axis=1),
                    )
                elif ref == key:
                    replicates = b["regret"].shape[0]
                    row[f"diff_{ref_name}{suffix}"] = _summary(0.0, np.zeros(replicates))
        if self.keep_replicates:
            row["replicates"] = {k: b[k].mean(axis=1).tolist() for k in b}
        return row


def _setting_info(grid: _Grid) -> list[dict[str, Any]]:
    n = len(grid.models)
    return [
        {
            "name": st.name,
            "eta": st.eta,
            "min_budget": st.min_budget,
            "max_budget": st.max_budget,
            "budgets": list(st.budgets),
            "schedule": [list(r) for r in grid.schedules[st]],
            "compute": successive_halving(
                [np.zeros(n)] * len(st.budgets), n, st.budgets, st.eta
            ).compute,
        }
        for st in grid.settings
    ]


def _source(grid: _Grid) -> dict[str, Any]:
    return {
        "plan": grid.results["plan"].get("name"),
        "models": grid.models,
        "targets": grid.targets,
        "seeds": grid.seeds,
        "total_epochs": grid.total_epochs,
        "models_left_out": grid.left_out,
        "why_left_out": "not run on every target with every seed: a halving replay needs "
        "the same candidates in every cell"
        if grid.left_out
        else None,
    }


def _cell_methods_info(
    grid: _Grid, refit: bool, sigma: Mapping[str, float] | None
) -> dict[str, Any]:
    return {
        "methods": grid.cell_methods,
        "how": "the study's cell_scores (ncap.bench.study.combine): fitted models trained "
        "on the other targets' runs of the scored seed at the rung budget, truth = the "
        "other seed's final accuracy; rank averages among the cell's candidates",
        "bootstrap": (
            "refit (and re-ranked) on the drawn models in every replicate"
            if refit
            else "fixed per cell (fitted once on all models), resampled"
        ),
        "refit": refit,
        "table_budgets": grid.rung_budgets if grid.cell_methods else [],
        "sigma": dict(sigma or {}),
    }


@dataclass(frozen=True)
class SimulationPlan:
    """What :func:`simulate_results` replays and how it bootstraps.

    Parameters
    ----------
    methods : sequence of str
        The scores that drive the halving (``last-observed``, the reference, is always added).
        Methods named ``fit/...`` or ``ravg/...`` are the study's cell-level candidates
        (:mod:`ncap.bench.simulate_cells`).
    settings : sequence of HalvingSetting
        The halving schedules (eta, minimum and maximum budget).
    replicates, seed : int
        Bootstrap replicates over models (at least 1) and the seed of their draws.
    refit : bool
        Refit the cell-level scores on the drawn models in every bootstrap replicate (default),
        else fix them per cell and only resample.
    sigma : mapping, optional
        Orients the raw dynamics components of rank averages (the study's selection.json
        ``sigma``).
    keep_replicates : bool
        Add each row's bootstrap replicates of the mean regret and compute.

    >>> SimulationPlan(replicates=0)
    Traceback (most recent call last):
    ...
    ncap.exceptions.ConfigError: replicates must be a positive number of bootstrap replicates; got 0.
    """

    methods: Sequence[str] = DEFAULT_METHODS
    settings: Sequence[HalvingSetting] = DEFAULT_SETTINGS
    replicates: int = 1000
    seed: int = 0
    refit: bool = True
    sigma: Mapping[str, float] | None = None
    keep_replicates: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.replicates, bool) or not (
            isinstance(self.replicates, int) and self.replicates >= 1
        ):
            raise ConfigError(
                "replicates must be a positive number of bootstrap replicates; "
                f"got {self.replicates!r}."
            )


def simulate_results(
    results: Mapping[str, Any],
    plan: SimulationPlan | None = None,
    *,
    workers: int | None = None,
    scores: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Replay successive halving driven by each method of ``plan`` (default:
    :class:`SimulationPlan`'s) on a benchmark's trajectories.

    Returns a JSON-ready dict (see the module docstring for the protocol): ``rows`` (one per
    method and setting, plus the ``train-all`` baseline) with the compute, the mean regret and
    their bootstrap intervals, the difference from last-observed halving and from train-all;
    ``cells``, every rung decision of every (target, seed); and ``scores``, the per-(run, budget)
    scores, which can be passed back as ``scores`` to skip recomputing them. ``workers=1`` scores
    in-process.

    The steps: the grid (:class:`_Grid`), the run-level score table (:func:`_score_table`), the
    cell-level scorer, the point estimates and the paired bootstrap (:class:`_Replay`), the
    summary rows (:class:`_Rows`).
    """
    plan = plan or SimulationPlan()
    methods, settings, replicates, seed = plan.methods, plan.settings, plan.replicates, plan.seed
    refit, sigma, keep_replicates = plan.refit, plan.sigma, plan.keep_replicates
    start = time.perf_counter()
    grid = _Grid.build(results, methods, settings)
    table = _score_table(grid, scores, workers)
    scorer = None
    if grid.cell_methods:
        scorer = CellScorer.build(grid.results, grid.cell_methods, grid.rung_budgets,
                                  sigma=sigma, workers=workers)  # fmt: skip
    replay = _Replay(grid, table, scorer)
    failures = replay.failures()
    combos = grid.combos()
    point, cell_records = replay.point_estimates(combos)
    n = len(grid.models)
    draws = np.random.default_rng(seed).integers(0, n, size=(replicates, n))  # models, paired
    rows = _Rows(grid, point, replay.bootstrap(combos, draws, refit), keep_replicates)
    return {
        "format": "ncap-halving-simulation-1",
        "protocol_text": __doc__,
        "source": _source(grid),
        "methods": grid.methods,
        "cell_methods": _cell_methods_info(grid, refit, sigma),
        "training_free": [m for m in grid.methods if m in TRAINING_FREE],
        "settings": _setting_info(grid),
        "train_all": {"name": TRAIN_ALL, "score": REFERENCE, "budget": FULL},
        "bootstrap": {
            "replicates": replicates,
            "seed": seed,
            "unit": "models (one draw shared by every target, seed, method and setting)",
            "interval": "95% percentile",
        },
        "cells": [{"target": t, "seed": s} for t, s in grid.cells],
        "report_half_seeds": grid.seeds[1:],
        "rows": [rows.row(key) for key in point],
        "failures": failures,
        "truth": {
            f"{t}/s{s}": dict(zip(grid.models, replay.truth[(t, s)].tolist()))
            for t, s in grid.cells
        },  # fmt: skip
        "decisions": cell_records,
        "scores": table,
        "seconds": time.perf_counter() - start,
    }
