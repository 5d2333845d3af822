"""Cell-level scores: rank averages (D1) and the model fitted across targets (D2), plus the
assembly of any candidate's scores for one cell (target, scored seed, budget).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from ncap.bench.study.candidates import Candidate
from ncap.bench.study.table import ScoreTable, logit
from ncap.predict.scores import DynamicsFeature, try_parse_score

__all__ = ["CellScores", "cell_scores", "fit_gain_model", "rank_average"]


@dataclass
class CellScores:
    """A candidate's scores in one cell, in the order of the table's models (NaN = failed)."""

    value: np.ndarray
    predicted: np.ndarray | None = None
    link: str | None = None
    link_mean: np.ndarray | None = None
    link_sd: np.ndarray | None = None


def rank_average(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of the components' normalised ranks ``(rank - 1) / (n - 1)`` (ties averaged, failures
    ranked below every scored candidate)."""
    n = len(columns[0])
    ranks = []
    for col in columns:
        filled = np.where(np.isfinite(col), col, -np.inf)
        ranks.append((rankdata(filled, method="average") - 1.0) / max(n - 1, 1))
    return np.mean(ranks, axis=0)


def _design(table: ScoreTable, features: Sequence[str], f: float, t: str, s: int) -> np.ndarray:
    cols = []
    for name in features:
        dynamics = isinstance(try_parse_score(name), DynamicsFeature)
        source = table.value if dynamics else table.feature
        cols.append(source.get((name, f, t, s), np.full(len(table.models), np.nan)))
    return np.column_stack(cols)


def fit_gain_model(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """BayesianRidge (sklearn defaults) on z-scored features (training rows' mean and sd; constant
    features dropped); returns the test rows' predictive mean and sd. Rows with a non-finite
    feature are dropped from training and get NaN (:class:`ncap.predict.fitted.FittedGain`)."""
    from ncap.predict.fitted import FittedGain

    names = [str(i) for i in range(x_train.shape[1])]
    model = FittedGain.fit(x_train, y_train, names)
    keep = [names.index(f) for f in model.features]
    mean, sd = model.predict(x_test[:, keep])
    failed = ~np.isfinite(x_test).all(axis=1)  # a non-finite feature fails the run, kept or not
    mean[failed], sd[failed] = np.nan, np.nan
    return mean, sd


def _fitted(
    cand: Candidate,
    table: ScoreTable,
    f: float,
    t: str,
    s: int,
    keep: Mapping[str, np.ndarray],
    families: Sequence[str] | None,
    exclude_family: str | None,
) -> CellScores:
    xs, ys = [], []
    truth_seed = _other_seed(table, s)
    fam = np.asarray(families) if families is not None else None
    for other in table.targets:
        if other == t:
            continue
        rows = keep[other].copy()
        if exclude_family is not None and fam is not None:
            rows &= fam != exclude_family
        x = _design(table, cand.features, f, other, s)[rows]
        lo = table.feature[("lo", f, other, s)][rows]
        truth = np.array([table.final[(other, m, truth_seed)] for m in table.models])[rows]
        xs.append(x)
        ys.append(logit(truth) - lo)
    x_test = _design(table, cand.features, f, t, s)
    gain, sd = fit_gain_model(np.vstack(xs), np.concatenate(ys), x_test)
    link_mean = table.feature[("lo", f, t, s)] + gain
    pred = 1.0 / (1.0 + np.exp(-link_mean))
    return CellScores(pred, pred, "logit", link_mean, sd)


def _other_seed(table: ScoreTable, s: int) -> int:
    seeds = sorted({k[2] for k in table.final})
    return [x for x in seeds if x != s][0]


def cell_scores(
    cand: Candidate,
    table: ScoreTable,
    f: float,
    t: str,
    s: int,
    *,
    sigma: Mapping[str, float],
    keep: Mapping[str, np.ndarray],
    families: Sequence[str] | None = None,
    exclude_family: str | None = None,
) -> CellScores:
    """A candidate's scores for the runs of seed ``s`` on target ``t`` at budget ``f``.

    ``sigma`` orients the dynamics scores (frozen on the selection half); ``keep[t]`` marks the
    models with complete data (the fitted models train only on those). ``families`` and
    ``exclude_family`` give the leave-one-family-out fit (a sensitivity check).
    """
    if cand.kind == "run":
        key = (cand.name, f, t, s)
        value = table.value[key] * sigma.get(cand.name, 1.0)
        if not cand.predicts_accuracy:
            return CellScores(value)
        sd = table.link_sd[key]
        return CellScores(
            value,
            table.predicted[key],
            cand.run_score.link,
            table.link_mean[key] if np.isfinite(sd).any() else None,
            sd if np.isfinite(sd).any() else None,
        )
    if cand.kind == "ravg":
        rows = keep[t]
        cols = [table.value[(c, f, t, s)][rows] * sigma.get(c, 1.0) for c in cand.components]
        value = np.full(len(table.models), np.nan)
        value[rows] = rank_average(cols)
        return CellScores(value)
    return _fitted(cand, table, f, t, s, keep, families, exclude_family)
