"""Baseline scores from the same early budget that neural capacitance gets.

A trajectory is a list of points in time order, each a dict with at least ``"step"`` (int),
``"epoch"`` (float), ``"train_loss"`` (the mean training loss over the interval since the previous
point, the first point's interval starting at step 0) and ``"val_accuracy"`` (in ``[0, 1]``). The
budget is a maximum step ``max_step``: only points with ``step <= max_step`` are ever read.

Every score is "higher is better", so all methods rank candidates the same way round:

- ``last-observed``: the validation accuracy of the last point within the budget.
- ``tse`` / ``tse-e1``: minus the sum of training losses (Ru et al., "Speedy Performance
  Estimation for Neural Architecture Search", NeurIPS 2021), over the whole budget or its final
  epoch; see :func:`sum_training_losses` and :func:`tse_score`.
- ``learning-curve``: the final accuracy a parametric learning-curve ensemble extrapolates to
  (:mod:`ncap.predict.curves`, after Domhan et al., IJCAI 2015).
- ``param-count`` and ``source-accuracy``: training-free, read from the context (the number of
  parameters; the accuracy on the source / pretraining task).

:data:`BASELINES` maps each name to ``method(points, max_step, context) -> (score, info)``. A score
of ``None`` means "this method could not score this run" (``info["reason"]`` says why); callers
must report it as such and never substitute a value for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ncap.predict.curves import Extrapolation, extrapolate

__all__ = [
    "BASELINES",
    "Baseline",
    "last_observed_accuracy",
    "learning_curve_prediction",
    "points_within_budget",
    "sum_training_losses",
    "tse_score",
]

Point = Mapping[str, Any]
Baseline = Callable[[Sequence[Point], int, Mapping[str, Any]], tuple[float | None, dict[str, Any]]]

_EPOCH_RTOL = 1e-6


def points_within_budget(points: Sequence[Point], max_step: int) -> list[Point]:
    """The points with ``step <= max_step``, checked to be in strictly increasing step order.

    Raises
    ------
    ValueError
        If the steps are not strictly increasing, or no point lies within the budget.
    """
    steps = [p["step"] for p in points]
    for before, after in zip(steps, steps[1:]):
        if after <= before:
            raise ValueError(
                f"trajectory points must be in strictly increasing step order; step {after} "
                f"follows step {before}. Sort the points by step and drop duplicates."
            )
    early = [p for p in points if p["step"] <= max_step]
    if not early:
        first = f"the first point is at step {steps[0]}" if steps else "the trajectory is empty"
        raise ValueError(
            f"no trajectory point within the budget max_step={max_step} ({first}); raise the "
            "budget or evaluate earlier."
        )
    return early


def last_observed_accuracy(points: Sequence[Point], max_step: int) -> float:
    """Validation accuracy of the last point with ``step <= max_step``.

    Raises
    ------
    ValueError
        No point within the budget, or its accuracy is missing / not finite.
    """
    last = points_within_budget(points, max_step)[-1]
    value = last.get("val_accuracy")
    if value is None or not math.isfinite(value):
        raise ValueError(
            f"the last point within the budget (step {last['step']}) has val_accuracy {value!r}; "
            "a finite validation accuracy is needed."
        )
    return float(value)


def sum_training_losses(
    points: Sequence[Point],
    max_step: int,
    *,
    steps_per_epoch: float,
    last_epochs: float | None = None,
) -> float:
    """Sum of training losses (TSE, Ru et al. 2021) over the budget, in units of epochs.

    Point ``p`` covers the training steps ``(s_{p-1}, s_p]`` (``s_{-1} = 0``) and carries their
    mean loss ``L_p``. In epochs the interval is ``(e_{p-1}, e_p]`` with ``e_p = s_p / S``
    (``S = steps_per_epoch``), and

        TSE = sum_p L_p * (s_p - s_{p-1}) / S,

    the sum of the per-epoch mean training losses, i.e. the sum of the per-step losses divided by
    ``S``. With ``last_epochs = E`` (TSE-E) only the final ``E`` epochs of the budget count: with
    ``B = e_last`` the epoch of the last point within the budget,

        TSE-E = sum_p L_p * max(0, e_p - max(e_{p-1}, B - E)),

    so an interval straddling the boundary ``B - E`` counts in proportion to its part after it.
    ``E >= B`` gives the full TSE. Irregular intervals (e.g. a shorter last one) are weighted by
    their length, so they need no special care.

    Parameters
    ----------
    points : sequence of dict
        The trajectory (see the module docstring).
    max_step : int
        The budget; later points are ignored.
    steps_per_epoch : float
        Optimiser steps per epoch, the one the trajectory was recorded with. Where points carry
        ``"epoch"`` it must equal ``step / steps_per_epoch``.
    last_epochs : float, optional
        ``E`` for TSE-E (``E = 1`` is the variant Ru et al. found best); None for all epochs.

    Returns
    -------
    float
        The (positive) sum. Lower means faster training; :func:`tse_score` negates it for ranking.

    Raises
    ------
    ValueError
        Bad ``steps_per_epoch`` / ``last_epochs``, no point within the budget, unordered points,
        an ``"epoch"`` inconsistent with ``steps_per_epoch``, or a missing / non-finite
        ``train_loss`` on an interval that counts.
    """
    if not (math.isfinite(steps_per_epoch) and steps_per_epoch > 0):
        raise ValueError(
            f"steps_per_epoch must be finite and > 0, got {steps_per_epoch!r}; pass the number "
            "of optimiser steps per epoch the trajectory was recorded with."
        )
    if last_epochs is not None and not (math.isfinite(last_epochs) and last_epochs > 0):
        raise ValueError(
            f"last_epochs must be finite and > 0 (or None for all epochs), got {last_epochs!r}."
        )
    early = points_within_budget(points, max_step)
    if early[0]["step"] < 0:
        raise ValueError(f"steps must be >= 0; the first point is at step {early[0]['step']}.")
    for p in early:
        epoch = p.get("epoch")
        expected = p["step"] / steps_per_epoch
        if epoch is not None and not math.isclose(
            epoch, expected, rel_tol=_EPOCH_RTOL, abs_tol=1e-9
        ):
            raise ValueError(
                f"the point at step {p['step']} has epoch {epoch!r} but step / steps_per_epoch = "
                f"{expected:.6g}; pass the steps_per_epoch the trajectory was recorded with."
            )
    budget_epoch = early[-1]["step"] / steps_per_epoch
    boundary = -math.inf if last_epochs is None else budget_epoch - last_epochs
    total, prev_step = 0.0, 0
    for p in early:
        start, end = prev_step / steps_per_epoch, p["step"] / steps_per_epoch
        prev_step = p["step"]
        weight = max(0.0, end - max(start, boundary))
        if weight == 0.0:
            continue
        loss = p.get("train_loss")
        if loss is None or not math.isfinite(loss):
            raise ValueError(
                f"the point at step {p['step']} has train_loss {loss!r}; the sum of training "
                "losses needs a finite mean loss on every interval it covers."
            )
        total += float(loss) * weight
    return total


def tse_score(
    points: Sequence[Point],
    max_step: int,
    *,
    steps_per_epoch: float,
    last_epochs: float | None = None,
) -> float:
    """Ranking score of TSE: ``-sum_training_losses(...)``, so that higher is better.

    A model whose training loss falls faster has a smaller sum of training losses and therefore a
    higher score. Parameters and errors as in :func:`sum_training_losses`.
    """
    return -sum_training_losses(
        points, max_step, steps_per_epoch=steps_per_epoch, last_epochs=last_epochs
    )


def learning_curve_prediction(
    points: Sequence[Point], max_step: int, target_epoch: float, **kw: Any
) -> Extrapolation:
    """Extrapolate the validation accuracy of the points within the budget to ``target_epoch``.

    Fits :func:`ncap.predict.curves.extrapolate` to ``(epoch, val_accuracy)`` of the points with
    ``step <= max_step``. Points at ``epoch <= 0`` (an evaluation of the untrained model) are left
    out, because the curve families are defined for ``x > 0``. ``kw`` goes to ``extrapolate``
    (``curves``, ``min_points``, ``plausible_range``, ``tolerance``).

    Raises
    ------
    ValueError
        No point within the budget, a missing / non-finite accuracy, or fewer usable points than
        ``min_points``.
    """
    early = points_within_budget(points, max_step)
    x, y = [], []
    for p in early:
        epoch = p.get("epoch")
        if epoch is None or not math.isfinite(epoch):
            raise ValueError(
                f"the point at step {p['step']} has epoch {epoch!r}; learning-curve "
                "extrapolation needs the training progress in epochs at every point."
            )
        if epoch <= 0:
            continue
        acc = p.get("val_accuracy")
        if acc is None or not math.isfinite(acc):
            raise ValueError(
                f"the point at step {p['step']} has val_accuracy {acc!r}; learning-curve "
                "extrapolation needs a finite accuracy at every point within the budget."
            )
        x.append(float(epoch))
        y.append(float(acc))
    return extrapolate(x, y, target_epoch, **kw)


# --------------------------------------------------------------------------------------------
# registry


def _require(context: Mapping[str, Any], key: str, method: str) -> Any:
    if key not in context:
        raise ValueError(
            f"baseline {method!r} needs context[{key!r}]; add it to the context dict "
            f"(got keys {sorted(context)})."
        )
    return context[key]


def _failed(err: Exception | str) -> tuple[None, dict[str, Any]]:
    return None, {"reason": str(err)}


def _last_observed(points, max_step, context):
    try:
        last = points_within_budget(points, max_step)[-1]
        score = last_observed_accuracy(points, max_step)
    except ValueError as err:
        return _failed(err)
    return score, {"step": last["step"], "epoch": last.get("epoch")}


def _tse(last_epochs: float | None, name: str) -> Baseline:
    def method(points, max_step, context):
        steps_per_epoch = _require(context, "steps_per_epoch", name)
        try:
            total = sum_training_losses(
                points, max_step, steps_per_epoch=steps_per_epoch, last_epochs=last_epochs
            )
            budget_epoch = points_within_budget(points, max_step)[-1]["step"] / steps_per_epoch
        except ValueError as err:
            return _failed(err)
        return -total, {
            "sum_training_losses": total,
            "last_epochs": last_epochs,
            "budget_epoch": budget_epoch,
        }

    method.__name__ = method.__qualname__ = f"baseline_{name.replace('-', '_')}"
    method.__doc__ = f"Registry entry {name!r}: the TSE score (minus the sum of training losses)."
    return method


def _learning_curve(points, max_step, context):
    target_epoch = _require(context, "target_epoch", "learning-curve")
    try:
        result = learning_curve_prediction(
            points, max_step, target_epoch, max_starts=context.get("curve_starts")
        )
    except ValueError as err:
        return _failed(err)
    info: dict[str, Any] = {
        "predictions": dict(result.predictions),
        "failures": dict(result.failures),
        "n_points": result.n_points,
        "target_epoch": result.target_x,
    }
    if result.prediction is None:
        reasons = "; ".join(f"{k}: {v}" for k, v in result.failures.items())
        info["reason"] = f"no learning curve could be extrapolated ({reasons})"
    return result.prediction, info


def _context_value(key: str, name: str) -> Baseline:
    def method(points, max_step, context):
        value = context.get(key)
        if value is None:
            return _failed(f"context[{key!r}] is missing or None: {name} is unknown for this run")
        try:
            value = float(value)
        except (TypeError, ValueError):
            return _failed(f"context[{key!r}] = {value!r} is not a number")
        if not math.isfinite(value):
            return _failed(f"context[{key!r}] = {value!r} is not finite")
        return value, {key: value}

    method.__name__ = method.__qualname__ = f"baseline_{key}"
    method.__doc__ = (
        f"Registry entry: context[{key!r}] as the score (training-free; points unused)."
    )
    return method


BASELINES: dict[str, Baseline] = {
    "last-observed": _last_observed,
    "tse": _tse(None, "tse"),
    "tse-e1": _tse(1.0, "tse-e1"),
    "learning-curve": _learning_curve,
    "param-count": _context_value("parameters", "param-count"),
    "source-accuracy": _context_value("source_accuracy", "source-accuracy"),
}
"""Baseline methods by name: ``method(points, max_step, context) -> (score or None, info)``.

``context`` holds ``"steps_per_epoch"`` (needed by ``tse`` and ``tse-e1``), ``"target_epoch"``
(needed by ``learning-curve``), and the per-run values ``"parameters"`` and ``"source_accuracy"``
read by ``param-count`` and ``source-accuracy`` (which ignore the points).

Scores are "higher is better". A score of ``None`` means the method could not score this run;
``info["reason"]`` says why, and callers must report it, not substitute a value. A missing
configuration key (``steps_per_epoch``, ``target_epoch``) is a caller error and raises
ValueError instead; a missing per-run value (``parameters``, ``source_accuracy``) gives None.
"""
