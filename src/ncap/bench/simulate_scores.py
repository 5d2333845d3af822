"""The scores of one recorded run at a budget, for the methods a simulation asks for only: the
values of :func:`ncap.bench.evaluate.score_run` (less work), and the simulation's default methods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ncap.bench.evaluate import (
    PAPER_FORM,
    SAME_BUDGET,
    _budget_step,
    baseline_context,
    nc_grid,
    nc_name,
)
from ncap.predict.baselines import BASELINES
from ncap.predict.capacitance import predict_from_points
from ncap.predict.settings import PredictorSettings

__all__ = ["DEFAULT_METHODS", "REFERENCE", "TRAINING_FREE", "known_methods", "score_methods"]

# ncap's default before the study, in the legacy spelling: nc/abs-mean/quadratic/b0/logit
NC_DEFAULT = nc_name(PredictorSettings(variant="abs-mean", features="quadratic", link="logit"))
DEFAULT_METHODS = (
    "last-observed",
    "tse",
    "tse-e1",
    "param-count",
    "source-accuracy",
    "logme",
    NC_DEFAULT,
    nc_name(PAPER_FORM),
)
TRAINING_FREE = ("param-count", "source-accuracy", "logme")
REFERENCE = "last-observed"  # the score ASHA / Hyperband use


def _nc_settings() -> dict[str, Any]:
    return {nc_name(s): s for s in nc_grid()}


def known_methods(free: Mapping[str, Any]) -> set[str]:
    """The method names :func:`score_methods` can compute for a run with training-free ``free``."""
    proxies = {p for p in (free.get("proxies") or {}) if p != "param_count"}
    return set(_nc_settings()) | set(SAME_BUDGET) | {*TRAINING_FREE} | proxies


def score_methods(
    run: Mapping[str, Any],
    free: Mapping[str, Any],
    total_epochs: float,
    fraction: float,
    methods: Sequence[str],
) -> dict[str, tuple[float | None, str | None]]:
    """:func:`ncap.bench.evaluate.score_run` for ``methods`` only (the same values, less work).

    A non-finite score counts as a failure (None), as in :func:`ncap.bench.metrics.ranking_metrics`.
    """
    unknown = set(methods) - known_methods(free)
    if unknown:
        raise ValueError(
            f"unknown method(s) {sorted(unknown)}; known: {sorted(known_methods(free))}"
        )
    max_step = _budget_step(run, total_epochs, fraction)
    points = [p for p in run["points"] if p["step"] <= max_step]
    context = baseline_context(run, free, total_epochs)
    nc = _nc_settings()
    out: dict[str, tuple[float | None, str | None]] = {}
    for name in methods:
        value: float | None
        reason: str | None = None
        if name in nc:
            try:
                value = predict_from_points(points, nc[name], max_step)["predicted_accuracy"]
            except ValueError as err:
                value, reason = None, str(err).split(";")[0]
        elif name in BASELINES:
            if not points and name in SAME_BUDGET:
                value, reason = None, "no evaluation point within the budget"
            else:
                try:
                    value, info = BASELINES[name](points, max_step, context)
                except ValueError as err:
                    value, info = None, {"reason": str(err)}
                if value is None:
                    reason = str(info.get("reason") or info.get("failures"))
        elif name == "logme":
            value = free.get("logme")
            reason = None if value is not None else "no LogME score in the results"
        else:  # a zero-cost proxy recorded with the training-free scores
            value = free["proxies"][name]
            reason = (free.get("proxy_failures") or {}).get(name)
        if value is not None and not math.isfinite(float(value)):
            value, reason = None, reason or f"non-finite score {value!r}"
        out[name] = (None if value is None else float(value), reason)
    return out


def _score_job(job) -> dict[float, dict[str, tuple[float | None, str | None]]]:
    run, free, total_epochs, wanted = job
    return {b: score_methods(run, free, total_epochs, b, ms) for b, ms in wanted}
