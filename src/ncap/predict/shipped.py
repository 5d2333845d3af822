"""What ncap ships from its benchmark study: the recommended score, its settings and fitted models.

The files under ``ncap/predict/data/`` are written by ``ncap bench export-recommended``
(:mod:`ncap.bench.study.export`) from the committed study of bench-v3 (fit/base, its fitted score,
from bench-v2's, carried over); a test checks that they
match it. :func:`fitted_gain` fits a shipped fitted score (``fit/base``) on its training rows at
the study budget nearest the run's (in log budget fraction), with the features a ranking's
candidates all have. Fits are cached per (score, features, budget).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from ncap.exceptions import ConfigError
from ncap.predict.fitted import FittedGain

__all__ = [
    "UNKNOWN_BUDGET",
    "ShippedFit",
    "fit_budgets",
    "fitted_gain",
    "nearest_budget",
    "recommended_settings",
    "shipped_fits",
    "shipped_residuals",
]

UNKNOWN_BUDGET = 0.1  # the study budget a fit uses when the full budget T is unknown


def _load(name: str) -> dict[str, Any]:
    path = resources.files("ncap.predict") / "data" / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:  # pragma: no cover - a broken install
        raise ConfigError(
            f"ncap's package data {name} is missing (a broken install); reinstall ncap."
        ) from None


@lru_cache(maxsize=1)
def recommended_settings() -> dict[str, Any]:
    """``recommended.json``: ``recommended`` (score per bin), ``sigma``, ``recalibration``."""
    return _load("recommended.json")


@lru_cache(maxsize=1)
def _fitted_file() -> dict[str, Any]:
    return _load("fitted.json")


def shipped_fits() -> dict[str, tuple[str, ...]]:
    """The fitted scores ncap ships (``fit/base``), each with its features."""
    return {name: tuple(f) for name, f in recommended_settings()["fits"].items()}


def nearest_budget(budgets: Sequence[float], fraction: float | None) -> float:
    """The budget nearest ``fraction`` in log scale (:data:`UNKNOWN_BUDGET`'s nearest when None).

    >>> nearest_budget([0.025, 0.05, 0.1, 0.2], 0.07), nearest_budget([0.025, 0.05, 0.1, 0.2], 0.9)
    (0.05, 0.2)
    """
    target = UNKNOWN_BUDGET if fraction is None or not fraction > 0 else fraction
    return min(budgets, key=lambda f: (abs(math.log(f) - math.log(target)), f))


def fit_budgets(name: str) -> list[float]:
    """The study budgets (shares of T) a shipped fitted score was fitted at, smallest first."""
    fits = _fitted_file()["fits"]
    if name not in fits:
        raise ConfigError(f"ncap ships no fitted score {name!r}; shipped: {', '.join(fits)}.")
    return sorted(float(b) for b in fits[name]["budgets"])


@dataclass(frozen=True)
class ShippedFit:
    """A shipped fitted score, fitted at ``budget`` on the features ``model.features``; ``ranges``
    holds each feature's (min, max) over the training rows used (to flag extrapolation)."""

    name: str
    budget: float
    model: FittedGain
    ranges: dict[str, tuple[float, float]]


def fitted_gain(name: str, features: Sequence[str], fraction: float | None) -> ShippedFit:
    """The shipped score ``name`` fitted on ``features`` (a subset of its own, in its order) at
    the study budget nearest ``fraction``."""
    fits = _fitted_file()["fits"]
    if name not in fits:
        raise ConfigError(f"ncap ships no fitted score {name!r}; shipped: {', '.join(fits)}.")
    own = fits[name]["features"]
    unknown = [f for f in features if f not in own]
    if unknown:
        raise ConfigError(f"{name} has no feature(s) {unknown}; its features: {own}.")
    budget = nearest_budget([float(b) for b in fits[name]["budgets"]], fraction)
    return _fit(name, tuple(f for f in own if f in features), budget)


@lru_cache(maxsize=64)
def _fit(name: str, features: tuple[str, ...], budget: float) -> ShippedFit:
    if not features:
        raise ConfigError(f"{name} needs at least one feature; none was given.")
    spec = _fitted_file()["fits"][name]
    rows = spec["budgets"][str(budget)]
    columns = [spec["features"].index(f) for f in features]
    x = np.array(rows["x"], dtype=np.float64)[:, columns]
    y = np.array(rows["gain"], dtype=np.float64)
    model = FittedGain.fit(x, y, features)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    ranges = {f: (float(x[ok, j].min()), float(x[ok, j].max())) for j, f in enumerate(features)}
    return ShippedFit(name, budget, model, ranges)


def shipped_residuals(name: str, fraction: float | None) -> tuple[float, tuple[float, ...]] | None:
    """For a score without an sd that the study gave a predictive distribution (the last observed
    accuracy, bench-v3): the study budget nearest ``fraction`` and its residuals
    ``logit(final) - logit(LO)`` (``recommended.json``, "residuals"); None when none are shipped."""
    per = (recommended_settings().get("residuals") or {}).get(name)
    if not per:
        return None
    budget = nearest_budget([float(b) for b in per], fraction)
    return budget, tuple(float(v) for v in per[str(budget)])
