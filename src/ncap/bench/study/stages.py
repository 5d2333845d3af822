"""The study's two stages (docs/benchmark-v2-protocol.md): ``selection`` fixes every choice on the
selection half and writes ``selection.json``; ``report`` refuses to run unless that file belongs to
the same data, then evaluates the report half once with the frozen choices.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ncap.bench.stats import bootstrap_p_value as _p_value
from ncap.bench.stats import holm as _holm
from ncap.bench.stats import percentile_interval as _interval
from ncap.bench.study.bootstrap import draw_counts, kendall_boot
from ncap.bench.study.candidates import candidates, current_default, paper_form
from ncap.bench.study.halves import HalfEval, evaluate_half, keep_masks
from ncap.bench.study.selection import (
    BINS,
    DELTA,
    Z,
    choose,
    recalibration,
    select_winners,
    sigma_of,
)
from ncap.bench.study.table import ScoreTable, build_table, logit, measurements_of
from ncap.exceptions import ConfigError
from ncap.predict.features import sigmoid
from ncap.predict.recommended import EARLY_LATE_BOUNDARY

__all__ = ["BUDGETS", "REPLICATES", "data_sha256", "report_stage", "selection_stage"]

BUDGETS = (0.025, 0.05, 0.1, 0.2)
REPLICATES = 2000
MODEL_SEED, TARGET_SEED = 14, 15
FORMAT = "ncap-study/1"


def data_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _summary(point: float | None, boot: np.ndarray) -> dict[str, Any]:
    return {"value": point, "ci95": _interval(boot)}


class Study:
    """Everything both stages share: the data, the candidates, the draws."""

    def __init__(self, results: dict[str, Any], *, replicates: int = REPLICATES) -> None:
        self.results = results
        plan = results["plan"]
        self.seeds = list(plan["seeds"])
        if len(self.seeds) != 2:
            raise ConfigError(
                f"the study needs exactly 2 seeds per (target, model) (got {self.seeds}); "
                "build the benchmark with seeds 0 and 1."
            )
        self.models = list(plan["models"])
        self.measurements = measurements_of(results)
        self.cands = candidates(self.measurements)
        self.by_name = {c.name: c for c in self.cands}
        self.counts = draw_counts(len(self.models), replicates, MODEL_SEED)
        n_targets = len(plan["targets"])
        draws = np.random.default_rng(TARGET_SEED).integers(0, n_targets, (replicates, n_targets))
        self.target_counts = np.zeros((replicates, n_targets))
        np.add.at(self.target_counts, (np.arange(replicates)[:, None], draws), 1.0)
        free = results["training_free"]
        first = plan["targets"][0]["key"]
        self.families = [free[first][m].get("family", m) for m in self.models]

    def table(self, seed: int, workers: int | None, progress) -> ScoreTable:
        return build_table(
            self.results, seeds=[seed], budgets=BUDGETS, workers=workers, progress=progress
        )

    def keep(self, table: ScoreTable) -> dict[str, np.ndarray]:
        return keep_masks(table, self.seeds)

    def headline(self, winners: Mapping[str, Mapping[str, str]]) -> list[str]:
        names = ["last-observed", "learning-curve", "tse", "tse-e1", "logme", "param-count",
                 "source-accuracy", "fit/base", "ravg/lo+params"]  # fmt: skip
        for m in self.measurements:
            names += [paper_form(m), current_default(m), f"fit/dyn/{m}/abs-mean",
                      f"ravg/lo+params+dyn/{m}/abs-mean"]  # fmt: skip
        for w in winners.values():
            for key in ("W_nc", "W_non", "W_all"):
                names.append(w[key])
                control = self.by_name[w[key]].control
                if control:
                    names.append(control)
        return list(dict.fromkeys(n for n in names if n in self.by_name))


def _half_tables(study: Study, half: HalfEval, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per candidate and budget: mean metrics, Kendall interval, Δ vs LO and vs its control."""
    out: dict[str, dict[str, Any]] = {}
    lo = "last-observed"
    groups = {str(f): (f,) for f in half.budgets} | {b: fs for b, fs in BINS.items()}
    for name in names:
        cand = study.by_name[name]
        row: dict[str, Any] = {}
        for key, fs in groups.items():
            kb = half.boot_mean(name, fs)
            entry: dict[str, Any] = {
                "kendall": _summary(half.mean_kendall(name, fs), kb),
                "minus_lo": _summary(
                    half.mean_kendall(name, fs) - half.mean_kendall(lo, fs),
                    kb - half.boot_mean(lo, fs),
                ),
            }
            if cand.control:
                entry["minus_control"] = _summary(
                    half.mean_kendall(name, fs) - half.mean_kendall(cand.control, fs),
                    kb - half.boot_mean(cand.control, fs),
                )
            for metric in ("weighted_tau", "spearman", "pearson", "top1_regret", "top3_regret",
                           "mae"):  # fmt: skip
                value = half.mean_metric(name, fs, metric)
                if name in half.boot and metric in half.boot[name][fs[0]]:
                    entry[metric] = _summary(value, half.boot_mean(name, fs, metric))
                else:
                    entry[metric] = {"value": value}
            entry["n_failed"] = int(
                sum(half.point[name][f][t]["n_failed"] for f in fs for t in half.targets)
            )
            if len(fs) == 1:
                entry["by_target"] = {}
                for i, t in enumerate(half.targets):
                    point = half.point[name][fs[0]][t]
                    entry["by_target"][t] = {
                        k: point[k]
                        for k in (
                            "kendall",
                            "weighted_tau",
                            "spearman",
                            "top1_regret",
                            "mae",
                            "n_failed",
                        )  # fmt: skip
                    } | {"kendall_ci95": _interval(half.kendall_boot[name][fs[0]][i])}
            row[key] = entry
        out[name] = row
    return out


