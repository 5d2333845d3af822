"""How beta_eff decays: features of its early trajectory (docs/benchmark-v2-protocol.md, family C).

Take the evaluation points within the budget whose beta_eff (of one measurement and variant) is
finite and positive; let ``x_i = ln(epoch_i)`` and ``y_i = ln(beta_i)``, ``k`` their number:

==============  ==========================================================================  =====
feature         definition                                                                  needs
==============  ==========================================================================  =====
``slope``       OLS slope of y on x                                                         k ≥ 3
``curv``        c in the OLS fit ``y = a + b (x - x̄) + c (x - x̄)²``                         k ≥ 4
``t50``         ln of the first epoch_i with ``beta_i <= 0.5 max_{j<=i} beta_j``; if never  k ≥ 2
                reached, ``ln(2 x budget epoch)`` (censored, not a failure)
``drop-peak``   ``y_k - max_j y_j``                                                         k ≥ 2
``drop-first``  ``y_k - y_1``                                                               k ≥ 2
``level``       ``y_k``, the log of the last value                                          k ≥ 1
==============  ==========================================================================  =====

The features are raw: which direction is "better" is not known in advance (the study fixes a sign
per feature on its selection half).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ncap.exceptions import ConfigError
from ncap.results import MEASUREMENTS

__all__ = ["DYNAMICS", "MIN_POINTS", "beta_series", "dynamics_feature"]

DYNAMICS = ("slope", "curv", "t50", "drop-peak", "drop-first", "level")
MIN_POINTS = {"slope": 3, "curv": 4, "t50": 2, "drop-peak": 2, "drop-first": 2, "level": 1}


def beta_series(
    points: Sequence[dict[str, Any]], max_step: int, *, measurement: str, variant: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(epoch, beta_eff)`` of the points with ``step <= max_step`` and a finite, positive beta."""
    field = MEASUREMENTS[measurement]
    epochs, betas = [], []
    for p in points:
        if p["step"] > max_step:
            break
        value = (p.get(field) or {}).get(variant)
        if value is not None and math.isfinite(value) and value > 0 and p["epoch"] > 0:
            epochs.append(float(p["epoch"]))
            betas.append(float(value))
    return np.asarray(epochs), np.asarray(betas)


def dynamics_feature(
    feature: str, epochs: np.ndarray, betas: np.ndarray, *, budget_epoch: float
) -> float:
    """One feature of the decay (module docstring); ``ValueError`` when there are too few points."""
    if feature not in MIN_POINTS:
        raise ConfigError(
            f"unknown beta_eff dynamics feature {feature!r}; choose one of {DYNAMICS}."
        )
    k = len(betas)
    if k < MIN_POINTS[feature]:
        raise ValueError(
            f"{feature} needs at least {MIN_POINTS[feature]} points with a finite, positive "
            f"beta_eff within the budget; got {k}"
        )
    x, y = np.log(epochs), np.log(betas)
    if feature == "level":
        return float(y[-1])
    if feature == "drop-peak":
        return float(y[-1] - y.max())
    if feature == "drop-first":
        return float(y[-1] - y[0])
    if feature == "t50":
        running_max = np.maximum.accumulate(betas)
        below = np.flatnonzero(betas <= 0.5 * running_max)
        return float(x[below[0]]) if below.size else math.log(2.0 * budget_epoch)
    xc = x - x.mean()
    degree = 1 if feature == "slope" else 2
    if np.ptp(xc) == 0:
        raise ValueError(f"{feature} needs points at more than one epoch")
    design = np.vander(xc, degree + 1)  # columns: xc^degree ... 1
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(coef[0])
