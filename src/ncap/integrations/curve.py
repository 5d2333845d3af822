"""A trial's learning curve and its predicted final accuracy.

A framework integration records, at each evaluation, the training step, the epoch, the validation
accuracy and the mean training loss since the previous evaluation (and beta_eff when a probe is
attached) as :class:`~ncap.results.TrajectoryPoint`-shaped dicts. :func:`predict_final` turns the
points up to a step into a :class:`FinalPrediction`: the final validation accuracy after
``full_epochs`` predicted by the score that predicts one run's accuracy at that share of the full
budget (:func:`ncap.predict.recommended.resolve_trial_score`). By default that is the last observed
accuracy (LO) with its predictive distribution from bench-v3: ``sigmoid(logit(LO) + r)``, r the
residuals ``logit(final) - logit(LO)`` the benchmark recorded at the study budget nearest the
run's; the prediction is its median and the 68% and 95% intervals its central quantiles. (The
study's defaults at 2.5-10% of T, LogME and a rank average, order candidates against each other
and predict no single run's accuracy; LO is the default at 20%, and nothing else beat it there.)

``score="fit/base"`` (a Bayesian ridge on LO, its slope, the training loss and the model's size,
fitted on bench-v2: the default before bench-v3, which did not beat LO there) or an ``nc/...``
extrapolation predicts with an sd instead, recalibrated as ``ncap rank`` does
(:func:`ncap.predict.recommended.predicted_interval`). Features the caller cannot give (LogME, the
source accuracy of ncap's own zoo) are left out of a fitted model, as ``ncap rank`` does for
candidates that lack them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ncap.exceptions import ConfigError
from ncap.predict.features import base_features, sigmoid
from ncap.predict.recommended import (
    Fitted,
    empirical_prediction,
    predicted_interval,
    resolve_trial_score,
)
from ncap.predict.scores import run_score
from ncap.predict.shipped import ShippedFit, fitted_gain, shipped_residuals

__all__ = ["CONFIDENCES", "FinalPrediction", "LearningCurve", "check_score", "predict_final"]

CONFIDENCES = {0.68: "68", 0.95: "95"}  # the calibrated interval levels
Fitter = Callable[[str, Sequence[str], "float | None"], ShippedFit]
Residuals = Callable[[str, "float | None"], "tuple[float, tuple[float, ...]] | None"]


def check_confidence(confidence: float) -> str:
    """The interval key of ``confidence`` (0.68 or 0.95: the levels ncap calibrates)."""
    for level, key in CONFIDENCES.items():
        if math.isclose(float(confidence), level):
            return key
    raise ConfigError(
        f"confidence={confidence!r}: ncap calibrates its intervals at 0.68 and 0.95 only; "
        "pass one of them."
    )


def check_score(score: str | None) -> str | None:
    """``score`` when it predicts one run's final accuracy (a bad name fails here, before any
    training; :func:`ncap.predict.recommended.resolve_trial_score`)."""
    resolve_trial_score(score, None)
    return score


@dataclass(frozen=True)
class FinalPrediction:
    """A predicted final accuracy. ``intervals`` maps "68" and "95" to ``(low, high)`` (empty when
    the score has no spread); ``calibrated`` says whether the study's factors widened them;
    ``budget_fraction`` is the observed share of the full budget (None when it is unknown) and
    ``extrapolated`` whether it lies outside the 2.5-20% the score was chosen for. For the last
    observed accuracy (the default) ``calibrated`` means the intervals are quantiles of the
    residuals the benchmark recorded (:func:`predict_final`)."""

    accuracy: float
    by: str
    step: int
    budget_fraction: float | None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    calibrated: bool = False
    extrapolated: bool = False

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """The ``confidence`` interval (0.68 or 0.95); the point itself when there is none."""
        key = check_confidence(confidence)
        return self.intervals.get(key, (self.accuracy, self.accuracy))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (trial user attributes, logs)."""
        out: dict[str, Any] = {
            "accuracy": self.accuracy,
            "by": self.by,
            "step": self.step,
            "budget_fraction": self.budget_fraction,
            "calibrated": self.calibrated,
            "extrapolated": self.extrapolated,
        }
        out |= {k: list(v) for k, v in self.intervals.items()}
        return out


def _fitted(
    spec: Fitted,
    points: Sequence[Mapping[str, Any]],
    max_step: int,
    free: Mapping[str, Any],
    context: Mapping[str, Any],
    fraction: float | None,
    fitter: Fitter,
) -> tuple[float, str, float, float, float] | None:
    """``(accuracy, link, link mean, link sd, fit budget)`` of a shipped fitted score, on the
    features this run has (as :func:`ncap.ranking.scoring.score_candidates` does for one run)."""
    lo = run_score("last-observed", points, max_step, context).value
    if lo is None:
        return None
    tse = run_score("tse-e1", points, max_step, context).value
    row = base_features(points, max_step, free, last_observed=lo, tse_e1=tse)
    used = [f for f in spec.components if math.isfinite(row[f])]
    fit = fitter(spec.name, used, fraction)
    x = np.array([[row[f] for f in fit.model.features]], dtype=np.float64)
    gain, sd = fit.model.predict(x)
    mean = row["lo"] + float(gain[0])
    return float(sigmoid(mean)), "logit", mean, float(sd[0]), fit.budget


