"""Predict the final accuracy by extrapolating accuracy(beta_eff) to beta_eff = 0."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import BayesianRidge

from ncap.exceptions import ConfigError
from ncap.predict.features import logit, sigmoid  # accuracies clipped to [1e-3, 1 - 1e-3]
from ncap.predict.settings import (
    FEATURE_MAPS,
    LINKS,
    PredictorSettings,
    check_predictor_params,
    fit_points_needed,
)
from ncap.results import trajectory_arrays

__all__ = [
    "FEATURE_MAPS",
    "LINKS",
    "CapacitancePredictor",
    "PredictorSettings",
    "estimator",
    "predict_from_points",
]


class CapacitancePredictor(BaseEstimator):
    """Bayesian ridge regression of validation accuracy on beta_eff, read at beta_eff = 0.

    A converged network sits at beta_eff = 0, so the accuracy the early trajectory points to there,
    ``h(0)``, predicts the final accuracy; the regression's posterior predictive standard deviation
    at 0 is its uncertainty.

    Parameters
    ----------
    features : {"linear", "quadratic"}
        The feature map of ``h``: ``I = theta_0 + theta_1 b`` or ``I = theta_0 + theta_1 b +
        theta_2 b^2``, with ``b = beta_eff / s`` and ``s = max |beta_eff|`` over the fitted points
        (a rescaling that leaves ``h(0)`` unchanged and keeps the priors scale-free).
    burn_in : int
        Number of earliest points to drop before fitting.
    link : {"identity", "logit"}
        "identity" regresses the accuracy itself (the paper's form). "logit" regresses
        ``log(I / (1 - I))`` and maps the prediction back through the logistic function, so the
        predicted accuracy stays in (0, 1); its std is then the delta-method
        ``sigma'(m) * std``.
    variant : str
        The beta_eff variant the predictor is meant for (recorded, used by callers to pick values).
    measurement : {"interval", "fixed"}
        Which beta_eff measurement the predictor is meant for (recorded, like ``variant``).
    min_points : int
        Fewer usable points than this raises ``ValueError`` (at least 2, and at least the number of
        coefficients + 1).

    Attributes
    ----------
    model_ : sklearn.linear_model.BayesianRidge
    scale_ : float
        The rescaling ``s``.
    prediction_ : float
        ``h(0)``, the predicted final accuracy.
    std_ : float
        Posterior predictive standard deviation at ``beta_eff = 0``.
    link_mean_, link_std_ : float
        The same in link space (the logit of the accuracy for ``link="logit"``, the accuracy
        itself for ``"identity"``): where a calibrated interval is built.
    n_points_ : int
        Number of points fitted.

    Examples
    --------
    Its parameters are scikit-learn parameters:

    >>> from sklearn.base import clone
    >>> clone(CapacitancePredictor(features="quadratic")).get_params()["features"]
    'quadratic'
    >>> beta = [0.5, 0.4, 0.3, 0.2]
    >>> acc = [0.50, 0.60, 0.70, 0.80]
    >>> round(CapacitancePredictor().fit(beta, acc).prediction_, 3)
    1.0
    """

    def __init__(
        self,
        *,
        features: str = "linear",
        burn_in: int = 0,
        link: str = "identity",
        variant: str = "abs-mean",
        min_points: int = 3,
        measurement: str = "interval",
    ) -> None:
        self.features = features
        self.burn_in = burn_in
        self.link = link
        self.variant = variant
        self.min_points = min_points
        self.measurement = measurement

    def _design(self, beta: np.ndarray) -> np.ndarray:
        b = beta / self.scale_
        return np.column_stack([b, b * b]) if self.features == "quadratic" else b[:, None]

    def check_params(self) -> CapacitancePredictor:
        """Raise :class:`~ncap.exceptions.ConfigError` for an invalid parameter; returns self."""
        check_predictor_params(self.variant, self.features, self.burn_in, self.link,
                               self.measurement)  # fmt: skip
        return self

    def settings(self) -> PredictorSettings:
        """The frozen record of this estimator's parameters."""
        params = self.get_params()
        return PredictorSettings(**{f.name: params[f.name] for f in fields(PredictorSettings)})

    def fit(self, beta_eff: Sequence[float], accuracy: Sequence[float]) -> CapacitancePredictor:
        """Fit on early ``(beta_eff, accuracy)`` pairs, in time order; returns self."""
        self.check_params()
        beta = np.asarray(beta_eff, dtype=np.float64).ravel()
        acc = np.asarray(accuracy, dtype=np.float64).ravel()
        if beta.shape != acc.shape:
            raise ConfigError(
                f"beta_eff and accuracy must have the same length, got {beta.size} and {acc.size}."
            )
        beta, acc = beta[self.burn_in :], acc[self.burn_in :]
        usable = np.isfinite(beta) & np.isfinite(acc)
        beta, acc = beta[usable], acc[usable]
        needed = fit_points_needed(self.features, self.min_points)
        if beta.size < needed:
            raise ConfigError(
                f"too few usable points to extrapolate: {beta.size} after dropping {self.burn_in} "
                f"burn-in point(s) and non-finite values, need at least {needed} for a "
                f"{self.features} fit. Train longer, evaluate more often (smaller eval_every) or "
                "lower burn_in."
            )
        self.scale_ = float(np.max(np.abs(beta)))
        if self.scale_ == 0.0:
            raise ConfigError("every beta_eff value is 0; there is no trend to extrapolate.")
        if self.link == "logit":
            target = logit(acc)
        else:
            target = acc
        self.model_ = BayesianRidge(compute_score=False).fit(self._design(beta), target)
        mean, std = self.model_.predict(self._design(np.zeros(1)), return_std=True)
        self.link_mean_, self.link_std_ = float(mean[0]), float(std[0])
        self.prediction_, self.std_ = self.predict(0.0, return_std=True)
        self.n_points_ = int(beta.size)
        return self

    def predict(self, beta_eff=0.0, *, return_std: bool = False):
        """``h(beta_eff)`` (and its posterior predictive std); ``beta_eff`` scalar or array."""
        if not hasattr(self, "model_"):
            raise RuntimeError("this CapacitancePredictor is not fitted yet; call fit() first.")
        beta = np.atleast_1d(np.asarray(beta_eff, dtype=np.float64))
        mean, std = self.model_.predict(self._design(beta), return_std=True)
        if self.link == "logit":
            mean = sigmoid(mean)
            std = mean * (1.0 - mean) * std
        if np.ndim(beta_eff) == 0:
            mean, std = float(mean[0]), float(std[0])
        return (mean, std) if return_std else mean

    def __repr__(self) -> str:
        fitted = (
            f", prediction_={self.prediction_:.4f}±{self.std_:.4f}"
            if hasattr(self, "model_")
            else ""
        )
        return (
            f"CapacitancePredictor(features={self.features!r}, burn_in={self.burn_in}, "
            f"link={self.link!r}, "
            f"variant={self.variant!r}{fitted})"
        )


def estimator(settings: PredictorSettings) -> CapacitancePredictor:
    """The (unfitted) estimator with these settings."""
    return CapacitancePredictor(**asdict(settings))


def predict_from_points(
    points: Sequence[dict[str, Any]], predictor: PredictorSettings, budget_steps: int
) -> dict[str, Any]:
    """Fit the predictor on the points within the budget; the prediction fields of a record."""
    beta, acc = trajectory_arrays(
        points, predictor.variant, max_step=budget_steps, measurement=predictor.measurement
    )
    model = estimator(predictor).fit(beta, acc)
    return {
        "predicted_accuracy": model.prediction_,
        "predicted_std": model.std_,
        "fit": {
            "n_points": model.n_points_,
            "coef": [float(c) for c in model.model_.coef_],
            "intercept": float(model.model_.intercept_),
            "scale": model.scale_,
            "link": model.link,
            "link_mean": model.link_mean_,
            "link_std": model.link_std_,
        },
    }
