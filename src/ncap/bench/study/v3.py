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

from ncap.bench.stats import holm, percentile_interval
from ncap.bench.study.bootstrap import kendall_boot
from ncap.bench.study.candidates import Candidate, paper_form
from ncap.bench.study.halves import HalfEval, evaluate_half
from ncap.bench.study.selection import BINS, DELTA, choose, recalibration, sigma_of
from ncap.bench.study.table import ScoreTable
from ncap.bench.study.v3_base import (
    BUDGETS,
    FORMAT_V3,
    LO,
    PROTOCOL_V3,
    Q1_BUDGETS,
    REPLICATES,
    StudyV3,
    budget_key,
    is_v3,
    kendall_summary,
)
from ncap.bench.study.v3_breakdowns import (
    coverage,
    family_cluster,
    q3_imagenet,
    top1_regret,
    within_families,
)
from ncap.exceptions import ConfigError

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
        out[budget_key(f)] = {"W_nc": w_nc, "W_non": w_non, "W_all": w_all}
        out[budget_key(f)] |= {f"S_{k}": s[v] for k, v in list(out[budget_key(f)].items())}
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
            budget_key(f): kendall_summary(study, half, c.name, (f,))
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
            budget_key(f): {c.name: half.mean_kendall(c.name, (f,)) for c in study.cands}
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
        tests[f"Q1/{f}"] = test(winners[budget_key(f)]["W_all"], LO, (f,), cluster=True)
    for b, fs in BINS.items():
        q = selection["q2_winners"][b]
        tests[f"Q2/{b}"] = test(q["winner"], q["control"], fs, cluster=True)
    holm_passes = holm({k: v["p"] for k, v in tests.items()})
    for k in tests:
        tests[k]["holm_passes"] = holm_passes[k]
    # the default per budget (section 3.5)
    defaults = {}
    for f in BUDGETS:
        w = winners[budget_key(f)]["W_all"]
        vs_lo = test(w, LO, (f,)) if w != LO else None
        beats = vs_lo is not None and vs_lo["ci95"][0] > 0
        defaults[budget_key(f)] = {
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
    groups = {budget_key(f): (f,) for f in BUDGETS} | dict(BINS)
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
                entry["top1_regret"] = top1_regret(study, half, table, keep, name, fs[0])
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
                budget_key(f): {
                    "kendall": kendall_summary(study, half, name, (f,), targets=mask),
                    "minus_lo": kendall_summary(study, half, name, (f,), minus=LO, targets=mask),
                }
                for f in BUDGETS
            }
            for name in headline
        }
    by_arch_family = within_families(study, half, table, keep, headline)
    # each family of scores: its best member on the selection half (per budget)
    family_best = {}
    for fam in sorted({c.family for c in study.cands}):
        members = [c.name for c in study.cands if c.family == fam]
        for f in BUDGETS:
            s = selection["S"][budget_key(f)]
            best = max(members, key=lambda n: (s[n], n))
            family_best.setdefault(fam, {})[budget_key(f)] = {
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
                budget_key(f): {
                    "kendall": kendall_summary(study, other, c.name, (f,)),
                    "minus_lo": kendall_summary(study, other, c.name, (f,), minus=LO),
                }
                for f in BUDGETS
            }
            for c in fitted
        }
    # calibration: coverage of every fitted score and of the defaults (section 5)
    coverages: dict[str, Any] = {}
    names = {c.name for c in study.cands if c.kind == "fit"}
    names |= {d["score"] for d in defaults.values() if study.by_name[d["score"]].has_sd}
    for name in sorted(names):
        for f in BUDGETS:
            cov = coverage(study, half, table, keep, name, f, selection["recalibration"].get(name))
            if cov is not None:
                coverages.setdefault(name, {})[budget_key(f)] = cov
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
        "q3_imagenet": q3_imagenet(study, half, table, keep, headline),
        "coverage": coverages,
        "candidates_by_budget": _candidate_rows(study, half),
        "failures": {f"{n}@{f}": r for (n, f), r in table.reasons.items()},
        "dropped_pairs": {
            t: [m for m, k in zip(table.models, keep[t]) if not k] for t in table.targets
        },
        "noise_ceiling": _noise_ceiling(study, table, keep),
        "seconds": time.perf_counter() - start,
    }
