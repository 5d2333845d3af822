"""How precise can bench-v3's study be? A power estimate from bench-v2's recorded runs (issue 22).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/power_v3.py \\
        benchmarks/results/bench-v2.json --out benchmarks/results/bench-v3-power

(a) **Strict cross-fitting on bench-v2.** A fitted score for target ``t`` (dataset family ``F``)
and model ``m`` (model family ``G``) is trained only on the runs of targets outside ``F`` and
models outside ``G`` (the study code's leave-family-out fit, ``ncap.bench.study.halves``, on a
table that holds only ``t`` and the other families' targets); a second view leaves out the finer
dataset group (:func:`dataset_group`) instead of the family. Two fitted scores: ``fit/base`` (the shipped
features) and a portable four-feature fit (LO, its slope, TSE-E1, LogME). Their Kendall tau minus
the last observed accuracy's (LO), per budget, with the study's model bootstrap (the same draws,
``default_rng(14)``) and its two-way bootstrap (targets too, ``default_rng(15)``). The fits are
not refitted per replicate (as in the study). The looser "leave the dataset group and the scored
model out" and the study's own leave-one-target-out are computed too: they must reproduce issue
22's figures and ``bench-v2-study/report.json`` (checks printed in the output).

(b) **How the two-way interval scales.** From the per-target model-bootstrap replicates, the
variance components of the mean Kendall difference ``D`` over targets: ``v_diag`` (a target's own
model-sampling variance), ``v_off`` (its covariance with another target's, through the shared
models) and the targets' true spread ``s2_between`` (their observed spread minus the part model
noise explains). Under the usual ``1/n`` scaling of a U-statistic's variance in the number of
models, they give the two-way bootstrap's variance and the true sampling variance of ``D`` for any
numbers of models and targets (:func:`project`). The projection is checked against the two-way
bootstrap actually run on random subsets of bench-v2's models and targets, and extrapolated from
half-size subsets to the full 40 x 9 (about the ratio of 40 x 9 -> 56 x 15). It is checked again in
two synthetic worlds (:class:`World`): studies of the planned size drawn afresh, against the
projection from pilot studies of bench-v2's size.

Everything is seeded: two runs write the same ``power.json`` but for ``seconds``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

from ncap.bench.stats import percentile_interval
from ncap.bench.study.bootstrap import draw_counts, fill_failures, kendall_boot
from ncap.bench.study.candidates import Candidate
from ncap.bench.study.combine import cell_scores
from ncap.bench.study.halves import _leave_family_out, keep_masks
from ncap.bench.study.stages import Study
from ncap.bench.study.table import ScoreTable, build_table

BUDGETS = (0.025, 0.05, 0.1)
PLANNED = {"models": 56, "targets": 15}
GRID_MODELS = (40, 56, 80, 120, 160)
GRID_TARGETS = (9, 15, 20, 30, 60)
SUBSAMPLE_SEED = 22
SIMULATION_SEED = 26
Z95, Z80 = float(norm.ppf(0.975)), float(norm.ppf(0.8))
# two-sided 5% over the v3 protocol's 5 confirmatory tests (Holm's first, strictest step)
Z95_HOLM5 = float(norm.ppf(1 - 0.05 / 10))
EFFECTS = (0.05, 0.10)  # true differences whose power is reported
PORTABLE = Candidate(
    "fit/portable", "D2", 4, False, kind="fit", features=("lo", "lo_slope", "tse_e1", "logme")
)


# ---------------------------------------------------------------------------------------------
# (a) scores under cross-fitting


def dataset_family(target: Mapping[str, Any]) -> str:
    """A target's dataset family: its plan's ``family`` if it has one (bench-v3 records it), else
    the dataset's stem (``fashion-mnist-5-9-500`` -> ``fashion-mnist``, ``digits`` -> ``digits``).

    >>> dataset_family({"dataset": "fashion-mnist-footwear"}), dataset_family({"dataset": "digits"})
    ('fashion-mnist', 'digits')
    """
    if target.get("family"):
        return str(target["family"])
    name = str(target["dataset"])
    for stem in ("fashion-mnist", "digits"):
        if name.startswith(stem):
            return stem
    return name


def dataset_group(target: Mapping[str, Any]) -> str:
    """A finer grouping: a dataset with its size variants and shifts (the groups of issue 22's
    figures): ``fm59``, ``fm59-500`` and its shifted copies are one group, ``fm10``,
    ``footwear`` and ``digits`` (with ``digits-256``) one each.

    >>> dataset_group({"dataset": "fashion-mnist-5-9-500"}), dataset_group({"dataset": "fashion-mnist"})
    ('fashion-mnist-5-9', 'fashion-mnist')
    """
    name = str(target["dataset"])
    return "fashion-mnist-5-9" if name.startswith("fashion-mnist-5-9") else name


@dataclass(frozen=True)
class Scheme:
    """A cross-fitting: the fitted score of target ``t`` and model ``m`` trains on no target of
    ``t``'s ``targets`` unit (``family``, ``group`` or ``target`` itself) and no model of ``m``'s
    ``models`` unit (``family``, ``model`` itself, or ``none`` left out)."""

    name: str
    targets: str
    models: str


SCHEMES = (
    Scheme("dataset family + model family", "family", "family"),  # bench-v3's primary
    Scheme("dataset group + model family", "group", "family"),
    Scheme("dataset group + model", "group", "model"),  # issue 22's figures
    Scheme("target (the v2 study's LOTO)", "target", "none"),
)
PROJECTED = tuple(s.name for s in SCHEMES[:2])


def fitted_scores(
    cand: Candidate,
    table: ScoreTable,
    f: float,
    t: str,
    seed: int,
    keep: Mapping[str, np.ndarray],
    target_units: Mapping[str, str],
    model_units: Sequence[str] | None,
) -> np.ndarray:
    """``cand``'s scores of target ``t``'s runs of ``seed``, each model's from a fit trained on
    the targets of other ``target_units`` than ``t``'s and the models of other ``model_units``
    than its own (``None``: every model; the study's own fit)."""
    others = [o for o in table.targets if target_units[o] != target_units[t]]
    restricted = replace(table, targets=[t, *others])  # the fit trains on every target but t
    if model_units is None:
        return cell_scores(cand, restricted, f, t, seed, sigma={}, keep=keep).value
    return _leave_family_out(cand, restricted, f, t, seed, {}, keep, list(model_units)).value


def units(scheme: Scheme, plan: Mapping[str, Any], models: Sequence[str],
          families: Sequence[str]) -> tuple[dict[str, str], list[str] | None]:  # fmt: skip
    """The target units and model units of ``scheme`` for a plan."""
    unit_of = {"family": dataset_family, "group": dataset_group, "target": lambda t: t["key"]}
    targets = {t["key"]: unit_of[scheme.targets](t) for t in plan["targets"]}
    model_units = {"family": list(families), "model": list(models), "none": None}
    return targets, model_units[scheme.models]


@dataclass
class Cells:
    """One half's scores: ``x[name][f]`` and the truth ``y`` as ``(targets, models)`` arrays."""

    seed: int
    truth_seed: int
    targets: list[str]
    models: list[str]
    y: np.ndarray
    x: dict[str, dict[float, np.ndarray]]


def half_cells(
    table: ScoreTable,
    seed: int,
    truth_seed: int,
    target_units: Mapping[str, str],
    model_units: Sequence[str] | None,
    cands: Sequence[Candidate],
) -> Cells:
    keep = keep_masks(table, [seed, truth_seed])
    if not all(k.all() for k in keep.values()):
        raise ValueError("a target lacks some model's runs; this script assumes complete data")
    y = np.array([[table.final[(t, m, truth_seed)] for m in table.models] for t in table.targets])
    x: dict[str, dict[float, np.ndarray]] = {"last-observed": {}}
    for f in table.budgets:
        x["last-observed"][f] = np.array(
            [table.value[("last-observed", f, t, seed)] for t in table.targets]
        )
        for c in cands:
            x.setdefault(c.name, {})[f] = np.array(
                [
                    fitted_scores(c, table, f, t, seed, keep, target_units, model_units)
                    for t in table.targets
                ]
            )
    return Cells(seed, truth_seed, list(table.targets), list(table.models), y, x)


# ---------------------------------------------------------------------------------------------
# the core: a Kendall difference with its model and two-way bootstrap


@dataclass
class Difference:
    """Mean over targets of Kendall(a) - Kendall(b): ``point``, ``per_target`` (targets,), the
    per-target model-bootstrap replicates ``per_target_boot`` (targets, B), the model bootstrap
    ``model_boot`` (B,) and the two-way bootstrap ``two_way_boot`` (B,)."""

    n_models: int
    point: float
    per_target: np.ndarray
    per_target_boot: np.ndarray
    model_boot: np.ndarray
    two_way_boot: np.ndarray

    def interval(self, which: str = "two_way") -> tuple[float, float]:
        boot = self.two_way_boot if which == "two_way" else self.model_boot
        lo, hi = percentile_interval(boot)
        return lo, hi

    def half_width(self, which: str = "two_way") -> float:
        lo, hi = self.interval(which)
        return (hi - lo) / 2.0


def target_counts(n_targets: int, replicates: int, seed: int) -> np.ndarray:
    """``(B, T)`` draw counts of targets, as :class:`ncap.bench.study.stages.Study` makes them."""
    draws = np.random.default_rng(seed).integers(0, n_targets, (replicates, n_targets))
    counts = np.zeros((replicates, n_targets))
    np.add.at(counts, (np.arange(replicates)[:, None], draws), 1.0)
    return counts


def _kendall_cell(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The study's conventions (halves.evaluate_half): every run failed -> -1, undefined -> 0."""
    if not np.isfinite(x).any():
        return np.full(w.shape[0], -1.0)
    return np.nan_to_num(kendall_boot(fill_failures(x), y, w), nan=0.0)


def kendall_difference(
    x_a: np.ndarray,
    x_b: np.ndarray,
    y: np.ndarray,
    model_counts: np.ndarray,
    target_draws: np.ndarray,
) -> Difference:
    """Kendall(x_a, y) - Kendall(x_b, y) per target (rows of the ``(targets, models)`` arrays; NaN
    scores are failures ranked last), averaged over targets. ``model_counts`` ``(B, models)`` is
    one model draw shared by every target (the study's bootstrap); ``target_draws`` ``(B,
    targets)`` resamples the targets as well, crossed with the same model draws (two-way)."""
    n_t, n_m = y.shape
    if x_a.shape != y.shape or x_b.shape != y.shape:
        raise ValueError(f"scores {x_a.shape}, {x_b.shape} and truth {y.shape} differ in shape")
    if model_counts.shape[1] != n_m or target_draws.shape[1] != n_t:
        raise ValueError("the draws must have one column per model and one per target")
    ones = np.ones((1, n_m))
    point = np.array([_kendall_cell(x_a[i], y[i], ones)[0] - _kendall_cell(x_b[i], y[i], ones)[0]
                      for i in range(n_t)])  # fmt: skip
    boot = np.array([_kendall_cell(x_a[i], y[i], model_counts)
                     - _kendall_cell(x_b[i], y[i], model_counts) for i in range(n_t)])  # fmt: skip
    two_way = (target_draws * boot.T).sum(axis=1) / target_draws.sum(axis=1)
    return Difference(n_m, float(point.mean()), point, boot, boot.mean(axis=0), two_way)


def pooled(diffs: Sequence[Difference]) -> Difference:
    """The mean of several differences on the same models, targets and draws (e.g. budgets)."""
    return Difference(
        diffs[0].n_models,
        float(np.mean([d.point for d in diffs])),
        np.mean([d.per_target for d in diffs], axis=0),
        np.mean([d.per_target_boot for d in diffs], axis=0),
        np.mean([d.model_boot for d in diffs], axis=0),
        np.mean([d.two_way_boot for d in diffs], axis=0),
    )


# ---------------------------------------------------------------------------------------------
# (b) variance components and their projection


@dataclass(frozen=True)
class Components:
    """Variance components of a mean Kendall difference, measured at ``n_models`` x ``n_targets``.

    ``v_diag``: mean model-bootstrap variance of one target's difference; ``v_off``: mean
    covariance between two targets' (the shared models); ``s2_targets``: the sample variance of
    the per-target differences; ``s2_between = max(s2_targets - (v_diag - v_off), 0)``: the part of
    it that model noise does not explain (the targets' true spread)."""

    n_models: int
    n_targets: int
    v_diag: float
    v_off: float
    s2_targets: float
    s2_between: float


def components(diff: Difference) -> Components:
    boot = diff.per_target_boot
    n_t = boot.shape[0]
    cov = np.atleast_2d(np.cov(boot))
    v_diag = float(np.mean(np.diag(cov)))
    v_off = float((cov.sum() - np.trace(cov)) / (n_t * (n_t - 1))) if n_t > 1 else 0.0
    s2 = float(np.var(diff.per_target, ddof=1)) if n_t > 1 else 0.0
    return Components(
        n_models=diff.n_models,
        n_targets=n_t,
        v_diag=v_diag,
        v_off=v_off,
        s2_targets=s2,
        s2_between=max(s2 - (v_diag - v_off), 0.0),
    )


@dataclass(frozen=True)
class Projection:
    """The mean Kendall difference over ``targets`` targets and ``models`` models: the two-way
    bootstrap's sd (``se_two_way``) and 95% half-width, the true sampling sd of the estimate
    (``se_true``, targets and models drawn anew), and the smallest true difference the two-way
    interval excludes 0 for with 80% power (``mde80``), also at Holm's strictest threshold over
    the five confirmatory tests of docs/benchmark-v3-protocol.md (``mde80_holm5``); ``power``:
    the chance the interval excludes 0 for a true difference of each of :data:`EFFECTS`; ``shares``: the parts of the two-way variance from the
    model effect shared by every target, from each target's own model noise, and from the
    targets' true spread."""

    models: int
    targets: int
    se_two_way: float
    se_true: float
    half_width: float
    mde80: float
    mde80_holm5: float
    power: dict[str, float]
    shares: dict[str, float]


def project(comp: Components, models: int, targets: int, between_factor: float = 1.0) -> Projection:
    """Project ``comp`` to ``models`` x ``targets``: model-sampling (co)variances scale as
    ``comp.n_models / models``; ``between_factor`` scales the targets' true spread (a
    sensitivity: bench-v3's targets come from more families).

    The two-way bootstrap resamples targets with replacement, so a target drawn twice adds its own
    variance twice (weights ``(2T - 1) / T**2`` on ``v_diag`` and ``(T - 1)**2 / T**2`` on
    ``v_off``), and its target draw sees the targets' spread including their own model noise
    (``(T - 1) / T**2 * (s2_between + v_diag - v_off)``). The true variance of the mean over ``T``
    new targets is ``(v_diag + (T - 1) v_off) / T + s2_between / T``.
    """
    r = comp.n_models / models
    vd, vo = comp.v_diag * r, comp.v_off * r
    between = comp.s2_between * between_factor
    t = targets
    boot_model = ((2 * t - 1) * vd + (t - 1) ** 2 * vo) / t**2
    boot_target = (t - 1) / t**2 * (between + vd - vo)
    total = boot_model + boot_target
    se_boot = math.sqrt(max(total, 0.0))
    shared = (t - 1) ** 2 * vo / t**2
    spread = (t - 1) / t**2 * between
    se_true = math.sqrt(max((vd + (t - 1) * vo) / t + between / t, 0.0))
    return Projection(
        models=models,
        targets=targets,
        se_two_way=se_boot,
        se_true=se_true,
        half_width=Z95 * se_boot,
        mde80=Z95 * se_boot + Z80 * se_true,
        mde80_holm5=Z95_HOLM5 * se_boot + Z80 * se_true,
        power={f"{e:g}": float(norm.cdf((e - Z95 * se_boot) / se_true)) for e in EFFECTS},
        shares={
            "shared model effect": shared / total,
            "per-target model noise": (total - shared - spread) / total,
            "targets' true spread": spread / total,
        },
    )


def measure(
    x_a: np.ndarray, x_b: np.ndarray, y: np.ndarray, replicates: int, seed: int
) -> Difference:
    """:func:`kendall_difference` with fresh draws seeded by ``seed``."""
    n_t, n_m = y.shape
    rng = np.random.default_rng(seed)
    mc = draw_counts(n_m, replicates, int(rng.integers(2**31)))
    tc = target_counts(n_t, replicates, int(rng.integers(2**31)))
    return kendall_difference(x_a, x_b, y, mc, tc)


def subsample_check(
    x_a: np.ndarray,
    x_b: np.ndarray,
    y: np.ndarray,
    sizes: Sequence[tuple[int, int]],
    *,
    repeats: int,
    replicates: int,
    seed: int,
) -> list[dict[str, Any]]:
    """For each (models, targets) size: the two-way bootstrap's variance measured on ``repeats``
    random subsets (without replacement) of the data, against the projection of the full data's
    components (``predicted_from_full``); and, from each subset's own components, the projection
    up to the full size, against the two-way variance measured there (``full_measured``)."""
    n_t, n_m = y.shape
    full = measure(x_a, x_b, y, replicates, seed)
    comp_full = components(full)
    full_var = float(np.var(full.two_way_boot))
    rng = np.random.default_rng(seed)
    out = []
    for m, t in sizes:
        measured, up = [], []
        for _ in range(repeats):
            mi = np.sort(rng.choice(n_m, m, replace=False))
            ti = np.sort(rng.choice(n_t, t, replace=False))
            sub = (x_a[np.ix_(ti, mi)], x_b[np.ix_(ti, mi)], y[np.ix_(ti, mi)])
            d = measure(*sub, replicates, int(rng.integers(2**31)))
            measured.append(float(np.var(d.two_way_boot)))
            up.append(project(components(d), n_m, n_t).se_two_way ** 2)
        pred = project(comp_full, m, t).se_two_way ** 2
        out.append({
            "models": m,
            "targets": t,
            "two_way_sd_measured": math.sqrt(float(np.mean(measured))),
            "two_way_sd_predicted_from_full": math.sqrt(pred),
            "full_two_way_sd_measured": math.sqrt(full_var),
            "full_two_way_sd_projected_from_subsets": math.sqrt(float(np.mean(up))),
            "full_two_way_sd_projected_range": [
                math.sqrt(float(np.min(up))), math.sqrt(float(np.max(up)))
            ],
        })  # fmt: skip
    return out


@dataclass(frozen=True)
class World:
    """A synthetic population in which to check the projection itself (not its transfer to
    bench-v3). Model ``m`` has a quality ``q_m``; on target ``t`` the truth is ``q_m + u_tm``
    plus seed noise. LO sees ``q_m + u_tm`` plus a bias per model shared by every target (some
    models start slowly everywhere) and its own noise. The fitted score removes a share of that
    bias (``fit_correction``, varying by target: the fit helps more on some targets than on
    others) and adds its own noise."""

    interaction: float = 0.3
    seed_noise: float = 0.3
    lo_noise: float = 0.3
    lo_model_bias: float = 1.0
    fit_correction: float = 0.9
    fit_correction_spread: float = 0.5  # sd of the correction across targets
    fit_noise: float = 0.5

    def draw(self, models: int, targets: int, rng: np.random.Generator):
        q = rng.normal(size=models)[None, :]
        common = q + self.interaction * rng.normal(size=(targets, models))
        y = common + self.seed_noise * rng.normal(size=(targets, models))
        bias = self.lo_model_bias * rng.normal(size=(1, models))
        x_b = common + bias + self.lo_noise * rng.normal(size=(targets, models))
        kept = (
            1.0 - self.fit_correction - self.fit_correction_spread * rng.normal(size=(targets, 1))
        )
        x_a = common + kept * bias + self.fit_noise * rng.normal(size=(targets, models))
        return x_a, x_b, y


WORLDS = {  # a large shared model effect; a large spread across targets
    "shared models": World(),
    "spread targets": World(fit_correction_spread=1.0),
}


def simulation_check(
    world: World,
    small: tuple[int, int],
    large: tuple[int, int],
    *,
    studies: int,
    pilots: int,
    replicates: int,
    seed: int,
) -> dict[str, Any]:
    """Draw ``studies`` studies of size ``large`` (fresh models and targets each): the sd of their
    estimates (the true ``se_true``), their mean two-way bootstrap sd, and the share whose two-way
    interval excludes 0 (the power at the world's true difference, the mean estimate). Against it,
    the projection from ``pilots`` studies of size ``small`` (as bench-v2 -> bench-v3)."""
    rng = np.random.default_rng(seed)
    estimates, boot_sd, excludes = [], [], []
    for _ in range(studies):
        d = measure(*world.draw(*large, rng), replicates, int(rng.integers(2**31)))
        estimates.append(d.point)
        boot_sd.append(float(np.std(d.two_way_boot)))
        lo, hi = d.interval()
        excludes.append(lo > 0 or hi < 0)
    delta = float(np.mean(estimates))
    proj = []
    for _ in range(pilots):
        d = measure(*world.draw(*small, rng), replicates, int(rng.integers(2**31)))
        proj.append(project(components(d), *large))
    se_true = float(np.std(estimates, ddof=1))
    se_boot = math.sqrt(float(np.mean(np.square(boot_sd))))

    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "min": float(np.min(values)),
                "max": float(np.max(values))}  # fmt: skip

    return {
        "world": asdict(world),
        "small": list(small),
        "large": list(large),
        "studies": studies,
        "pilots": pilots,
        "true_delta": delta,
        "measured": {
            "se_true": se_true,
            "se_two_way": se_boot,
            "power": float(np.mean(excludes)),
        },
        "projected_from_small": {
            "se_true": spread([p.se_true for p in proj]),
            "se_two_way": spread([p.se_two_way for p in proj]),
            "power_at_true_delta": spread(
                [float(norm.cdf((delta - Z95 * p.se_two_way) / p.se_true)) for p in proj]
            ),
        },
    }


# ---------------------------------------------------------------------------------------------
# the run


def analyse(
    results: dict[str, Any],
    *,
    replicates: int,
    repeats: int,
    simulations: int = 400,
    check: bool = True,
) -> dict[str, Any]:
    """Part (a) for every scheme and both halves, part (b) for :data:`PROJECTED`."""
    start = time.perf_counter()
    study = Study(results, replicates=replicates)
    s0, s1 = study.seeds
    plan = results["plan"]
    table = build_table(results, seeds=[s0, s1], budgets=BUDGETS, workers=1,
                        names=["last-observed", "tse-e1"])  # fmt: skip
    cands = (study.by_name["fit/base"], PORTABLE)

    def grouped(fn) -> dict[str, list[str]]:
        keys = {t["key"]: fn(t) for t in plan["targets"]}
        return {g: [t for t in table.targets if keys[t] == g] for g in sorted(set(keys.values()))}

    out: dict[str, Any] = {
        "format": "ncap-power/1",
        "data": {
            "models": len(table.models),
            "model_families": sorted(set(study.families)),
            "targets": len(table.targets),
            "dataset_families": grouped(dataset_family),
            "dataset_groups": grouped(dataset_group),
        },
        "replicates": replicates,
        "budgets": list(BUDGETS),
        "planned": PLANNED,
        "schemes": [asdict(s) for s in SCHEMES],
        "strict": {},
        "projection": {},
        "grid": {},
        "subsample_check": {},
    }
    halves = {"report": (s1, s0), "selection": (s0, s1)}
    n_m = len(table.models)
    for scheme in SCHEMES:
        target_units, model_units = units(scheme, plan, table.models, study.families)
        for half_name, (s, ts) in halves.items():
            cells = half_cells(table, s, ts, target_units, model_units, cands)
            for c in cands:
                diffs = {}
                for f in BUDGETS:
                    x_a, x_b = cells.x[c.name][f], cells.x["last-observed"][f]
                    diffs[f"{c.name} - LO @ {f:g}"] = (
                        kendall_difference(x_a, x_b, cells.y, study.counts, study.target_counts),
                        (x_a, x_b, cells.y) if f in (0.05, 0.1) else None,
                    )
                pooled_key = f"{c.name} - LO, mean of {', '.join(f'{f:g}' for f in BUDGETS)}"
                diffs[pooled_key] = (pooled([d for d, _ in diffs.values()]), None)
                for key, (d, arrays) in diffs.items():
                    comp = components(d)
                    out["strict"].setdefault(scheme.name, {}).setdefault(half_name, {})[key] = {
                        "delta": d.point,
                        "per_target": dict(zip(cells.targets, map(float, d.per_target))),
                        "model_ci95": d.interval("model"),
                        "two_way_ci95": d.interval("two_way"),
                        "two_way_half_width": d.half_width("two_way"),
                        "components": asdict(comp),
                    }
                    if scheme.name not in PROJECTED:
                        continue
                    n_t = len(cells.targets)
                    proj = {
                        "bench-v2": asdict(project(comp, n_m, n_t)),
                        "planned": asdict(project(comp, PLANNED["models"], PLANNED["targets"])),
                        "planned, targets' spread x2": asdict(
                            project(comp, PLANNED["models"], PLANNED["targets"], 2.0)
                        ),
                    }
                    at = out["projection"].setdefault(scheme.name, {}).setdefault(half_name, {})
                    at[key] = proj
                    grid = out["grid"].setdefault(scheme.name, {}).setdefault(half_name, {})
                    grid[key] = [
                        asdict(project(comp, m, t)) for m in GRID_MODELS for t in GRID_TARGETS
                    ]
                    if half_name == "report" and arrays is not None:
                        sizes = [(20, 5), (20, 9), (30, 7), (40, 5)]
                        check_at = out["subsample_check"].setdefault(scheme.name, {})
                        check_at[key] = subsample_check(
                            *arrays, sizes, repeats=repeats, replicates=replicates,
                            seed=SUBSAMPLE_SEED,
                        )  # fmt: skip
    out["simulation_check"] = {
        name: simulation_check(
            world, (n_m, len(table.targets)), (PLANNED["models"], PLANNED["targets"]),
            studies=simulations, pilots=20, replicates=500, seed=SIMULATION_SEED,
        )
        for name, world in WORLDS.items()
    }  # fmt: skip
    if check:
        out["reproduces"] = _reproduction(out)
    out["seconds"] = time.perf_counter() - start
    return out


ISSUE_22 = {"0.05": (0.042, -0.053, 0.131), "0.1": (0.008, -0.085, 0.100)}  # group + model


def _reproduction(out: Mapping[str, Any]) -> dict[str, Any]:
    """The LOTO rows against bench-v2-study/report.json's ``fit/base`` - LO (same draws, to
    1e-12), and the "dataset group + model" rows against issue 22's figures (to 5e-4)."""
    path = Path(__file__).resolve().parent / "results" / "bench-v2-study" / "report.json"
    rows: dict[str, Any] = {"study": {}, "issue-22": {}}
    report = json.loads(path.read_text()) if path.exists() else None
    for f in (0.05, 0.1):
        loto = out["strict"][SCHEMES[3].name]["report"][f"fit/base - LO @ {f:g}"]
        if report is not None:
            ref = report["comparisons"][str(f)]["default_minus_lo"]
            rows["study"][str(f)] = {
                "reference": [ref["delta"], *ref["ci95"], *ref["two_way_ci95"]],
                "here": [loto["delta"], *loto["model_ci95"], *loto["two_way_ci95"]],
            }
        mine = out["strict"][SCHEMES[2].name]["report"][f"fit/base - LO @ {f:g}"]
        rows["issue-22"][str(f)] = {
            "reference": list(ISSUE_22[str(f)]),
            "here": [mine["delta"], *mine["model_ci95"]],
        }
    tol = {"study": 1e-12, "issue-22": 5e-4}
    equal = {
        k: bool(v) and all(np.allclose(r["reference"], r["here"], atol=tol[k], rtol=0)
                           for r in v.values())
        for k, v in rows.items()
    }  # fmt: skip
    return {"equal": equal, "rows": rows}


# ---------------------------------------------------------------------------------------------
# the report


def _ci(ci: Sequence[float]) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def render(out: Mapping[str, Any], command: str) -> str:
    data = out["data"]
    fams = "; ".join(f"{g}: {', '.join(ts)}" for g, ts in data["dataset_families"].items())
    grps = "; ".join(f"{g}: {', '.join(ts)}" for g, ts in data["dataset_groups"].items())
    lines = [
        "# bench-v3 design: power estimate from bench-v2",
        "",
        f"Command: `{command}` ({out['seconds']:.0f} s on the 2-core machine, loaded by other "
        "work). Written by `benchmarks/power_v3.py`; method and assumptions: docs/benchmark.md, "
        '"bench-v3 design: power estimate".',
        "",
        f"bench-v2: {data['models']} models in {len(data['model_families'])} families; "
        f"{data['targets']} targets. Dataset families: {fams}. Dataset groups: {grps}. "
        f"B = {out['replicates']} replicates (model draws `default_rng(14)`, target draws "
        "`default_rng(15)`, as the v2 study).",
        "",
        "## (a) Kendall difference from LO on bench-v2, by cross-fitting",
        "",
        "Mean over targets of Kendall(score) - Kendall(LO), scores from one seed, truth from the "
        "other (report half: scores of seed 1). 95% percentile intervals of the model bootstrap "
        "and of the two-way (models x targets) bootstrap; fits not refitted per replicate. "
        "`fit/portable` reads LO, its slope, TSE-E1 and LogME.",
        "",
        "| left out of the fit | half | difference | Δ | model CI | two-way CI |",
        "|---|---|---|---|---|---|",
    ]
    for scheme, halves in out["strict"].items():
        for half, rows in halves.items():
            for key, r in rows.items():
                lines.append(
                    f"| {scheme} | {half} | {key} | {r['delta']:+.3f} | {_ci(r['model_ci95'])} | "
                    f"{_ci(r['two_way_ci95'])} |"
                )
    rep = out.get("reproduces")
    if rep:
        lines += [
            "",
            "Checks: the LOTO rows equal bench-v2-study/report.json's `fit/base` - LO (point, "
            f'model CI, two-way CI; 1e-12): **{rep["equal"]["study"]}**. The "dataset group + '
            "model\" rows equal issue 22's +0.042 [-0.053, +0.131] (5%) and +0.008 "
            f"[-0.085, +0.100] (10%): **{rep['equal']['issue-22']}**.",
        ]
    lines += [
        "",
        "## (b) Projected two-way interval of one budget's difference",
        "",
        "se_boot: sd of the two-way bootstrap; half-width: 1.96 se_boot; se_true: sampling sd of "
        "the estimate (new models and targets); MDE80: the smallest true difference whose "
        "two-way 95% interval excludes 0 with 80% power (1.96 se_boot + 0.84 se_true); Holm x5: "
        "the same at Holm's strictest step over the v3 protocol's five confirmatory tests "
        "(2.58 se_boot + 0.84 se_true); "
        "P(0.05), P(0.10): power for a true difference of +0.05, +0.10; shares: the two-way "
        "variance's parts from the model effect shared by the targets / each target's own model "
        "noise / the targets' true spread.",
        "",
        "| left out | half | difference | design | models x targets | se_boot | half-width | "
        "se_true | MDE80 | MDE80 Holm x5 | P(0.05) | P(0.10) | shares |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scheme, halves in out["projection"].items():
        for half, rows in halves.items():
            for key, designs in rows.items():
                for label, p in designs.items():
                    lines.append(
                        f"| {scheme} | {half} | {key} | {label} | {p['models']} x "
                        f"{p['targets']} | {p['se_two_way']:.3f} | ±{p['half_width']:.3f} | "
                        f"{p['se_true']:.3f} | {p['mde80']:.3f} | {p['mde80_holm5']:.3f} | "
                        f"{p['power']['0.05']:.2f} | {p['power']['0.1']:.2f} | "
                        + " / ".join(f"{100 * v:.0f}%" for v in p["shares"].values())
                        + " |"
                    )
    lines += [
        "",
        "## Check of the projection on subsets of bench-v2 (report half)",
        "",
        "The two-way bootstrap's sd measured on random subsets of models and targets (without "
        "replacement; mean variance over subsets) against the projection of the full data's "
        "components; and the full data's two-way sd projected up from each subset's own "
        "components (mean and range over subsets) against the one measured.",
        "",
        "| left out | difference | subset | sd measured | sd projected from full | "
        "full sd measured | full sd projected from subsets [range] |",
        "|---|---|---|---|---|---|---|",
    ]
    for scheme, keys in out["subsample_check"].items():
        for key, rows in keys.items():
            for r in rows:
                lo, hi = r["full_two_way_sd_projected_range"]
                lines.append(
                    f"| {scheme} | {key} | {r['models']} x {r['targets']} | "
                    f"{r['two_way_sd_measured']:.4f} | {r['two_way_sd_predicted_from_full']:.4f} "
                    f"| {r['full_two_way_sd_measured']:.4f} | "
                    f"{r['full_two_way_sd_projected_from_subsets']:.4f} [{lo:.4f}, {hi:.4f}] |"
                )
    lines += [
        "",
        "## Check of the projection in synthetic worlds (benchmarks/power_v3.py: World)",
        "",
        "Studies of the planned size drawn afresh (new models and targets each): the sd of their "
        "estimates (se_true), their two-way bootstrap sd (se_boot, root mean square) and the share "
        "whose two-way 95% interval excludes 0 (power at the world's true difference, the mean "
        "estimate); against the projection from pilot studies of bench-v2's size (mean [range] "
        "over pilots).",
        "",
        "| world | true Δ | studies | se_true measured | projected | se_boot measured | "
        "projected | power measured | projected |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out["simulation_check"].items():
        m, p = r["measured"], r["projected_from_small"]

        def mr(d: Mapping[str, float], fmt: str = ".4f") -> str:
            return f"{d['mean']:{fmt}} [{d['min']:{fmt}}, {d['max']:{fmt}}]"

        lines.append(
            f"| {name} ({r['small'][0]} x {r['small'][1]} -> {r['large'][0]} x "
            f"{r['large'][1]}) | {r['true_delta']:+.3f} | {r['studies']} | {m['se_true']:.4f} | "
            f"{mr(p['se_true'])} | {m['se_two_way']:.4f} | {mr(p['se_two_way'])} | "
            f"{m['power']:.2f} | {mr(p['power_at_true_delta'], '.2f')} |"
        )
    lines += ["", "## Two-way 95% half-width by design (report half)", ""]
    for scheme, halves in out["grid"].items():
        for key, grid in halves.get("report", {}).items():
            if not key.endswith(("@ 0.05", "@ 0.1")) and "mean of" not in key:
                continue
            lines += [f"{scheme}, {key}:", "",
                      "| models \\ targets | " + " | ".join(map(str, GRID_TARGETS)) + " |",
                      "|---" * (len(GRID_TARGETS) + 1) + "|"]  # fmt: skip
            for m in GRID_MODELS:
                row = [p for p in grid if p["models"] == m]
                lines.append(
                    f"| {m} | " + " | ".join(f"±{p['half_width']:.3f}" for p in row) + " |"
                )
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="?", default="benchmarks/results/bench-v2.json")
    p.add_argument("--out", default="benchmarks/results/bench-v3-power")
    p.add_argument("--replicates", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=20, help="random subsets per size (check)")
    args = p.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    out = analyse(results, replicates=args.replicates, repeats=args.repeats)
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    command = (
        f"OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/power_v3.py {args.results} "
        f"--out {args.out}"
        + (f" --replicates {args.replicates}" if args.replicates != 2000 else "")
        + (f" --repeats {args.repeats}" if args.repeats != 20 else "")
    )
    (dest / "power.json").write_text(json.dumps(out, indent=1) + "\n")
    (dest / "power.md").write_text(render(out, command))
    print((dest / "power.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
