"""The bench-v3 study (docs/benchmark-v3-protocol.md): the same two stages as bench-v2's, with a new
dataset family and a new model family for every fitted score, decisions per budget and two-way
(models x targets) bootstrap intervals.

``selection_stage_v3`` fixes σ, the winners per budget, the beta_eff pools' winners per bin and the
recalibration factors on the selection half (scored seed 0); ``report_stage_v3`` refuses other data,
then evaluates the report half (scored seed 1) once: Q1 (the recommended score against LO at 2.5, 5
and 10% of T), Q2 (beta_eff against its own control, early and late), Holm over the five, the default
per budget, Q3 (the ImageNet slice), the per-family tables, the secondary cross-fittings and the
coverage of the fitted scores' intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ncap.bench.plans import IMAGENET_MODELS, IMAGENET_TWINS
from ncap.bench.stats import bootstrap_p_value, holm, percentile_interval
from ncap.bench.study.bootstrap import draw_counts, fill_failures, kendall_boot, top1_regret_boot
from ncap.bench.study.candidates import Candidate, candidates_v3, paper_form
from ncap.bench.study.combine import CrossFit
from ncap.bench.study.halves import HalfEval, evaluate_half, keep_masks
from ncap.bench.study.selection import BINS, DELTA, Z, choose, recalibration, sigma_of
from ncap.bench.study.table import ScoreTable, build_table, logit, measurements_of
from ncap.exceptions import ConfigError
from ncap.predict.features import sigmoid

__all__ = [
    "BUDGETS",
    "FORMAT_V3",
    "PROTOCOL_V3",
    "Q1_BUDGETS",
    "StudyV3",
    "check_selection_v3",
    "is_v3",
    "report_stage_v3",
    "selection_stage_v3",
]

PROTOCOL_V3 = "docs/benchmark-v3-protocol.md"
FORMAT_V3 = "ncap-study-v3/1"
BUDGETS = (0.025, 0.05, 0.1, 0.2)
Q1_BUDGETS = (0.025, 0.05, 0.1)
REPLICATES = 2000
MODEL_SEED, TARGET_SEED = 26, 27  # section 4
# the family-cluster bootstrap's draws (section 4 leaves them open; Deviations, item 3)
ARCH_FAMILY_SEED, DATA_FAMILY_SEED = 30, 31
LO = "last-observed"


def is_v3(results: Mapping[str, Any]) -> bool:
    """Whether a results file is a bench-v3 build (every target names its dataset family)."""
    targets = results["plan"]["targets"]
    return bool(targets) and all(t.get("family") for t in targets) and "zoo" in results


def _budget_key(f: float) -> str:
    return str(f)


class StudyV3:
    """What both stages share: the data, its families, the candidates, the draws, the fits."""

    def __init__(self, results: dict[str, Any], *, replicates: int = REPLICATES) -> None:
        plan = results["plan"]
        self.results = results
        self.seeds = list(plan["seeds"])
        if len(self.seeds) != 2:
            raise ConfigError(
                f"the study needs exactly 2 seeds per (target, model) (got {self.seeds}); "
                "build the benchmark with seeds 0 and 1."
            )
        if not is_v3(results):
            raise ConfigError(
                "the bench-v3 study needs every target's dataset family (plan.targets[].family) "
                "and the zoo's model families; build the benchmark with `--plan v3`."
            )
        self.models = list(plan["models"])
        self.targets = [t["key"] for t in plan["targets"]]
        self.target_family = {t["key"]: t["family"] for t in plan["targets"]}
        zoo = results["zoo"]
        missing = [m for m in self.models if not zoo.get(m, {}).get("family")]
        if missing:
            raise ConfigError(f"the zoo of the results file names no family for {missing}.")
        self.model_family = [zoo[m]["family"] for m in self.models]
        self.source_task = [zoo[m].get("source_task") or "unknown" for m in self.models]
        self.measurements = measurements_of(results)
        self.cands = candidates_v3(self.measurements)
        self.by_name = {c.name: c for c in self.cands}
        self.replicates = replicates
        self.model_counts = draw_counts(len(self.models), replicates, MODEL_SEED)
        self.target_counts = draw_counts(len(self.targets), replicates, TARGET_SEED)
        self.crossfit = CrossFit(self.target_family, tuple((g,) for g in self.model_family))
        self.strictest = CrossFit(
            self.target_family,
            tuple(zip(self.model_family, self.source_task)),
            name="strictest",
        )

    def table(self, seed: int, workers: int | None, progress) -> ScoreTable:
        table = build_table(
            self.results, seeds=[seed], budgets=BUDGETS, workers=workers, progress=progress
        )
        if table.targets != self.targets or table.models != self.models:
            raise ConfigError("the score table's targets or models differ from the plan's.")
        return table

    def keep(self, table: ScoreTable) -> dict[str, np.ndarray]:
        return keep_masks(table, self.seeds)

    def half(self, table, seed, sigma, keep, cands=None, *, crossfit="primary", boot_all=()):
        fit = {"primary": self.crossfit, "strictest": self.strictest, "loto": None}[crossfit]
        return evaluate_half(
            table, cands if cands is not None else self.cands, seed=seed,
            truth_seed=[s for s in self.seeds if s != seed][0], sigma=sigma, keep=keep,
            counts=self.model_counts, boot_all=boot_all, crossfit=fit,
        )  # fmt: skip

    # -- the two-way bootstrap (section 4) -------------------------------------------------------

    def two_way(self, per_target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Replicates of the mean over drawn targets of a ``(targets, B)`` array of per-target
        replicates (each computed on the drawn models); ``weights`` masks targets out."""
        tc = self.target_counts * (1.0 if weights is None else weights[None, :])
        with np.errstate(invalid="ignore", divide="ignore"):
            return (tc * per_target.T).sum(axis=1) / tc.sum(axis=1)


