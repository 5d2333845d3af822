"""Ranking metrics for many bootstrap resamples at once.

A resample of ``n`` models is a count vector ``w`` (how often each model was drawn); the resampled
list is ``np.repeat(arange(n), w)``. Every metric here equals
:func:`ncap.metrics.ranking_metrics` on that expanded list (scores with failures filled below
every scored model), computed for a whole ``(B, n)`` count matrix without expanding it:

- **Kendall tau-b** from weighted pair counts: with ``S = sign(x_i - x_j)`` and
  ``U = sign(y_i - y_j)``, ``C - D = w' (S * U) w / 2``, the pairs tied in x are
  ``(w' [S == 0] w - sum w) / 2`` (copies of one model are tied with each other) and
  ``tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2))`` with ``n0 = N (N - 1) / 2``.
- **Spearman** from weighted average ranks: ``rank_i = sum_{x_j < x_i} w_j + (sum_{x_j = x_i} w_j
  + 1) / 2``, then the weighted Pearson correlation of the ranks.
- **top-1 regret**: the truth's maximum over drawn models minus the mean truth of the drawn
  models with the best score (ties averaged by their counts).
- **top-3 regret**: the three first entries of the expanded list sorted by score (stable in model
  order) and the best truth among them.
- **MAE** of predicted accuracies over the drawn scored models, weighted by counts.

The tests check each against ``ranking_metrics`` on expanded resamples.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "draw_counts",
    "fill_failures",
    "kendall_boot",
    "mae_boot",
    "spearman_boot",
    "top1_regret_boot",
    "top3_regret_boot",
]


def draw_counts(n_models: int, replicates: int, seed: int) -> np.ndarray:
    """The shared model draws: ``(B, n)`` counts from ``default_rng(seed).integers`` indices."""
    idx = np.random.default_rng(seed).integers(0, n_models, size=(replicates, n_models))
    counts = np.zeros((replicates, n_models), dtype=np.float64)
    np.add.at(counts, (np.arange(replicates)[:, None], idx), 1.0)
    return counts


def fill_failures(scores: np.ndarray) -> np.ndarray:
    """Failed scores (NaN/inf) set below every scored one, as ``ranking_metrics`` does."""
    scores = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(scores)
    floor = (scores[ok].min() if ok.any() else 0.0) - 1.0
    return np.where(ok, scores, floor)


def kendall_boot(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Kendall tau-b of filled scores ``x`` and truth ``y`` for each count row of ``w``."""
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    w = np.atleast_2d(w)
    total = w.sum(axis=1)
    n0 = total * (total - 1.0) / 2.0
    concord = 0.5 * _quad(w, sx * sy)
    n1 = 0.5 * (_quad(w, (sx == 0).astype(float)) - total)
    n2 = 0.5 * (_quad(w, (sy == 0).astype(float)) - total)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = concord / np.sqrt((n0 - n1) * (n0 - n2))
    return np.where(np.isfinite(tau), tau, np.nan)


def _quad(w: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``w_b' M w_b`` for every row ``b`` of ``w``."""
    return ((w @ m) * w).sum(axis=1)


def _weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    below = (x[None, :] < x[:, None]).astype(float)  # [i, j]: x_j < x_i
    tied = (x[None, :] == x[:, None]).astype(float)
    return w @ below.T + (w @ tied.T + 1.0) / 2.0


def spearman_boot(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = np.atleast_2d(w)
    rx, ry = _weighted_ranks(x, w), _weighted_ranks(y, w)
    total = w.sum(axis=1, keepdims=True)
    mx = (w * rx).sum(axis=1, keepdims=True) / total
    my = (w * ry).sum(axis=1, keepdims=True) / total
    cov = (w * (rx - mx) * (ry - my)).sum(axis=1)
    vx = (w * (rx - mx) ** 2).sum(axis=1)
    vy = (w * (ry - my) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = cov / np.sqrt(vx * vy)
    return np.where(np.isfinite(rho), rho, np.nan)


def top1_regret_boot(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = np.atleast_2d(w)
    drawn = w > 0
    best_truth = np.where(drawn, y[None, :], -np.inf).max(axis=1)
    xs = np.where(drawn, x[None, :], -np.inf)
    is_best = drawn & (xs == xs.max(axis=1, keepdims=True))
    picked = (w * is_best * y[None, :]).sum(axis=1) / (w * is_best).sum(axis=1)
    return 100.0 * (best_truth - picked)


def top3_regret_boot(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = np.atleast_2d(w)
    order = np.argsort(-x, kind="stable")  # expanded list sorted by score, stable in model order
    cum = np.cumsum(w[:, order], axis=1)
    before = cum - w[:, order]
    in_top3 = (before < 3) & (w[:, order] > 0)
    best_truth = np.where(w > 0, y[None, :], -np.inf).max(axis=1)
    top_truth = np.where(in_top3, y[order][None, :], -np.inf).max(axis=1)
    return 100.0 * (best_truth - top_truth)


def mae_boot(pred: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean |pred - truth| in points over drawn models with a finite prediction."""
    w = np.atleast_2d(w)
    ok = np.isfinite(pred)
    err = np.where(ok, np.abs(np.where(ok, pred, 0.0) - y), 0.0)
    ww = w * ok[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * (ww * err[None, :]).sum(axis=1) / ww.sum(axis=1)