def _noise_ceiling(study: Study, table: ScoreTable, keep) -> dict[str, Any]:
    a, b = study.seeds
    per_target, boots = {}, []
    for t in table.targets:
        rows = keep[t]
        fa = table.truth(t, a)[rows]
        fb = table.truth(t, b)[rows]
        w = study.counts[:, rows]
        kb = np.nan_to_num(kendall_boot(fa, fb, w), nan=0.0)
        boots.append(kb)
        per_target[t] = float(kendall_boot(fa, fb, np.ones((1, rows.sum())))[0])
    mean_boot = np.mean(boots, axis=0)
    return {
        "kendall": _summary(float(np.mean(list(per_target.values()))), mean_boot),
        "by_target": per_target,
    }


def _dropped(study: Study, table: ScoreTable, keep) -> dict[str, list[str]]:
    return {t: [m for m, k in zip(table.models, keep[t]) if not k] for t in table.targets}


def _record_candidates(
    half: HalfEval, study: Study, bins: Mapping[str, Sequence[float]]
) -> dict[str, str]:
    """Per bin, the A or D2 candidate with the lowest mean MAE on this half."""
    out = {}
    pool = [c for c in study.cands if c.has_sd]
    for b, fs in bins.items():
        maes = {c.name: half.mean_metric(c.name, fs, "mae") for c in pool}
        maes = {k: v for k, v in maes.items() if v is not None}
        out[b] = min(maes, key=lambda k: (maes[k], k))
    return out


