"""The prediction settings: choices and defaults, readable without scikit-learn.

The command line builds its flags from these (``ncap --help`` imports neither torch nor
scikit-learn); :func:`ncap.predict.capacitance.estimator` makes the estimator,
:class:`ncap.predict.capacitance.CapacitancePredictor`, from a :class:`PredictorSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ncap.capacitance.variants import check_variants
from ncap.exceptions import ConfigError

__all__ = [
    "FEATURE_MAPS",
    "LINKS",
    "MEASUREMENT_CHOICES",
    "PredictorSettings",
    "check_predictor_params",
    "fit_points_needed",
]

FEATURE_MAPS = ("linear", "quadratic")
LINKS = ("identity", "logit")
MEASUREMENT_CHOICES = ("interval", "fixed")  # see ncap.results.MEASUREMENTS


def fit_points_needed(features: str, min_points: int) -> int:
    """Usable points a fit with this feature map needs (after the burn-in)."""
    n_coef = 2 if features == "quadratic" else 1
    return max(min_points, n_coef + 2, 2)


def check_predictor_params(
    variant: str, features: str, burn_in: int, link: str, measurement: str
) -> None:
    """Raise :class:`~ncap.exceptions.ConfigError` for an invalid predictor parameter (the rules
    of both :class:`PredictorSettings` and the estimator,
    :class:`ncap.predict.capacitance.CapacitancePredictor`)."""
    try:
        check_variants(variant)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if features not in FEATURE_MAPS:
        raise ConfigError(f"unknown feature map {features!r}; choose one of {FEATURE_MAPS}.")
    if measurement not in MEASUREMENT_CHOICES:
        raise ConfigError(
            f"unknown beta_eff measurement {measurement!r}; choose one of {MEASUREMENT_CHOICES}."
        )
    if burn_in < 0:
        raise ConfigError(f"burn_in must be >= 0, got {burn_in}.")
    if link not in LINKS:
        raise ConfigError(f"unknown link {link!r}; choose one of {LINKS}.")


@dataclass(frozen=True)
class PredictorSettings:
    """A ranking's predictor (the nc extrapolation behind ``predicted_accuracy``):
    :class:`CapacitancePredictor`'s parameters.

    The defaults read a variant that ``ncap rank`` tracks by default (signed or mean-abs:
    ``FinetuneConfig.variants``; abs-mean is costly per step). Among the
    ``nc/interval/{signed,mean-abs}/.../logit`` forms (the logit link keeps the predicted accuracy
    inside (0, 1); the identity link's can leave it, e.g. below 0 on a 3-step run) they are the
    one with the best selection-half ``S`` of the pre-registered bench-v2 study, averaged over its
    early and late bins (benchmarks/results/bench-v2-study/selection.json:
    nc/interval/signed/quadratic/b0/logit, mean S +0.250, against +0.257 for the best identity
    form; a test checks them against that file).

    A frozen, JSON-ready record of the estimator's ``get_params()`` (stored as a run's
    ``settings["predictor"]``); :func:`ncap.predict.capacitance.estimator` gives the estimator,
    and both validate by :func:`check_predictor_params`.
    """

    variant: str = "signed"
    features: str = "quadratic"
    burn_in: int = 0
    link: str = "logit"
    min_points: int = 3
    measurement: str = "interval"

    def __post_init__(self) -> None:
        check_predictor_params(
            self.variant, self.features, self.burn_in, self.link, self.measurement
        )

    def points_needed(self) -> int:
        """Evaluation points the fit needs (its burn-in included): a run with fewer cannot be
        predicted, so :mod:`ncap.ranking.preflight` refuses it before training."""
        return self.burn_in + fit_points_needed(self.features, self.min_points)
