"""Metrics of every candidate on one half of a benchmark, with the shared model bootstrap.

A half is the set of cells ``(target, scored seed s)`` with the truth of the other seed
(docs/benchmark-v2-protocol.md, sections 0, 3 and 4). Kendall tau-b, the primary metric, gets a
bootstrap distribution for every candidate; the other metrics for the candidates asked for.
Kendall conventions: a cell where every run failed counts -1; constant scores count 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ncap.bench.study.bootstrap import (
    fill_failures,
    kendall_boot,
    mae_boot,
    spearman_boot,
    top1_regret_boot,
    top3_regret_boot,
)
from ncap.bench.study.candidates import Candidate
from ncap.bench.study.combine import CellScores, CrossFit, cell_scores
from ncap.bench.study.table import ScoreTable
from ncap.metrics import ranking_metrics

__all__ = ["HalfEval", "OTHER_METRICS", "evaluate_half", "keep_masks"]

OTHER_METRICS = ("spearman", "top1_regret", "top3_regret", "mae")
_BOOT = {
    "spearman": spearman_boot,
    "top1_regret": top1_regret_boot,
    "top3_regret": top3_regret_boot,
}


def keep_masks(table: ScoreTable, seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """Per target, the models whose runs exist for every seed with a finite final accuracy."""
    out = {}
    for t in table.targets:
        out[t] = np.array(
            [
                all(np.isfinite(table.final.get((t, m, s), np.nan)) for s in seeds)
                for m in table.models
            ]
        )
    return out


@dataclass
class HalfEval:
    """One half: ``point[name][f][t]`` the metrics of each cell (``ranking_metrics`` fields, Kendall
    with the conventions above), ``kendall_boot[name][f]`` a ``(targets, B)`` array, and
    ``boot[name][f][metric]`` ``(targets, B)`` arrays for the candidates given ``boot_all``."""

    seed: int
    truth_seed: int
    targets: list[str]
    budgets: list[float]
    point: dict[str, dict[float, dict[str, dict]]] = field(default_factory=dict)
    kendall_boot: dict[str, dict[float, np.ndarray]] = field(default_factory=dict)
    boot: dict[str, dict[float, dict[str, np.ndarray]]] = field(default_factory=dict)
    scores: dict[tuple[str, float, str], CellScores] = field(default_factory=dict)

    def kendall(self, name: str, f: float) -> np.ndarray:
        """Per-target point Kendall at budget ``f``."""
        return np.array([self.point[name][f][t]["kendall"] for t in self.targets])

    def mean_kendall(self, name: str, budgets: Sequence[float]) -> float:
        return float(np.mean([self.kendall(name, f).mean() for f in budgets]))

    def boot_mean(self, name: str, budgets: Sequence[float], metric: str = "kendall") -> np.ndarray:
        """Bootstrap replicates of the metric's mean over targets and ``budgets``."""
        if metric == "kendall":
            return np.mean([self.kendall_boot[name][f].mean(axis=0) for f in budgets], axis=0)
        with warnings.catch_warnings():  # a replicate where every target lacks the metric: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            per_budget = [np.nanmean(self.boot[name][f][metric], axis=0) for f in budgets]
        return np.mean(per_budget, axis=0)

    def mean_metric(self, name: str, budgets: Sequence[float], metric: str) -> float | None:
        vals = [self.point[name][f][t][metric] for f in budgets for t in self.targets]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None


def _kendall_point(scores: np.ndarray, metrics: Mapping) -> float:
    if not np.isfinite(scores).any():
        return -1.0
    return 0.0 if metrics["kendall"] is None else float(metrics["kendall"])


def evaluate_half(
    table: ScoreTable,
    cands: Sequence[Candidate],
    *,
    seed: int,
    truth_seed: int,
    sigma: Mapping[str, float],
    keep: Mapping[str, np.ndarray],
    counts: np.ndarray,
    boot_all: Sequence[str] = (),
    families: Sequence[str] | None = None,
    exclude_family: bool = False,
    crossfit: CrossFit | None = None,
) -> HalfEval:
    """Score every candidate on the cells of ``seed`` against the truth of ``truth_seed``."""
    half = HalfEval(seed, truth_seed, list(table.targets), list(table.budgets))
    for c in cands:
        half.point[c.name], half.kendall_boot[c.name] = {}, {}
        if c.name in boot_all:
            half.boot[c.name] = {}
        for f in table.budgets:
            half.point[c.name][f] = {}
            kb = np.empty((len(table.targets), counts.shape[0]))
            other = {m: np.empty_like(kb) for m in OTHER_METRICS}
            for i, t in enumerate(table.targets):
                rows = keep[t]
                truth = table.truth(t, truth_seed)[rows]
                if exclude_family and c.kind == "fit":
                    sc = _leave_family_out(c, table, f, t, seed, sigma, keep, families)
                else:
                    sc = cell_scores(
                        c, table, f, t, seed, sigma=sigma, keep=keep, crossfit=crossfit
                    )
                half.scores[(c.name, f, t)] = sc
                x = sc.value[rows]
                pred = sc.predicted[rows] if sc.predicted is not None else None
                metrics = ranking_metrics(
                    [v if np.isfinite(v) else None for v in x],
                    truth,
                    predicts_accuracy=pred is not None,
                )
                metrics["kendall"] = _kendall_point(x, metrics)
                half.point[c.name][f][t] = metrics
                w = counts[:, rows]
                if np.isfinite(x).any():
                    filled = fill_failures(x)
                    kb[i] = np.nan_to_num(kendall_boot(filled, truth, w), nan=0.0)
                else:
                    kb[i] = -1.0
                if c.name in boot_all:
                    filled = fill_failures(x)
                    for m, fn in _BOOT.items():
                        other[m][i] = fn(filled, truth, w)
                    other["mae"][i] = mae_boot(pred, truth, w) if pred is not None else np.nan
            half.kendall_boot[c.name][f] = kb
            if c.name in boot_all:
                half.boot[c.name][f] = other
    return half


def _leave_family_out(c, table, f, t, seed, sigma, keep, families) -> CellScores:
    """D2 scores of target ``t`` where each family is scored by a model trained without it."""
    fam = np.asarray(families)
    value = np.full(len(table.models), np.nan)
    predicted = value.copy()
    for g in sorted(set(families)):
        sc = cell_scores(
            c, table, f, t, seed, sigma=sigma, keep=keep, families=families, exclude_family=g
        )
        value[fam == g] = sc.value[fam == g]
        predicted[fam == g] = sc.predicted[fam == g]
    return CellScores(value, predicted, "logit")
