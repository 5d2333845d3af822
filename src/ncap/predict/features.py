"""The early features of one run that the fitted scores read (docs/benchmark-v2-protocol.md, D2).

:func:`base_features` gives, for one run's trajectory up to ``max_step`` and its training-free
values, the features of ``fit/base`` (:data:`BASE_FEATURES`):

- ``lo``: logit of the last observed validation accuracy;
- ``lo_slope``: slope of logit(validation accuracy) against log(epoch) over the evaluation points
  with ``epoch > 0`` (least squares; needs two distinct epochs);
- ``tse_e1``: the ``tse-e1`` baseline (minus the mean training loss of the last epoch);
- ``log10_parameters``, ``log2_features``: the backbone's size and feature width;
- ``logme``: LogME of the backbone's features on the training images (before fine-tuning);
- ``logit_source``: logit of the backbone's accuracy on its pretraining task (ncap's own zoo).

A feature that cannot be computed is NaN. Probabilities enter the logit clipped to
``[1e-3, 1 - 1e-3]`` (:func:`logit`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import special

__all__ = ["BASE_FEATURES", "LOGIT_EPS", "base_features", "logit", "sigmoid"]

BASE_FEATURES = (
    "lo",
    "lo_slope",
    "tse_e1",
    "log10_parameters",
    "log2_features",
    "logme",
    "logit_source",
)
LOGIT_EPS = 1e-3


def logit(p: float | np.ndarray) -> float | np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[1e-3, 1 - 1e-3]``.

    Written out rather than ``scipy.special.logit``, which differs from it in the last bit for
    most inputs: the shipped training rows (``data/fitted.json``) are a bit-exact export of the
    benchmark through this function, and a test checks that they still are.

    >>> round(float(logit(0.5)), 6), round(float(logit(1.0)), 3)
    (0.0, 6.907)
    """
    q = np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(q / (1.0 - q))


def sigmoid(x: float | np.ndarray) -> float | np.ndarray:
    """The inverse of :func:`logit` (without the clipping): scipy's ``expit``, which does not
    overflow at any value.

    >>> float(sigmoid(0.0)), float(sigmoid(-1000.0)), round(float(sigmoid(logit(0.9))), 12)
    (0.5, 0.0, 0.9)
    """
    return special.expit(np.asarray(x, dtype=np.float64))


def _positive(value: Any, transform) -> float:
    if value is None:
        return math.nan
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        return math.nan
    return float(transform(value))


def base_features(
    points: Sequence[Mapping[str, Any]],
    max_step: int,
    free: Mapping[str, Any],
    *,
    last_observed: float | None,
    tse_e1: float | None,
) -> dict[str, float]:
    """The :data:`BASE_FEATURES` of one run at one budget (NaN where undefined).

    ``free`` holds the training-free values (``parameters``, ``num_features``, ``logme``,
    ``source_accuracy``; missing keys give NaN); ``last_observed`` and ``tse_e1`` are the run's
    ``last-observed`` and ``tse-e1`` scores at this budget (:func:`ncap.predict.scores.run_score`).
    """
    nan = math.nan
    out = {"lo": float(logit(last_observed)) if last_observed is not None else nan}
    early = [p for p in points if p["step"] <= max_step and p["epoch"] > 0]
    out["lo_slope"] = nan
    if len(early) >= 2:
        x = np.log([p["epoch"] for p in early])
        y = logit(np.array([p["val_accuracy"] for p in early], dtype=float))
        if np.ptp(x) > 0:
            out["lo_slope"] = float(np.polyfit(x, y, 1)[0])
    out["tse_e1"] = float(tse_e1) if tse_e1 is not None else nan
    out["log10_parameters"] = _positive(free.get("parameters"), math.log10)
    out["log2_features"] = _positive(free.get("num_features"), math.log2)
    logme = free.get("logme")
    out["logme"] = float(logme) if logme is not None and math.isfinite(float(logme)) else nan
    out["logit_source"] = _positive(free.get("source_accuracy"), lambda v: float(logit(v)))
    return out