def predict_final(
    points: Sequence[Mapping[str, Any]],
    *,
    steps_per_epoch: float,
    full_epochs: float | None,
    parameters: int | None = None,
    num_features: int | None = None,
    logme: float | None = None,
    source_accuracy: float | None = None,
    max_step: int | None = None,
    score: str | None = None,
    fitter: Fitter = fitted_gain,
    residuals: Residuals = shipped_residuals,
) -> FinalPrediction | None:
    """The final accuracy predicted from ``points`` up to ``max_step`` (default: the last), or
    None when there is no finite validation accuracy yet.

    ``full_epochs`` is the full budget T; ``parameters`` and ``num_features`` describe the model
    (left out of the fit when unknown). ``score`` names the score that predicts (module doc;
    None: the default, :func:`ncap.predict.recommended.resolve_trial_score`). ``fitter`` returns
    the fitted model of a ``fit/...`` score (default: the shipped one,
    :func:`ncap.predict.shipped.fitted_gain`) and ``residuals`` the study budget and residuals of
    a score without an sd (default: the shipped ones,
    :func:`ncap.predict.shipped.shipped_residuals`); the replay of ``benchmarks/pruner_replay.py``
    passes both computed without the replayed target.
    """
    if not steps_per_epoch > 0:
        raise ConfigError(f"steps_per_epoch must be > 0, got {steps_per_epoch!r}.")
    if full_epochs is not None and not full_epochs > 0:
        raise ConfigError(f"full_epochs (the full budget T) must be > 0, got {full_epochs!r}.")
    if max_step is None:
        if not points:
            return None
        max_step = int(points[-1]["step"])
    within = [p for p in points if p["step"] <= max_step]
    if not within or not math.isfinite(float(within[-1].get("val_accuracy", math.nan))):
        return None
    fraction = None if full_epochs is None else max_step / (full_epochs * steps_per_epoch)
    spec = resolve_trial_score(score, fraction)  # a bad name fails here
    free = {
        "parameters": parameters,
        "num_features": num_features,
        "logme": logme,
        "source_accuracy": source_accuracy,
    }
    context = {
        "steps_per_epoch": steps_per_epoch,
        "target_epoch": full_epochs if full_epochs is not None else math.nan,
        "curve_starts": 3,
        **free,
    }
    if isinstance(spec, Fitted):
        out = _fitted(spec, within, max_step, free, context, fraction, fitter)
        if out is None:
            return None
        accuracy, link, mean, sd, interval_fraction = out
    else:  # a per-run score that predicts an accuracy: LO (the default) or an extrapolation
        run = spec.score(within, max_step, context)  # (oriented by the spec's own sign)
        if run.predicted is None:
            return None
        accuracy, link, mean, sd = run.predicted, run.link, run.link_mean, run.link_sd
        interval_fraction = fraction
    intervals: dict[str, tuple[float, float]] = {}
    calibrated = False
    empirical = None
    if link is None:  # no sd: the benchmark's residuals at the nearest budget
        empirical = empirical_prediction(spec.name, accuracy, fraction, residuals=residuals)
    if empirical is not None:
        accuracy = empirical["accuracy"]
        intervals = {
            k: (float(empirical[k][0]), float(empirical[k][1])) for k in CONFIDENCES.values()
        }
        calibrated = True
    elif link is not None and mean is not None and sd is not None and math.isfinite(sd):
        iv = predicted_interval(spec.name, link, mean, sd, interval_fraction)
        calibrated = bool(iv["calibrated"])
        intervals = {k: (float(iv[k][0]), float(iv[k][1])) for k in CONFIDENCES.values()}
    return FinalPrediction(
        accuracy=float(accuracy),
        by=spec.name,
        step=int(max_step),
        budget_fraction=fraction,
        intervals=intervals,
        calibrated=calibrated,
        extrapolated=fraction is None or not 0.025 <= fraction <= 0.2,
    )


@dataclass
class LearningCurve:
    """The points of one training run, appended at each evaluation (the shape of
    :class:`~ncap.results.TrajectoryPoint`: ``step``, ``epoch``, ``val_accuracy``, ``train_loss``
    and, with a probe, ``beta_eff``)."""

    steps_per_epoch: float
    points: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        step: int,
        val_accuracy: float,
        *,
        train_loss: float | None = None,
        beta_eff: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Append the evaluation at ``step`` (steps must increase); returns the point."""
        step = int(step)
        if self.points and step <= self.points[-1]["step"]:
            raise ConfigError(
                f"evaluation steps must increase: step {step} after {self.points[-1]['step']}."
            )
        acc = float(val_accuracy)
        if not 0.0 <= acc <= 1.0:
            raise ConfigError(
                f"val_accuracy={acc!r} at step {step}: ncap predicts accuracies in [0, 1] "
                "(divide a percentage by 100)."
            )
        point: dict[str, Any] = {
            "step": step,
            "epoch": step / self.steps_per_epoch,
            "val_accuracy": acc,
        }
        if train_loss is not None and math.isfinite(float(train_loss)):
            point["train_loss"] = float(train_loss)
        if beta_eff:
            point["beta_eff"] = {k: float(v) for k, v in beta_eff.items()}
        self.points.append(point)
        return point

    def predict(self, full_epochs: float | None, **model: Any) -> FinalPrediction | None:
        """:func:`predict_final` on these points (``model``: ``parameters``, ``num_features``)."""
        return predict_final(
            self.points, steps_per_epoch=self.steps_per_epoch, full_epochs=full_epochs, **model
        )
