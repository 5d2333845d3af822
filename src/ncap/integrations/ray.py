"""Ray Tune: a ``TrialScheduler`` and a ``Stopper`` with the rule of ncap's Optuna pruner
(``pip install 'ncap[ray]'``).

.. code-block:: python

    from ray import tune
    from ncap.integrations.ray import NcapScheduler

    scheduler = NcapScheduler(max_t=20, loss_metric="train_loss")
    tune.Tuner(
        train,
        param_space=...,
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", scheduler=scheduler),
    ).fit()

or, as a stopper (with any scheduler, e.g. the default FIFO one):

.. code-block:: python

    from ray import tune
    from ncap.integrations.ray import NcapStopper

    def train(config):
        for epoch in range(1, 21):
            ...
            tune.report({"val_acc": acc, "train_loss": loss})

    stopper = NcapStopper(metric="val_acc", max_t=20, loss_metric="train_loss")
    tune.Tuner(train, param_space=..., run_config=tune.RunConfig(stop=stopper)).fit()

Each result's ``metric`` (an accuracy in [0, 1]) at ``time_attr`` (default
``training_iteration``, one per epoch unless ``steps_per_epoch`` says otherwise) extends the
trial's learning curve; the trial is stopped when its predicted final accuracy is, with
``confidence``, below the best prediction of the other trials *at the same* ``time_attr``
(:mod:`ncap.integrations.rule`), or when it reaches ``max_t``, as ASHA stops at its ``max_t``.
Trials run concurrently, so a trial is compared only with those that have already reported the
same iteration; the stopper runs in the driver and keeps every trial's curve there.
``stopper.predictions`` holds each trial's last prediction.

:class:`NcapScheduler` is the same rule as a scheduler (a ``FIFOScheduler``: trials start in
submission order), answering ``STOP`` or ``CONTINUE`` to each result, the way Tune's own
schedulers (ASHA, the median stopping rule) do; it takes ``metric`` and ``mode`` from
``TuneConfig`` as they do. A trial whose prediction has no interval is never stopped by the rule
(:func:`ncap.integrations.rule.decide`). It does not pause trials: pausing a function trainable
means a checkpoint to save and restore at each pause, which the rule does not need (a trial is
compared with the rivals that reached the same iteration, as the stopper does).
"""

from __future__ import annotations

import math
from typing import Any

from ncap.exceptions import ConfigError, MissingDependency
from ncap.integrations.curve import FinalPrediction, LearningCurve, check_confidence, check_score
from ncap.integrations.rule import Decision, EqualBudgetBook

try:
    from ray.tune import Stopper
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler
except ImportError as err:  # pragma: no cover - the extra is installed in CI
    raise MissingDependency(
        "ncap.integrations.ray needs Ray Tune: pip install 'ncap[ray]'."
    ) from err

__all__ = ["NcapScheduler", "NcapStopper"]


