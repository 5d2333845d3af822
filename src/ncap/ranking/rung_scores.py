"""Rung scores: what successive halving ranks the candidates by at each rung.

A rung score maps a candidate's trajectory so far (its evaluation points, oldest first) and the
budget fraction it has reached (rung budget / maximum budget) to a number, higher is better, or
None when it cannot score (the candidate then ranks below every scored one). Scores are selected
by name; :data:`DEFAULT_RUNG_SCORE` is the one ``ncap rank --strategy halving`` uses unless told.

- ``last-observed``: the last observed validation accuracy (what ASHA / Hyperband rank by).
- ``predicted``: the final accuracy neural capacitance predicts from the points so far
  (:func:`ncap.predict.capacitance.predict_from_points` with the run's predictor settings), the
  number ``ncap rank`` ranks by.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ncap.exceptions import ConfigError
from ncap.predict.settings import PredictorSettings  # (no scikit-learn: the CLI reads the names)

__all__ = ["DEFAULT_RUNG_SCORE", "RUNG_SCORES", "RungScore", "make_rung_score", "min_points"]

RungScore = Callable[[Sequence[dict[str, Any]], float], float | None]

# The one place that names the default; point it at the recommended score once it is chosen.
DEFAULT_RUNG_SCORE = "predicted"


def _last_observed(points: Sequence[dict[str, Any]], fraction: float) -> float | None:
    return float(points[-1]["val_accuracy"]) if points else None


def _predicted(predictor: PredictorSettings) -> RungScore:
    from ncap.predict.capacitance import predict_from_points  # scikit-learn

    def score(points: Sequence[dict[str, Any]], fraction: float) -> float | None:
        if not points:
            return None
        try:
            value = predict_from_points(points, predictor, points[-1]["step"])["predicted_accuracy"]
        except ValueError:  # too few usable points, beta_eff undefined throughout
            return None
        return float(value) if value is not None and math.isfinite(value) else None

    return score


# name -> (factory of the score given the run's predictor settings, description)
RUNG_SCORES: dict[str, tuple[Callable[[PredictorSettings], RungScore], str]] = {
    "last-observed": (lambda predictor: _last_observed, "the last observed validation accuracy"),
    "predicted": (_predicted, "neural capacitance's predicted final accuracy"),
}


def make_rung_score(name: str, predictor: PredictorSettings) -> RungScore:
    """The rung score called ``name`` (:data:`RUNG_SCORES`)."""
    if name not in RUNG_SCORES:
        raise ConfigError(f"unknown rung score {name!r}; choose one of {sorted(RUNG_SCORES)}.")
    return RUNG_SCORES[name][0](predictor)


def min_points(name: str, predictor: PredictorSettings) -> int:
    """Evaluation points the first rung needs for the score to be defined."""
    if name != "predicted":
        return 1
    coefficients = 2 if predictor.features == "quadratic" else 1  # (the predictor's own rule)
    return predictor.burn_in + max(predictor.min_points, coefficients + 2, 2)
