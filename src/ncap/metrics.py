"""Ranking-quality metrics between a method's scores and the true final accuracies."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

from ncap.exceptions import ConfigError

__all__ = ["RANK_METRICS", "ranking_metrics"]

RANK_METRICS = (
    "kendall",
    "weighted_tau",
    "spearman",
    "pearson",
    "top1_regret",
    "top3_regret",
    "mae",
)


def ranking_metrics(
    scores: Sequence[float | None],
    truth: Sequence[float],
    *,
    predicts_accuracy: bool = False,
) -> dict[str, float | int | None]:
    """Agreement of ``scores`` (higher = better) with ``truth`` (final accuracies in [0, 1]).

    A ``None`` score (the method could not score that model) ranks below every scored model, so all
    methods are compared on the same set of models; ``n_failed`` counts them. Pearson and the mean
    absolute error use the scored models only.

    Returns
    -------
    dict
        ``kendall`` (tau-b), ``weighted_tau`` (scipy's hyperbolic weighting, top-heavy),
        ``spearman``, ``pearson``, ``top1_regret`` (accuracy points lost by taking the
        best-scored model instead of the truly best one), ``top3_regret`` (the same when the
        method's three favourites are all fine-tuned and the best kept), ``mae`` (mean |score - truth| in accuracy
        points, only when ``predicts_accuracy``), ``n_models``, ``n_failed``.
    """
    truth = np.asarray(truth, dtype=np.float64)
    if len(scores) != truth.size:
        raise ConfigError(f"got {len(scores)} scores for {truth.size} models.")
    scored = np.array([s is not None and np.isfinite(s) for s in scores])
    floor = min((s for s, ok in zip(scores, scored) if ok), default=0.0) - 1.0
    filled = np.array([s if ok else floor for s, ok in zip(scores, scored)], dtype=np.float64)
    out: dict[str, float | int | None] = {
        "n_models": int(truth.size),
        "n_failed": int((~scored).sum()),
    }
    if truth.size < 2 or not scored.any():
        return out | {k: None for k in RANK_METRICS}
    with warnings.catch_warnings():  # constant scores: the coefficients are undefined -> None
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        out["kendall"] = _finite(stats.kendalltau(filled, truth).statistic)
        out["weighted_tau"] = _finite(stats.weightedtau(filled, truth).statistic)
        out["spearman"] = _finite(stats.spearmanr(filled, truth).statistic)
        out["pearson"] = (
            _finite(stats.pearsonr(filled[scored], truth[scored]).statistic)
            if scored.sum() > 2
            else None
        )
    best = np.flatnonzero(filled == filled.max())
    out["top1_regret"] = float(100.0 * (truth.max() - truth[best].mean()))
    top3 = np.argsort(-filled, kind="stable")[:3]
    out["top3_regret"] = float(100.0 * (truth.max() - truth[top3].max()))
    out["mae"] = (
        float(100.0 * np.mean(np.abs(filled[scored] - truth[scored])))
        if predicts_accuracy
        else None
    )
    return out


def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