class NcapStopper(Stopper):
    """Stop a trial whose predicted final ``metric`` is, with ``confidence``, below the best
    trial's at the same ``time_attr``.

    Parameters
    ----------
    metric : str
        The validation accuracy in each result (in [0, 1]).
    max_t : int
        The full budget T in ``time_attr`` units.
    mode : {"max"}
        Ray Tune's convention; ncap predicts accuracies, so only "max".
    confidence : {0.95, 0.68}
    time_attr : str
    steps_per_epoch : float
        ``time_attr`` units per epoch (1: one result per epoch).
    loss_metric : str, optional
        The mean training loss in each result (a feature of ``score="fit/base"``).
    parameters : int, optional
        The model's size, when all trials share it; or ``parameters_metric``, a result key.
    grace_period : int
        No stopping before this ``time_attr`` (as ASHA's ``grace_period``).
    min_rivals : int
        Trials that must have reported the same iteration before one is stopped there.
    score : str, optional
        The score that predicts the final accuracy (default None: the last observed accuracy
        with bench-v3's residuals, :mod:`ncap.integrations.curve`; e.g. "fit/base").
    """

    def __init__(
        self,
        metric: str,
        max_t: int,
        *,
        mode: str = "max",
        confidence: float = 0.95,
        time_attr: str = "training_iteration",
        steps_per_epoch: float = 1.0,
        loss_metric: str | None = None,
        parameters: int | None = None,
        parameters_metric: str | None = None,
        grace_period: int = 1,
        min_rivals: int = 1,
        score: str | None = None,
    ) -> None:
        if mode != "max":
            raise ConfigError(
                f"mode={mode!r}: NcapStopper predicts a final accuracy; report it and use mode='max'."
            )
        if not max_t > 0 or not steps_per_epoch > 0:
            raise ConfigError(
                f"max_t and steps_per_epoch must be > 0; got {max_t!r} and {steps_per_epoch!r}."
            )
        check_confidence(confidence)
        self.metric, self.max_t, self.time_attr = metric, max_t, time_attr
        self.steps_per_epoch, self.loss_metric = float(steps_per_epoch), loss_metric
        self.parameters, self.parameters_metric = parameters, parameters_metric
        self.grace_period = int(grace_period)
        self.score = check_score(score)
        self.curves: dict[str, LearningCurve] = {}
        self.sizes: dict[str, int | None] = {}
        self.predictions: dict[str, FinalPrediction | None] = {}
        self.decisions: dict[str, Decision] = {}
        self.book = EqualBudgetBook(self._predict, confidence=confidence, min_rivals=min_rivals)

    def _predict(self, trial_id: str, step: int) -> FinalPrediction | None:
        curve = self.curves[trial_id]
        points = [p for p in curve.points if p["step"] <= step]
        return LearningCurve(curve.steps_per_epoch, points).predict(
            self.max_t / self.steps_per_epoch, parameters=self.sizes.get(trial_id), score=self.score
        )

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self.metric not in result or self.time_attr not in result:
            raise ConfigError(
                f"NcapStopper reads {self.metric!r} at {self.time_attr!r}; the result has "
                f"{', '.join(sorted(result))}. Report the validation accuracy under that name."
            )
        step = int(result[self.time_attr])
        curve = self.curves.setdefault(trial_id, LearningCurve(self.steps_per_epoch))
        if curve.points and step <= curve.points[-1]["step"]:
            return False  # a repeated iteration (a restored trial): nothing new
        loss = result.get(self.loss_metric) if self.loss_metric else None
        curve.add(
            step,
            float(result[self.metric]),
            train_loss=float(loss) if loss is not None and math.isfinite(float(loss)) else None,
        )
        size = result.get(self.parameters_metric) if self.parameters_metric else self.parameters
        self.sizes[trial_id] = int(size) if size is not None else None
        if step >= self.max_t:
            return True
        if step < self.grace_period:
            return False
        rivals = [
            t
            for t, c in self.curves.items()
            if t != trial_id and any(p["step"] == step for p in c.points)
        ]
        decision = self.book.decide(trial_id, step, rivals)
        self.decisions[trial_id] = decision
        self.predictions[trial_id] = self.book.prediction(trial_id, step)
        return decision.prune

    def stop_all(self) -> bool:
        return False


class NcapScheduler(FIFOScheduler):
    """A Tune scheduler that stops a trial whose predicted final ``metric`` is, with
    ``confidence``, below the best trial's at the same ``time_attr`` (:class:`NcapStopper`'s rule;
    the parameters are its). ``metric`` and ``mode`` may come from ``TuneConfig`` instead.

    ``decisions``, ``predictions`` and ``curves`` are the rule's, per trial id; ``stopped`` maps
    the trials the rule stopped (not those that reached ``max_t``) to the iteration.
    """

    def __init__(
        self,
        max_t: int,
        *,
        metric: str | None = None,
        mode: str | None = None,
        confidence: float = 0.95,
        time_attr: str = "training_iteration",
        steps_per_epoch: float = 1.0,
        loss_metric: str | None = None,
        parameters: int | None = None,
        parameters_metric: str | None = None,
        grace_period: int = 1,
        min_rivals: int = 1,
        score: str | None = None,
    ) -> None:
        super().__init__()
        _check_mode(mode)
        self.rule = NcapStopper(
            metric or "",
            max_t,
            confidence=confidence,
            time_attr=time_attr,
            steps_per_epoch=steps_per_epoch,
            loss_metric=loss_metric,
            parameters=parameters,
            parameters_metric=parameters_metric,
            grace_period=grace_period,
            min_rivals=min_rivals,
            score=score,
        )
        self._metric, self._mode = metric, mode
        self.stopped: dict[str, int] = {}

    @property
    def decisions(self) -> dict[str, Decision]:
        return self.rule.decisions

    @property
    def predictions(self) -> dict[str, FinalPrediction | None]:
        return self.rule.predictions

    @property
    def curves(self) -> dict[str, LearningCurve]:
        return self.rule.curves

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        """Take ``metric`` and ``mode`` from ``TuneConfig`` (False when both sides set one)."""
        if (self._metric and metric) or (self._mode and mode):
            return False
        _check_mode(mode)
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        self.rule.metric = self._metric or ""
        return True

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        if not self._metric:
            raise ConfigError(
                "NcapScheduler needs the metric: NcapScheduler(metric='val_acc', ...) or "
                "TuneConfig(metric='val_acc', mode='max', scheduler=...)."
            )
        if not self.rule(trial.trial_id, result):
            return TrialScheduler.CONTINUE
        step = int(result[self.rule.time_attr])
        if step < self.rule.max_t:
            self.stopped[trial.trial_id] = step
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        return (
            f"Using ncap's predicted-final-accuracy rule ({self._metric}, confidence "
            f"{self.rule.book.confidence:g}): {len(self.stopped)} trial(s) stopped early."
        )


def _check_mode(mode: str | None) -> None:
    if mode not in (None, "max"):
        raise ConfigError(
            f"mode={mode!r}: ncap predicts a final accuracy; report it and use mode='max'."
        )