def _kendall_of(half: HalfEval, name: str, fs: Sequence[float]) -> np.ndarray:
    """Per-target point Kendall averaged over ``fs``."""
    return np.mean([half.kendall(name, f) for f in fs], axis=0)


def _kboot_of(half: HalfEval, name: str, fs: Sequence[float]) -> np.ndarray:
    return np.mean([half.kendall_boot[name][f] for f in fs], axis=0)


def _summary(point: float | None, boot: np.ndarray) -> dict[str, Any]:
    return {"value": point, "ci95": percentile_interval(boot)}


def kendall_summary(
    study: StudyV3, half: HalfEval, name: str, fs: Sequence[float], minus: str | None = None,
    targets: np.ndarray | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Mean Kendall over the targets (``targets``: a 0/1 mask) and ``fs`` of ``name`` (minus
    ``minus``'s), with its two-way interval, the models-only interval and the two-way p-value."""
    per = _kendall_of(half, name, fs)
    boot = _kboot_of(half, name, fs)
    if minus is not None:
        per = per - _kendall_of(half, minus, fs)
        boot = boot - _kboot_of(half, minus, fs)
    w = np.ones(len(half.targets)) if targets is None else targets.astype(float)
    point = float((per * w).sum() / w.sum())
    two = study.two_way(boot, w)
    models_only = (boot * w[:, None]).sum(axis=0) / w.sum()
    return {
        "value": point,
        "ci95": percentile_interval(two),
        "p": bootstrap_p_value(two),
        "models_only_ci95": percentile_interval(models_only),
    }


def _kendall_matrix(
    half: HalfEval, table: ScoreTable, keep, name: str, f: float, counts: np.ndarray
) -> np.ndarray:
    """``(targets, B)`` Kendall of a candidate's stored scores on other model draws."""
    out = np.empty((len(half.targets), counts.shape[0]))
    for i, t in enumerate(half.targets):
        rows = keep[t]
        truth = table.truth(t, half.truth_seed)[rows]
        x = half.scores[(name, f, t)].value[rows]
        if not np.isfinite(x).any():
            out[i] = -1.0
            continue
        out[i] = np.nan_to_num(kendall_boot(fill_failures(x), truth, counts[:, rows]), nan=0.0)
    return out


def family_cluster(
    study: StudyV3, half: HalfEval, table: ScoreTable, keep, a: str, b: str, fs: Sequence[float]
) -> dict[str, Any]:
    """Δ = a − b with dataset families and architecture families resampled as wholes."""
    fams = sorted(set(study.model_family))
    draws = np.random.default_rng(ARCH_FAMILY_SEED).integers(
        0, len(fams), (study.replicates, len(fams))
    )
    fam_counts = np.zeros((study.replicates, len(fams)))
    np.add.at(fam_counts, (np.arange(study.replicates)[:, None], draws), 1.0)
    member = np.array([[g == h for g in study.model_family] for h in fams], dtype=float)
    model_counts = fam_counts @ member  # (B, models)
    dfams = sorted(set(study.target_family.values()))
    ddraws = np.random.default_rng(DATA_FAMILY_SEED).integers(
        0, len(dfams), (study.replicates, len(dfams))
    )
    dcounts = np.zeros((study.replicates, len(dfams)))
    np.add.at(dcounts, (np.arange(study.replicates)[:, None], ddraws), 1.0)
    tmember = np.array(
        [[study.target_family[t] == h for t in half.targets] for h in dfams], dtype=float
    )
    target_counts = dcounts @ tmember  # (B, targets)
    per = np.mean(
        [
            _kendall_matrix(half, table, keep, a, f, model_counts)
            - _kendall_matrix(half, table, keep, b, f, model_counts)
            for f in fs
        ],
        axis=0,
    )
    boot = (target_counts * per.T).sum(axis=1) / target_counts.sum(axis=1)
    return {"ci95": percentile_interval(boot), "p": bootstrap_p_value(boot)}


# ---------------------------------------------------------------------------------------------
# selection


def _winners_per_budget(half: HalfEval, cands: Sequence[Candidate]) -> dict[str, dict[str, Any]]:
    out = {}
    nc_pool = [c for c in cands if c.nc]
    non_pool = [c for c in cands if not c.nc]
    for f in half.budgets:
        s = {c.name: half.mean_kendall(c.name, (f,)) for c in cands}
        w_nc, w_non = choose(nc_pool, s), choose(non_pool, s)
        w_all = w_nc if s[w_nc] >= s[w_non] + DELTA else w_non
        out[_budget_key(f)] = {"W_nc": w_nc, "W_non": w_non, "W_all": w_all}
        out[_budget_key(f)] |= {f"S_{k}": s[v] for k, v in list(out[_budget_key(f)].items())}
    return out


def q2_pool(cands: Sequence[Candidate]) -> list[Candidate]:
    """Section 4, Q2: the beta_eff-using rank averages and fitted models (each has a control)."""
    return [c for c in cands if c.nc and c.kind in ("ravg", "fit") and c.control]


def _q2_winners(half: HalfEval, cands: Sequence[Candidate]) -> dict[str, dict[str, Any]]:
    pool = q2_pool(cands)
    out = {}
    for b, fs in BINS.items():
        s = {c.name: half.mean_kendall(c.name, fs) for c in pool}
        w = choose(pool, s)
        control = next(c.control for c in pool if c.name == w)
        out[b] = {"winner": w, "control": control, "S": s[w]}
    return out


def _noise_ceiling(study: StudyV3, table: ScoreTable, keep) -> dict[str, Any]:
    a, b = study.seeds
    per, boots = [], []
    for t in table.targets:
        rows = keep[t]
        fa = table.truth(t, a)[rows]
        fb = table.truth(t, b)[rows]
        boots.append(np.nan_to_num(kendall_boot(fa, fb, study.model_counts[:, rows]), nan=0.0))
        per.append(float(kendall_boot(fa, fb, np.ones((1, rows.sum())))[0]))
    two = study.two_way(np.array(boots))
    return {
        "kendall": {"value": float(np.mean(per)), "ci95": percentile_interval(two)},
        "by_target": dict(zip(table.targets, per)),
    }


def _candidate_rows(study: StudyV3, half: HalfEval) -> dict[str, dict[str, Any]]:
    """Every candidate's mean Kendall per budget with its two-way interval, and per target."""
    return {
        c.name: {
            _budget_key(f): kendall_summary(study, half, c.name, (f,))
            | {"by_target": dict(zip(half.targets, map(float, half.kendall(c.name, f))))}
            for f in half.budgets
        }
        for c in study.cands
    }


def selection_stage_v3(
    results: dict[str, Any],
    *,
    data_sha: str,
    replicates: int = REPLICATES,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fix σ, the winners per budget, Q2's winners per bin and the recalibration factors on the
    selection half (section 3)."""
    start = time.perf_counter()
    study = StudyV3(results, replicates=replicates)
    s0, s1 = study.seeds
    table = study.table(s0, workers, progress)
    keep = study.keep(table)
    dyn = [c for c in study.cands if c.oriented]
    raw = evaluate_half(table, dyn, seed=s0, truth_seed=s1, sigma={}, keep=keep,
                        counts=study.model_counts[:1])  # fmt: skip
    sigma = sigma_of(raw, [c.name for c in dyn])
    half = study.half(table, s0, sigma, keep)
    return {
        "format": FORMAT_V3,
        "stage": "selection",
        "protocol": PROTOCOL_V3,
        "data_sha256": data_sha,
        "measurements": list(study.measurements),
        "n_candidates": len(study.cands),
        "candidates": [
            {"name": c.name, "family": c.family, "level": c.level, "nc": c.nc, "control": c.control}
            for c in study.cands
        ],  # fmt: skip
        "budgets": list(BUDGETS),
        "bins": {b: list(fs) for b, fs in BINS.items()},
        "delta": DELTA,
        "replicates": replicates,
        "seeds": {"scored": s0, "truth": s1},
        "families": {
            "dataset": study.target_family,
            "architecture": dict(zip(study.models, study.model_family)),
            "source_task": dict(zip(study.models, study.source_task)),
        },
        "sigma": sigma,
        "winners": _winners_per_budget(half, study.cands),
        "q2_winners": _q2_winners(half, study.cands),
        "S": {
            _budget_key(f): {c.name: half.mean_kendall(c.name, (f,)) for c in study.cands}
            for f in BUDGETS
        }
        | {
            b: {c.name: half.mean_kendall(c.name, fs) for c in study.cands}
            for b, fs in BINS.items()
        },
        "recalibration": recalibration(half, study.cands, table.final, table.models, keep),
        "candidates_by_budget": _candidate_rows(study, half),
        "failures": {f"{n}@{f}": r for (n, f), r in table.reasons.items()},
        "dropped_pairs": {
            t: [m for m, k in zip(table.models, keep[t]) if not k] for t in table.targets
        },
        "noise_ceiling": _noise_ceiling(study, table, keep),
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------------------------------
# report


def check_selection_v3(selection: Mapping[str, Any], data_sha: str) -> None:
    if selection.get("format") != FORMAT_V3 or selection.get("stage") != "selection":
        raise ConfigError(
            f"the selection file is not a bench-v3 study selection (format {FORMAT_V3}); run "
            "`ncap bench evaluate FILE --stage selection` first."
        )
    if selection["data_sha256"] != data_sha:
        raise ConfigError(
            f"the selection was made on other data (sha256 {selection['data_sha256'][:12]}…, "
            f"this file {data_sha[:12]}…); the report stage only runs on the data it was "
            "selected on. Rerun --stage selection and commit its selection.json first."
        )


def headline_v3(study: StudyV3, selection: Mapping[str, Any]) -> list[str]:
    """Section 6's headline set: winners and their controls, LO and the baselines, the paper
    form, fit/base and fit/portable, Q2's winners and controls."""
    names = [LO, "learning-curve", "tse", "tse-e1", "logme", "param-count", "source-accuracy"]
    names += ["fit/base", "fit/portable", "fit/portable+size", "ravg/lo+logme"]
    names += [paper_form(m) for m in study.measurements]
    for w in selection["winners"].values():
        for key in ("W_nc", "W_non", "W_all"):
            names.append(w[key])
            if study.by_name[w[key]].control:
                names.append(study.by_name[w[key]].control)
    for q in selection["q2_winners"].values():
        names += [q["winner"], q["control"]]
    return list(dict.fromkeys(n for n in names if n in study.by_name))


def _q3_imagenet(
    study: StudyV3, half: HalfEval, table: ScoreTable, keep, names: Sequence[str]
) -> dict[str, Any] | None:
    """Section 4, Q3: per score and budget, the share of (checkpoint, twin) pairs ordered as the
    truth orders them, and Kendall within the eight models, over the targets that ran them."""
    pairs = [
        (study.models.index(a), study.models.index(b))
        for a, b in zip(IMAGENET_MODELS, IMAGENET_TWINS)
        if a in study.models and b in study.models
    ]
    if not pairs:
        return None
    idx = [i for p in pairs for i in p]
    targets = [t for t in half.targets if all(keep[t][i] for i in idx)]
    if not targets:
        return None
    rng_p = np.random.default_rng(MODEL_SEED)
    rng_t = np.random.default_rng(TARGET_SEED)
    pair_draws = rng_p.integers(0, len(pairs), (study.replicates, len(pairs)))
    target_draws = rng_t.integers(0, len(targets), (study.replicates, len(targets)))
    pc = np.zeros((study.replicates, len(pairs)))
    np.add.at(pc, (np.arange(study.replicates)[:, None], pair_draws), 1.0)
    tc = np.zeros((study.replicates, len(targets)))
    np.add.at(tc, (np.arange(study.replicates)[:, None], target_draws), 1.0)
    model_counts = np.repeat(pc, 2, axis=1)  # both members of a drawn pair
    out: dict[str, Any] = {"pairs": [[study.models[a], study.models[b]] for a, b in pairs],
                           "targets": targets, "by_score": {}}  # fmt: skip
    for name in names:
        row = {}
        for f in half.budgets:
            agree, kend, kboot = [], [], []
            for t in targets:
                truth = table.truth(t, half.truth_seed)
                x = fill_failures(half.scores[(name, f, t)].value)
                hits = []
                for a, b in pairs:
                    sx, sy = np.sign(x[a] - x[b]), np.sign(truth[a] - truth[b])
                    hits.append(0.5 if sx == 0 or sy == 0 else float(sx == sy))
                agree.append(hits)
                kend.append(float(kendall_boot(x[idx], truth[idx], np.ones((1, len(idx))))[0]))
                kboot.append(np.nan_to_num(kendall_boot(x[idx], truth[idx], model_counts), nan=0))
            agree_m = np.array(agree)  # (targets, pairs)
            share_boot = ((tc @ agree_m) * pc).sum(axis=1) / (tc.sum(axis=1) * pc.sum(axis=1))
            k_boot = (tc * np.array(kboot).T).sum(axis=1) / tc.sum(axis=1)
            row[_budget_key(f)] = {
                "pairs_ordered_right": _summary(float(agree_m.mean()), share_boot),
                "kendall_within_8": _summary(float(np.mean(kend)), k_boot),
                "by_target": dict(zip(targets, map(float, agree_m.mean(axis=1)))),
            }
        out["by_score"][name] = row
    return out


def _coverage_v3(
    study: StudyV3, half: HalfEval, table: ScoreTable, keep, name: str, f: float,
    k: Mapping[str, Any] | None,
) -> dict[str, Any] | None:  # fmt: skip
    """Coverage of the 68%/95% intervals (raw, recalibrated) against the run's own final
    accuracy, with two-way intervals, and the median width in points."""
    out: dict[str, Any] = {}
    for q, z in Z.items():
        for label in ("raw", "recalibrated"):
            factor = 1.0 if label == "raw" else (k or {}).get(_budget_key(f), {}).get(q)
            if factor is None:
                return None
            hits, oks, widths = [], [], []
            for t in table.targets:
                sc = half.scores[(name, f, t)]
                if sc.link_mean is None or sc.link_sd is None:
                    return None
                truth = table.truth(t, half.seed)
                ok = keep[t] & np.isfinite(sc.link_mean) & np.isfinite(sc.link_sd)
                lo = sc.link_mean - factor * z * sc.link_sd
                hi = sc.link_mean + factor * z * sc.link_sd
                if sc.link == "logit":
                    y, width = logit(truth), sigmoid(hi) - sigmoid(lo)
                else:
                    y, width = truth, np.clip(hi, 0, 1) - np.clip(lo, 0, 1)
                hits.append(np.where(ok, ((y >= lo) & (y <= hi)).astype(float), 0.0))
                oks.append(ok.astype(float))
                widths.append(100 * width[ok])
            hit_m, ok_m = np.array(hits), np.array(oks)  # (targets, models)
            if ok_m.sum() == 0:
                return None
            num = (study.model_counts @ hit_m.T) * study.target_counts
            den = (study.model_counts @ ok_m.T) * study.target_counts
            with np.errstate(invalid="ignore", divide="ignore"):
                boot = num.sum(axis=1) / den.sum(axis=1)
            out[f"{q}/{label}"] = {
                "coverage": float(hit_m.sum() / ok_m.sum()),
                "ci95": percentile_interval(boot),
                "median_width_points": float(np.median(np.concatenate(widths))),
                "n": int(ok_m.sum()),
            }
    return out


def _top1_regret(study: StudyV3, half: HalfEval, table, keep, name: str, f: float) -> dict:
    per, boots = [], []
    for t in half.targets:
        rows = keep[t]
        truth = table.truth(t, half.truth_seed)[rows]
        x = fill_failures(half.scores[(name, f, t)].value[rows])
        per.append(float(top1_regret_boot(x, truth, np.ones((1, rows.sum())))[0]))
        boots.append(top1_regret_boot(x, truth, study.model_counts[:, rows]))
    return _summary(float(np.mean(per)), study.two_way(np.array(boots)))


def report_stage_v3(
    results: dict[str, Any],
    selection: Mapping[str, Any],
    *,
    data_sha: str,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate the report half once with the choices frozen in ``selection`` (sections 3-6)."""
    check_selection_v3(selection, data_sha)
    start = time.perf_counter()
    study = StudyV3(results, replicates=int(selection["replicates"]))
    s0, s1 = study.seeds
    sigma = selection["sigma"]
    winners = selection["winners"]
    table = study.table(s1, workers, progress)
    keep = study.keep(table)
    half = study.half(table, s1, sigma, keep)
    headline = headline_v3(study, selection)

    def test(a: str, b: str, fs: Sequence[float], cluster: bool = False) -> dict[str, Any]:
        out = {"a": a, "b": b} | kendall_summary(study, half, a, fs, minus=b)
        out["passes"] = bool(out["ci95"][0] > 0)
        if cluster:
            out["family_cluster"] = family_cluster(study, half, table, keep, a, b, fs)
        return out

    # Q1, Q2 and Holm (section 4)
    tests: dict[str, Any] = {}
    for f in Q1_BUDGETS:
        tests[f"Q1/{f}"] = test(winners[_budget_key(f)]["W_all"], LO, (f,), cluster=True)
    for b, fs in BINS.items():
        q = selection["q2_winners"][b]
        tests[f"Q2/{b}"] = test(q["winner"], q["control"], fs, cluster=True)
    holm_passes = holm({k: v["p"] for k, v in tests.items()})
    for k in tests:
        tests[k]["holm_passes"] = holm_passes[k]
    # the default per budget (section 3.5)
    defaults = {}
    for f in BUDGETS:
        w = winners[_budget_key(f)]["W_all"]
        vs_lo = test(w, LO, (f,)) if w != LO else None
        beats = vs_lo is not None and vs_lo["ci95"][0] > 0
        defaults[_budget_key(f)] = {
            "score": w if beats else LO,
            "W_all": w,
            "W_all_minus_lo": vs_lo,
            "beats_lo": beats,
            "survives_holm": tests.get(f"Q1/{f}", {}).get("holm_passes"),
            "message": None
            if beats
            else "nothing beat the last observed accuracy reliably at this budget",
        }
    # the headline set per budget and bin
    groups = {_budget_key(f): (f,) for f in BUDGETS} | dict(BINS)
    tables: dict[str, Any] = {}
    for name in headline:
        cand = study.by_name[name]
        row = {}
        for key, fs in groups.items():
            entry = {"kendall": kendall_summary(study, half, name, fs)}
            if name != LO:
                entry["minus_lo"] = kendall_summary(study, half, name, fs, minus=LO)
            if cand.control:
                entry["minus_control"] = kendall_summary(study, half, name, fs, minus=cand.control)
            if len(fs) == 1:
                entry["top1_regret"] = _top1_regret(study, half, table, keep, name, fs[0])
                for metric in ("weighted_tau", "spearman"):
                    entry[metric] = half.mean_metric(name, fs, metric)
            entry["n_failed"] = int(
                sum(half.point[name][f][t]["n_failed"] for f in fs for t in half.targets)
            )
            row[key] = entry
        tables[name] = row
    # who wins where: per dataset family (targets) and per architecture family (within it)
    by_dataset_family = {}
    for fam in sorted(set(study.target_family.values())):
        mask = np.array([study.target_family[t] == fam for t in half.targets])
        by_dataset_family[fam] = {
            name: {
                _budget_key(f): {
                    "kendall": kendall_summary(study, half, name, (f,), targets=mask),
                    "minus_lo": kendall_summary(study, half, name, (f,), minus=LO, targets=mask),
                }
                for f in BUDGETS
            }
            for name in headline
        }
    by_arch_family = _within_families(study, half, table, keep, headline)
    # each family of scores: its best member on the selection half (per budget)
    family_best = {}
    for fam in sorted({c.family for c in study.cands}):
        members = [c.name for c in study.cands if c.family == fam]
        for f in BUDGETS:
            s = selection["S"][_budget_key(f)]
            best = max(members, key=lambda n: (s[n], n))
            family_best.setdefault(fam, {})[_budget_key(f)] = {
                "best": best,
                "S_selection": s[best],
                "report": kendall_summary(study, half, best, (f,)),
                "report_minus_lo": kendall_summary(study, half, best, (f,), minus=LO)
                if best != LO
                else None,
            }
    # secondary cross-fittings of the headline set's fitted scores
    fitted = [study.by_name[n] for n in headline if study.by_name[n].kind == "fit"]
    secondary = {}
    for mode in ("loto", "strictest"):
        other = study.half(table, s1, sigma, keep, fitted + [study.by_name[LO]], crossfit=mode)
        secondary[mode] = {
            c.name: {
                _budget_key(f): {
                    "kendall": kendall_summary(study, other, c.name, (f,)),
                    "minus_lo": kendall_summary(study, other, c.name, (f,), minus=LO),
                }
                for f in BUDGETS
            }
            for c in fitted
        }
    # calibration: coverage of every fitted score and of the defaults (section 5)
    coverage: dict[str, Any] = {}
    names = {c.name for c in study.cands if c.kind == "fit"}
    names |= {d["score"] for d in defaults.values() if study.by_name[d["score"]].has_sd}
    for name in sorted(names):
        for f in BUDGETS:
            cov = _coverage_v3(
                study, half, table, keep, name, f, selection["recalibration"].get(name)
            )
            if cov is not None:
                coverage.setdefault(name, {})[_budget_key(f)] = cov
    return {
        "format": FORMAT_V3,
        "stage": "report",
        "protocol": PROTOCOL_V3,
        "data_sha256": data_sha,
        "seeds": {"scored": s1, "truth": s0},
        "replicates": study.replicates,
        "winners": winners,
        "q2_winners": selection["q2_winners"],
        "tests": tests,
        "defaults": defaults,
        "headline": headline,
        "tables": tables,
        "by_dataset_family": by_dataset_family,
        "by_architecture_family": by_arch_family,
        "family_best": family_best,
        "secondary_crossfitting": secondary,
        "q3_imagenet": _q3_imagenet(study, half, table, keep, headline),
        "coverage": coverage,
        "candidates_by_budget": _candidate_rows(study, half),
        "failures": {f"{n}@{f}": r for (n, f), r in table.reasons.items()},
        "dropped_pairs": {
            t: [m for m, k in zip(table.models, keep[t]) if not k] for t in table.targets
        },
        "noise_ceiling": _noise_ceiling(study, table, keep),
        "seconds": time.perf_counter() - start,
    }


def _within_families(
    study: StudyV3, half: HalfEval, table: ScoreTable, keep, names: Sequence[str]
) -> dict[str, Any]:
    """Per architecture family: the mean over targets of Kendall among that family's models, for
    each headline score and LO (a family of fewer than three models on a target is skipped), with
    a target-bootstrap interval of the difference from LO."""
    out: dict[str, Any] = {}
    for fam in sorted(set(study.model_family)):
        member = np.array([g == fam for g in study.model_family])
        rows_t = {t: keep[t] & member for t in half.targets}
        ts = [t for t in half.targets if rows_t[t].sum() >= 3]
        if not ts:
            continue
        entry: dict[str, Any] = {"targets": len(ts), "models": int(member.sum())}
        for f in BUDGETS:
            per = {}
            for name in names:
                vals = []
                for t in ts:
                    rows = rows_t[t]
                    truth = table.truth(t, half.truth_seed)
                    x = fill_failures(half.scores[(name, f, t)].value[rows])
                    vals.append(float(kendall_boot(x, truth[rows], np.ones((1, rows.sum())))[0]))
                per[name] = np.nan_to_num(np.array(vals), nan=0.0)
            draws = np.random.default_rng(TARGET_SEED).integers(
                0, len(ts), (study.replicates, len(ts))
            )
            entry[_budget_key(f)] = {
                name: {
                    "kendall": float(v.mean()),
                    "minus_lo": _summary(float((v - per[LO]).mean()), (v - per[LO])[draws].mean(1)),
                }
                for name, v in per.items()
            }
        out[fam] = entry
    return out
