"""Cell-level scores: rank averages (D1) and the model fitted across targets (D2), plus the
assembly of any candidate's scores for one cell (target, scored seed, budget).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from ncap.bench.study.candidates import Candidate
from ncap.bench.study.table import ScoreTable, logit
from ncap.predict.features import sigmoid
from ncap.predict.fitted import FittedGain
from ncap.predict.scores import DynamicsFeature, try_parse_score

__all__ = ["CellScores", "CrossFit", "cell_scores", "fit_gain_model", "rank_average"]


@dataclass
class CellScores:
    """A candidate's scores in one cell, in the order of the table's models (NaN = failed)."""

    value: np.ndarray
    predicted: np.ndarray | None = None
    link: str | None = None
    link_mean: np.ndarray | None = None
    link_sd: np.ndarray | None = None


@dataclass(frozen=True)
class CrossFit:
    """Which rows may train a fitted score (docs/benchmark-v3-protocol.md, section 1).

    The prediction for run (t, m) comes from a model trained only on the runs (t', m') with
    ``target_family[t'] != target_family[t]`` and, for every position j of ``model_keys``,
    ``model_keys[m'][j] != model_keys[m][j]`` (e.g. ``(architecture family,)`` for the primary
    cross-fitting, ``(architecture family, source task)`` for the strictest). ``model_keys``
    follows the table's model order. One model is fitted per (candidate, budget, seed, dataset
    family, model key); the fits are cached here.
    """

    target_family: Mapping[str, str]
    model_keys: tuple[tuple[str, ...], ...]
    name: str = "strict"
    _fits: dict = field(default_factory=dict, compare=False, repr=False)

    def train_models(self, key: tuple[str, ...]) -> np.ndarray:
        """The models that may train the score of the models whose key is ``key``."""
        return np.array([all(a != b for a, b in zip(k, key)) for k in self.model_keys])


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
        truth = table.truth(other, truth_seed)[rows]
        xs.append(x)
        ys.append(logit(truth) - lo)
    x_test = _design(table, cand.features, f, t, s)
    gain, sd = fit_gain_model(np.vstack(xs), np.concatenate(ys), x_test)
    link_mean = table.feature[("lo", f, t, s)] + gain
    pred = sigmoid(link_mean)
    return CellScores(pred, pred, "logit", link_mean, sd)


def _cross_fitted(
    cand: Candidate,
    table: ScoreTable,
    f: float,
    t: str,
    s: int,
    keep: Mapping[str, np.ndarray],
    crossfit: CrossFit,
) -> CellScores:
    truth_seed = _other_seed(table, s)
    family = crossfit.target_family[t]
    x_test = _design(table, cand.features, f, t, s)
    lo = table.feature[("lo", f, t, s)]
    gain, sd = np.full(len(table.models), np.nan), np.full(len(table.models), np.nan)
    keys = crossfit.model_keys
    for key in sorted(set(keys)):
        scored = np.array([k == key for k in keys])
        cache_key = (cand.name, f, s, family, key)
        if cache_key not in crossfit._fits:
            allowed = crossfit.train_models(key)
            xs, ys = [], []
            for other in table.targets:
                if crossfit.target_family[other] == family:
                    continue
                rows = keep[other] & allowed
                truth = table.truth(other, truth_seed)
                xs.append(_design(table, cand.features, f, other, s)[rows])
                ys.append(logit(truth[rows]) - table.feature[("lo", f, other, s)][rows])
            x, y = np.vstack(xs), np.concatenate(ys)
            names = [str(i) for i in range(x.shape[1])]
            usable = np.isfinite(x).all(axis=1) & np.isfinite(y)
            crossfit._fits[cache_key] = (
                FittedGain.fit(x, y, names) if usable.sum() > x.shape[1] + 1 else None
            )
        model = crossfit._fits[cache_key]
        if model is None:  # too few training rows: the score fails for these models
            continue
        cols = [int(i) for i in model.features]
        g, d = model.predict(x_test[scored][:, cols])
        failed = ~np.isfinite(x_test[scored]).all(axis=1)
        g[failed], d[failed] = np.nan, np.nan
        gain[scored], sd[scored] = g, d
    link_mean = lo + gain
    pred = sigmoid(link_mean)
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
    crossfit: CrossFit | None = None,
) -> CellScores:
    """A candidate's scores for the runs of seed ``s`` on target ``t`` at budget ``f``.

    ``sigma`` orients the dynamics scores (frozen on the selection half); ``keep[t]`` marks the
    models with complete data (the fitted models train only on those). ``families`` and
    ``exclude_family`` give the leave-one-family-out fit (a sensitivity check); ``crossfit``
    the new-family cross-fitting of bench-v3's protocol (else: leave the target out).
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
    if crossfit is not None:
        return _cross_fitted(cand, table, f, t, s, keep, crossfit)
    return _fitted(cand, table, f, t, s, keep, families, exclude_family)