def selection_stage(
    results: dict[str, Any],
    *,
    data_sha: str,
    replicates: int = REPLICATES,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fix σ, the winners per bin and the recalibration factors on the selection half."""
    start = time.perf_counter()
    study = Study(results, replicates=replicates)
    s0, s1 = study.seeds
    table = study.table(s0, workers, progress)
    keep = study.keep(table)
    dyn = [c.name for c in study.cands if c.oriented]
    raw = evaluate_half(table, [study.by_name[n] for n in dyn], seed=s0, truth_seed=s1,
                        sigma={}, keep=keep, counts=study.counts[:1])  # fmt: skip
    sigma = sigma_of(raw, dyn)
    half = evaluate_half(
        table, study.cands, seed=s0, truth_seed=s1, sigma=sigma, keep=keep, counts=study.counts
    )
    winners = select_winners(half, study.cands)
    headline = study.headline(winners)
    half_boot = evaluate_half(
        table, [study.by_name[n] for n in headline], seed=s0, truth_seed=s1, sigma=sigma,
        keep=keep, counts=study.counts, boot_all=headline,
    )  # fmt: skip
    for name in headline:
        half.boot[name] = half_boot.boot[name]
    return {
        "format": FORMAT,
        "stage": "selection",
        "protocol": "docs/benchmark-v2-protocol.md",
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
        "sigma": sigma,
        "winners": {
            b: {k: w[k] for k in ("W_nc", "W_non", "W_all")}
            | {f"S_{k}": w["S"][w[k]] for k in ("W_nc", "W_non", "W_all")}
            for b, w in winners.items()
        },
        "S": {b: w["S"] for b, w in winners.items()},
        "kendall_by_target": {
            c.name: {str(f): list(map(float, half.kendall(c.name, f))) for f in BUDGETS}
            for c in study.cands
        },
        "record_candidates": _record_candidates(half, study, BINS),
        "recalibration": recalibration(half, study.cands, table.final, table.models, keep),
        "tables": _half_tables(study, half, [c.name for c in study.cands]),
        "failures": {f"{n}@{f}": r for (n, f), r in table.reasons.items()},
        "dropped_pairs": _dropped(study, table, keep),
        "noise_ceiling": _noise_ceiling(study, table, keep),
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------------------------------
# report stage


def check_selection(selection: Mapping[str, Any], data_sha: str) -> None:
    if selection.get("format") != FORMAT or selection.get("stage") != "selection":
        raise ConfigError(
            "the selection file is not a study selection (format ncap-study/1); run "
            "`ncap bench evaluate FILE --stage selection` first."
        )
    if selection["data_sha256"] != data_sha:
        raise ConfigError(
            f"the selection was made on other data (sha256 {selection['data_sha256'][:12]}…, "
            f"this file {data_sha[:12]}…); the report stage only runs on the data it was "
            "selected on. Rerun --stage selection and commit its selection.json first."
        )


def _delta_boot(half: HalfEval, a: str, b: str, fs: Sequence[float]) -> np.ndarray:
    return half.boot_mean(a, fs) - half.boot_mean(b, fs)


def _two_way(study: Study, half: HalfEval, a: str, b: str, fs: Sequence[float]) -> np.ndarray:
    """Δ replicates with targets resampled too (crossed with the same model draws)."""
    per_target = np.mean(
        [half.kendall_boot[a][f] - half.kendall_boot[b][f] for f in fs], axis=0
    )  # (targets, B)
    tc = study.target_counts
    return (tc * per_target.T).sum(axis=1) / tc.sum(axis=1)


def _test(study: Study, half: HalfEval, a: str, b: str, fs: Sequence[float]) -> dict[str, Any]:
    boot = _delta_boot(half, a, b, fs)
    point = half.mean_kendall(a, fs) - half.mean_kendall(b, fs)
    two = _two_way(study, half, a, b, fs)
    return {
        "a": a,
        "b": b,
        "delta": point,
        "ci95": _interval(boot),
        "p": _p_value(boot),
        "two_way_ci95": _interval(two),
        "passes": bool(_interval(boot)[0] > 0),
    }


def _coverage(
    study: Study, half: HalfEval, table: ScoreTable, keep, name: str, fs: Sequence[float],
    k: Mapping[str, Mapping[str, float]] | None,
) -> dict[str, Any] | None:  # fmt: skip
    """Coverage of the 68% and 95% intervals against the runs' own final accuracy."""
    out: dict[str, Any] = {}
    for q, z in Z.items():
        for label in ("raw", "recalibrated"):
            hits, weights, widths = [], [], []
            for f in fs:
                factor = 1.0 if label == "raw" else (k or {}).get(str(f), {}).get(q)
                if factor is None:
                    return None
                for t in table.targets:
                    sc = half.scores[(name, f, t)]
                    if sc.link_mean is None or sc.link_sd is None:
                        return None
                    truth = table.truth(t, half.seed)
                    ok = keep[t] & np.isfinite(sc.link_mean) & np.isfinite(sc.link_sd)
                    lo = sc.link_mean - factor * z * sc.link_sd
                    hi = sc.link_mean + factor * z * sc.link_sd
                    if sc.link == "logit":
                        y = logit(truth)
                        width = sigmoid(hi) - sigmoid(lo)
                    else:
                        y = truth
                        width = np.clip(hi, 0, 1) - np.clip(lo, 0, 1)
                    hit = ((y >= lo) & (y <= hi)).astype(float)
                    hits.append(np.where(ok, hit, 0.0))
                    weights.append(ok.astype(float))
                    widths.append(100 * width[ok])
            hit_m, w_m = np.array(hits), np.array(weights)  # (cells, models)
            point = float(hit_m.sum() / w_m.sum())
            boot = (study.counts @ hit_m.T).sum(axis=1) / (study.counts @ w_m.T).sum(axis=1)
            out[f"{q}/{label}"] = {
                "coverage": point,
                "ci95": _interval(boot),
                "median_width_points": float(np.median(np.concatenate(widths))),
                "passes": bool(_interval(boot)[0] <= int(q) / 100 <= _interval(boot)[1]),
            }
    return out


def report_stage(
    results: dict[str, Any],
    selection: Mapping[str, Any],
    *,
    data_sha: str,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate the report half once with the choices frozen in ``selection``."""
    check_selection(selection, data_sha)
    start = time.perf_counter()
    study = Study(results, replicates=int(selection["replicates"]))
    s0, s1 = study.seeds
    sigma = selection["sigma"]
    winners = selection["winners"]
    table = study.table(s1, workers, progress)
    keep = study.keep(table)
    headline = study.headline(winners)
    half = evaluate_half(
        table, study.cands, seed=s1, truth_seed=s0, sigma=sigma, keep=keep, counts=study.counts,
        boot_all=headline,
    )  # fmt: skip
    lo = "last-observed"
    tests: dict[str, Any] = {}
    for b, fs in BINS.items():
        w_nc = winners[b]["W_nc"]
        tests[f"T1/{b}"] = _test(study, half, w_nc, study.by_name[w_nc].control, fs)
    h_meas = study.measurements[0]
    for b, fs in BINS.items():
        tests[f"H1/{b}"] = _test(
            study, half, f"ravg/lo+params+dyn/{h_meas}/abs-mean", "ravg/lo+params", fs
        )
        tests[f"H2/{b}"] = _test(study, half, f"fit/dyn/{h_meas}/abs-mean", "fit/base", fs)
    family_tests = ["T1/early", "T1/late", "H1/early", "H2/early"]
    holm = _holm({k: tests[k]["p"] for k in family_tests})
    for k in family_tests:
        tests[k]["holm_passes"] = holm[k]
    # the adopted default per bin (section 2.5)
    defaults = {}
    for b, fs in BINS.items():
        w = winners[b]
        nc_wins = study.by_name[w["W_all"]].nc and tests[f"T1/{b}"]["passes"]
        chosen = w["W_nc"] if nc_wins else w["W_non"]
        vs_lo = _delta_boot(half, chosen, lo, fs) if chosen != lo else np.zeros(1)
        safety = chosen != lo and _interval(vs_lo)[1] < 0
        defaults[b] = {
            "score": lo if safety else chosen,
            "nc_helped": bool(nc_wins),
            "safety_net": bool(safety),
        }
    comparisons = {}
    for b, fs in list(BINS.items()) + [(str(f), (f,)) for f in BUDGETS]:
        bin_name = b if b in BINS else ("early" if float(b) < EARLY_LATE_BOUNDARY else "late")
        w = winners[bin_name]
        comparisons[b] = {
            "W_all_minus_lo": _test(study, half, w["W_all"], lo, fs) if w["W_all"] != lo else None,
            "W_nc_minus_W_non": _test(study, half, w["W_nc"], w["W_non"], fs),
            "default_minus_lo": (
                _test(study, half, defaults[bin_name]["score"], lo, fs)
                if defaults[bin_name]["score"] != lo
                else None
            ),
        }
    # calibration
    record = {}
    calibration = {}
    for b, fs in BINS.items():
        default = study.by_name[defaults[b]["score"]]
        has_sd = default.has_sd
        record[b] = default.name if has_sd else selection["record_candidates"][b]
        names = {record[b], "fit/base"} | {paper_form(m) for m in study.measurements}
        names |= {current_default(m) for m in study.measurements}
        names |= {c.name for c in study.cands if c.kind == "fit" and c.nc}
        for name in sorted(names):
            cov = _coverage(study, half, table, keep, name, fs,
                            selection["recalibration"].get(name))  # fmt: skip
            if cov is not None:
                calibration.setdefault(name, {})[b] = cov
    # sensitivity: D2 leave one target and family out
    d2 = [c for c in study.cands if c.kind == "fit"]
    lofo = evaluate_half(
        table, d2, seed=s1, truth_seed=s0, sigma=sigma, keep=keep, counts=study.counts[:1],
        families=study.families, exclude_family=True,
    )  # fmt: skip
    sensitivity = {
        c.name: {b: {"loto": half.mean_kendall(c.name, fs), "lotfo": lofo.mean_kendall(c.name, fs)}
                 for b, fs in BINS.items()}
        for c in d2
    }  # fmt: skip
    # family bests (best member on the selection half, per bin)
    fam_best = {}
    for b, fs in BINS.items():
        for fam in sorted({c.family for c in study.cands}):
            members = [c.name for c in study.cands if c.family == fam]
            best = max(members, key=lambda n: (selection["S"][b][n], n))
            fam_best.setdefault(fam, {})[b] = {
                "best": best,
                "S_selection": selection["S"][b][best],
                "report_kendall": half.mean_kendall(best, fs),
                "report_minus_lo": _test(study, half, best, lo, fs) if best != lo else None,
                "n_failed": int(
                    sum(half.point[best][f][t]["n_failed"] for f in fs for t in half.targets)
                ),  # fmt: skip
            }
    # interval vs fixed (matched pairs)
    matched = {}
    if "fixed" in study.measurements:
        for label, make in (("paper form", paper_form), ("current default", current_default),
                            ("dyn abs-mean slope", lambda m: f"dyn/{m}/abs-mean/slope")):  # fmt: skip
            matched[label] = {
                b: _test(study, half, make("fixed"), make("interval"), fs) for b, fs in BINS.items()
            }
    # leave-one-target-out selection
    loto = _loto_selection(study, selection, half)
    return {
        "format": FORMAT,
        "stage": "report",
        "protocol": "docs/benchmark-v2-protocol.md",
        "data_sha256": data_sha,
        "seeds": {"scored": s1, "truth": s0},
        "winners": winners,
        "defaults": defaults,
        "tests": tests,
        "comparisons": comparisons,
        "record_predictor": record,
        "calibration": calibration,
        "d2_sensitivity": sensitivity,
        "family_best": fam_best,
        "fixed_minus_interval": matched,
        "loto_selection": loto,
        "headline": headline,
        "tables": _half_tables(study, half, [c.name for c in study.cands]),
        "failures": {f"{n}@{f}": r for (n, f), r in table.reasons.items()},
        "dropped_pairs": _dropped(study, table, keep),
        "noise_ceiling": _noise_ceiling(study, table, keep),
        "seconds": time.perf_counter() - start,
    }


def _loto_selection(study: Study, selection: Mapping[str, Any], half: HalfEval) -> dict[str, Any]:
    by_target = selection["kendall_by_target"]
    targets = half.targets
    out = {}
    for b, fs in BINS.items():
        picks, picks_nc = {}, {}
        for i, t in enumerate(targets):
            s = {n: float(np.mean([np.mean([v[j] for j in range(len(targets)) if j != i])
                                   for v in (by_target[n][str(f)] for f in fs)]))
                 for n in by_target}  # fmt: skip
            nc_pool = [c for c in study.cands if c.nc]
            non_pool = [c for c in study.cands if not c.nc]
            w_nc, w_non = choose(nc_pool, s), choose(non_pool, s)
            picks[t] = w_nc if s[w_nc] >= s[w_non] + DELTA else w_non
            picks_nc[t] = w_nc

        full = selection["winners"][b]["W_all"]
        out[b] = {
            "winners": picks,
            "distinct": len(set(picks.values())),
            "equals_full": int(sum(p == full for p in picks.values())),
            "kendall": _on_own(half, picks, fs),
            "minus_lo": _on_own(half, picks, fs, lambda n: "last-observed"),
            "nc_winners": picks_nc,
            "nc_minus_control": _on_own(half, picks_nc, fs, lambda n: study.by_name[n].control),
        }
    return out


def _on_own(
    half: HalfEval,
    picks: Mapping[str, str],
    fs: Sequence[float],
    minus: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Mean Kendall (minus another score's) of each target's own pick, with its interval."""
    idx = {t: i for i, t in enumerate(half.targets)}
    point, boot = [], []
    for t in half.targets:
        for f in fs:
            a = half.point[picks[t]][f][t]["kendall"]
            ab = half.kendall_boot[picks[t]][f][idx[t]]
            if minus is not None:
                a = a - half.point[minus(picks[t])][f][t]["kendall"]
                ab = ab - half.kendall_boot[minus(picks[t])][f][idx[t]]
            point.append(a)
            boot.append(ab)
    return _summary(float(np.mean(point)), np.mean(boot, axis=0))


def load_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}).") from None
