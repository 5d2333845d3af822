"""bench-v3 study report's breakdowns (docs/benchmark-v3-protocol.md, sections 4-6): the
family-cluster bootstrap, Q3 (the ImageNet slice), the coverage of the fitted scores' intervals,
top-1 regret and Kendall within each architecture family. Each reads a scored half
(:class:`ncap.bench.study.halves.HalfEval`) and the shared draws of :class:`StudyV3`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ncap.bench.plans import IMAGENET_MODELS, IMAGENET_TWINS
from ncap.bench.stats import bootstrap_p_value, percentile_interval
from ncap.bench.study.bootstrap import fill_failures, kendall_boot, top1_regret_boot
from ncap.bench.study.halves import HalfEval
from ncap.bench.study.selection import Z
from ncap.bench.study.table import ScoreTable, logit
from ncap.bench.study.v3_base import (
    ARCH_FAMILY_SEED,
    BUDGETS,
    DATA_FAMILY_SEED,
    LO,
    MODEL_SEED,
    TARGET_SEED,
    StudyV3,
    budget_key,
    summary,
)
from ncap.predict.features import sigmoid

__all__ = ["coverage", "family_cluster", "q3_imagenet", "top1_regret", "within_families"]


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


def q3_imagenet(
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
            row[budget_key(f)] = {
                "pairs_ordered_right": summary(float(agree_m.mean()), share_boot),
                "kendall_within_8": summary(float(np.mean(kend)), k_boot),
                "by_target": dict(zip(targets, map(float, agree_m.mean(axis=1)))),
            }
        out["by_score"][name] = row
    return out


def coverage(
    study: StudyV3, half: HalfEval, table: ScoreTable, keep, name: str, f: float,
    k: Mapping[str, Any] | None,
) -> dict[str, Any] | None:  # fmt: skip
    """Coverage of the 68%/95% intervals (raw, recalibrated) against the run's own final
    accuracy, with two-way intervals, and the median width in points."""
    out: dict[str, Any] = {}
    for q, z in Z.items():
        for label in ("raw", "recalibrated"):
            factor = 1.0 if label == "raw" else (k or {}).get(budget_key(f), {}).get(q)
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


def top1_regret(study: StudyV3, half: HalfEval, table, keep, name: str, f: float) -> dict:
    per, boots = [], []
    for t in half.targets:
        rows = keep[t]
        truth = table.truth(t, half.truth_seed)[rows]
        x = fill_failures(half.scores[(name, f, t)].value[rows])
        per.append(float(top1_regret_boot(x, truth, np.ones((1, rows.sum())))[0]))
        boots.append(top1_regret_boot(x, truth, study.model_counts[:, rows]))
    return summary(float(np.mean(per)), study.two_way(np.array(boots)))


def within_families(
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
            entry[budget_key(f)] = {
                name: {
                    "kendall": float(v.mean()),
                    "minus_lo": summary(float((v - per[LO]).mean()), (v - per[LO])[draws].mean(1)),
                }
                for name, v in per.items()
            }
        out[fam] = entry
    return out
