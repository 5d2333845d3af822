"""A model fitted across candidates (the study's D2 scores), stored as plain numbers.

The study (docs/benchmark-v2-protocol.md, D2) fits a Bayesian ridge regression of the accuracy still
to come, ``logit(final) - logit(last observed)``, on z-scored early features. :class:`FittedGain`
holds everything its prediction needs (feature names, the scalers, and BayesianRidge's fitted
attributes) as JSON-ready numbers, so a shipped model needs no pickle. ``predict`` gives the same
mean and standard deviation as the scikit-learn model it came from (a test checks this).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["FittedGain"]


@dataclass(frozen=True)
class FittedGain:
    """Features, scalers and a fitted BayesianRidge's attributes; link space is the logit."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    sigma: tuple[tuple[float, ...], ...]
    alpha: float
    x_offset: tuple[float, ...]
    x_scale: tuple[float, ...]
    n_rows: int

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, features: Sequence[str]) -> FittedGain:
        """Fit on the rows with finite values; constant features are dropped."""
        from sklearn.linear_model import BayesianRidge  # lazy: scikit-learn, only to fit

        ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
        x, y = x[ok], y[ok]
        mean, sd = x.mean(axis=0), x.std(axis=0)
        keep = sd > 0
        model = BayesianRidge().fit((x[:, keep] - mean[keep]) / sd[keep], y)
        return cls(
            features=tuple(f for f, k in zip(features, keep) if k),
            mean=tuple(map(float, mean[keep])),
            scale=tuple(map(float, sd[keep])),
            coef=tuple(map(float, model.coef_)),
            intercept=float(model.intercept_),
            sigma=tuple(tuple(map(float, row)) for row in model.sigma_),
            alpha=float(model.alpha_),
            x_offset=tuple(map(float, model.X_offset_)),
            x_scale=tuple(map(float, np.broadcast_to(model.X_scale_, model.coef_.shape))),
            n_rows=int(ok.sum()),
        )

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and sd (of the gain, in logit space) for rows of the named features;
        a row with a non-finite feature gets NaN."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        out_mean = np.full(len(x), np.nan)
        out_sd = np.full(len(x), np.nan)
        rows = np.isfinite(x).all(axis=1)
        if rows.any():
            # elementwise products and sums, not BLAS: a row's prediction does not depend on the
            # other rows or on memory layout, to the last bit (a resumed ranking equals the first)
            z = (x[rows] - np.asarray(self.mean)) / np.asarray(self.scale)
            out_mean[rows] = (z * np.asarray(self.coef)).sum(axis=1) + self.intercept
            centred = (z - np.asarray(self.x_offset)) / np.asarray(self.x_scale)
            quad = centred[:, :, None] * np.asarray(self.sigma)[None] * centred[:, None, :]
            var = quad.sum(axis=(1, 2)) + 1.0 / self.alpha
            out_sd[rows] = np.sqrt(var)
        return out_mean, out_sd

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FittedGain:
        return cls(**{k: tuple(map(tuple, v)) if k == "sigma" else
                      (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})  # fmt: skip
