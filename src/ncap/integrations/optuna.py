"""Optuna: a pruner that stops a trial when its *predicted final* accuracy is, with a stated
confidence, worse than the best trial's at the same budget, and a helper that reports beta_eff and
the prediction as trial user attributes (``pip install 'ncap[optuna]'``).

Optuna's own pruners compare the current value (median, percentile, successive halving, Hyperband).
:class:`NcapPruner` compares what each trial will reach: at every reported step it predicts the
trial's final accuracy from its values so far (by default LO with bench-v3's residuals for that
share of the full budget, :mod:`ncap.integrations.curve`) and prunes by the rule of
:mod:`ncap.integrations.rule`, against the other trials' predictions from the *same* step.

.. code-block:: python

    import optuna
    from ncap.integrations.optuna import NcapPruner, report

    def objective(trial):
        model = build(trial)                                   # your model and training
        for epoch in range(1, 21):
            loss = train_one_epoch(model)
            report(trial, evaluate(model), epoch, train_loss=loss)  # trial.report + user attrs
            if trial.should_prune():
                raise optuna.TrialPruned()
        return evaluate(model)

    study = optuna.create_study(direction="maximize", pruner=NcapPruner(max_resource=20))

The values must be accuracies in [0, 1] and the study must maximise them. ``step`` counts
``steps_per_epoch`` per epoch (default: one report per epoch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ncap.exceptions import ConfigError, MissingDependency
from ncap.integrations.curve import (
    FinalPrediction,
    check_confidence,
    check_score,
    predict_final,
)
from ncap.integrations.rule import Decision, EqualBudgetBook

try:
    import optuna
    from optuna.pruners import BasePruner
    from optuna.study import StudyDirection
    from optuna.trial import TrialState
except ImportError as err:  # pragma: no cover - the extra is installed in CI
    raise MissingDependency(
        "ncap.integrations.optuna needs Optuna: pip install 'ncap[optuna]'."
    ) from err

__all__ = ["NcapPruner", "report", "trial_points"]

TRAIN_LOSS = "ncap_train_loss"  # user attribute: {str(step): mean training loss}
BETA_EFF = "ncap_beta_eff"  # {str(step): {variant: beta_eff}}
MODEL = "ncap_model"  # {"parameters": int, "num_features": int}
PREDICTION = "ncap_prediction"  # FinalPrediction.as_dict() at the last report
DECISION = "ncap_decision"  # the pruner's last decision (set by report)


def _frozen(trial: optuna.trial.Trial) -> optuna.trial.FrozenTrial:
    return trial.study._storage.get_trial(trial._trial_id)


def trial_points(
    trial: optuna.trial.FrozenTrial | optuna.trial.Trial,
    max_step: int | None = None,
    *,
    steps_per_epoch: float = 1.0,
) -> list[dict[str, Any]]:
    """The trial's intermediate values (and the training losses and beta_eff that :func:`report`
    stored) as trajectory points up to ``max_step`` (``epoch`` = step / ``steps_per_epoch``)."""
    frozen = _frozen(trial) if isinstance(trial, optuna.trial.Trial) else trial
    losses = frozen.user_attrs.get(TRAIN_LOSS, {})
    betas = frozen.user_attrs.get(BETA_EFF, {})
    points = []
    for step in sorted(frozen.intermediate_values):
        if max_step is not None and step > max_step:
            break
        point: dict[str, Any] = {
            "step": int(step),
            "epoch": step / steps_per_epoch,
            "val_accuracy": frozen.intermediate_values[step],
        }
        if str(step) in losses:
            point["train_loss"] = losses[str(step)]
        if str(step) in betas:
            point["beta_eff"] = betas[str(step)]
        points.append(point)
    return points


class NcapPruner(BasePruner):
    """Prune a trial whose predicted final accuracy is, with ``confidence``, below the best
    trial's predicted final accuracy at the same step.

    Parameters
    ----------
    max_resource : int
        The full budget T in steps (the step of a trial's last report), as Optuna's
        ``HyperbandPruner``'s ``max_resource``.
    confidence : {0.95, 0.68}
        Prune when the upper end of the trial's two-sided ``confidence`` interval (calibrated on
        ncap's benchmark) is below the best rival's prediction.
    steps_per_epoch : float
        Reported steps per epoch (1: one report per epoch); the training-loss feature averages
        the last epoch.
    n_startup_trials : int
        Pruning is off until this many trials have finished (complete or pruned), as in
        ``MedianPruner``.
    n_warmup_steps : int
        Pruning is off for a trial until its step exceeds this, as in ``MedianPruner``.
    min_rivals : int
        Trials that must have reported the same step before one is pruned there.
    score : str, optional
        The score that predicts the final accuracy (default None: the last observed accuracy
        with bench-v3's residuals, :mod:`ncap.integrations.curve`; e.g. "fit/base").
    """

    def __init__(
        self,
        max_resource: int,
        *,
        confidence: float = 0.95,
        steps_per_epoch: float = 1.0,
        n_startup_trials: int = 1,
        n_warmup_steps: int = 0,
        min_rivals: int = 1,
        score: str | None = None,
        fitter=None,
        residuals=None,
    ) -> None:
        if not (isinstance(max_resource, int | float) and max_resource > 0):
            raise ConfigError(
                f"max_resource must be a positive number of steps, got {max_resource!r}."
            )
        if not steps_per_epoch > 0:
            raise ConfigError(f"steps_per_epoch must be > 0, got {steps_per_epoch!r}.")
        if n_startup_trials < 0 or n_warmup_steps < 0 or min_rivals < 1:
            raise ConfigError(
                "n_startup_trials and n_warmup_steps must be >= 0 and min_rivals >= 1; got "
                f"{n_startup_trials}, {n_warmup_steps}, {min_rivals}."
            )
        check_confidence(confidence)
        self.max_resource = max_resource
        self.confidence = float(confidence)
        self.steps_per_epoch = float(steps_per_epoch)
        self.n_startup_trials = int(n_startup_trials)
        self.n_warmup_steps = int(n_warmup_steps)
        self.min_rivals = int(min_rivals)
        self.score = check_score(score)
        self._hooks = {
            k: v for k, v in (("fitter", fitter), ("residuals", residuals)) if v is not None
        }
        self._books: dict[str, EqualBudgetBook] = {}
        self._trials: dict[tuple[str, int], optuna.trial.FrozenTrial] = {}

    # -- predictions ---------------------------------------------------------------------------
    def predict(
        self, trial: optuna.trial.FrozenTrial, step: int | None = None
    ) -> FinalPrediction | None:
        """The trial's predicted final accuracy from its reports up to ``step`` (default: all)."""
        model = trial.user_attrs.get(MODEL, {})
        return predict_final(
            trial_points(trial, step, steps_per_epoch=self.steps_per_epoch),
            steps_per_epoch=self.steps_per_epoch,
            full_epochs=self.max_resource / self.steps_per_epoch,
            parameters=model.get("parameters"),
            num_features=model.get("num_features"),
            max_step=step,
            score=self.score,
            **self._hooks,
        )

    def _book(self, study: optuna.study.Study) -> EqualBudgetBook:
        name = study.study_name
        if name not in self._books:

            def predict(number: int, step: int) -> FinalPrediction | None:
                return self.predict(self._trials[(name, number)], step)

            self._books[name] = EqualBudgetBook(
                predict, confidence=self.confidence, min_rivals=self.min_rivals
            )
        return self._books[name]

    def decision(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> Decision:
        """The rule's decision for ``trial`` at its last step, with the reason."""
        if len(study.directions) > 1 or study.direction != StudyDirection.MAXIMIZE:
            raise ConfigError(
                "NcapPruner predicts a final accuracy: create the study with "
                "direction='maximize' and report accuracies in [0, 1]."
            )
        step = trial.last_step
        if step is None:
            return Decision(False, None, None, 0, "nothing reported yet")
        value = trial.intermediate_values[step]
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ConfigError(
                f"trial {trial.number} reported {value!r} at step {step}: NcapPruner needs "
                "accuracies in [0, 1] (divide a percentage by 100)."
            )
        if step <= self.n_warmup_steps:
            return Decision(False, None, None, 0, f"step {step} <= n_warmup_steps")
        trials = study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        )
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        if finished < self.n_startup_trials:
            return Decision(
                False, None, None, 0, f"{finished} finished trial(s) < n_startup_trials"
            )
        name = study.study_name
        rivals = []
        for t in trials:
            if t.number != trial.number and step in t.intermediate_values:
                self._trials[(name, t.number)] = t
                rivals.append(t.number)
        self._trials[(name, trial.number)] = trial
        return self._book(study).decide(trial.number, step, rivals)

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return self.decision(study, trial).prune


def report(
    trial: optuna.trial.Trial,
    value: float,
    step: int,
    *,
    train_loss: float | None = None,
    beta_eff: float | Mapping[str, float] | None = None,
    parameters: int | None = None,
    num_features: int | None = None,
    max_resource: int | None = None,
    steps_per_epoch: float | None = None,
) -> FinalPrediction | None:
    """``trial.report(value, step)``, plus what ncap reads and what it predicts, as user
    attributes: ``ncap_train_loss`` and ``ncap_beta_eff`` (per step), ``ncap_model`` (size) and
    ``ncap_prediction`` (the predicted final accuracy with its 68% and 95% intervals). The full
    budget comes from the study's :class:`NcapPruner`, or from ``max_resource`` (and
    ``steps_per_epoch``) with any other pruner; without either no prediction is made.
    Returns the prediction (or None)."""
    trial.report(value, step)
    attrs = trial.user_attrs
    if train_loss is not None:
        trial.set_user_attr(TRAIN_LOSS, {**attrs.get(TRAIN_LOSS, {}), str(step): float(train_loss)})
    if beta_eff is not None:
        beta = {"abs-mean": float(beta_eff)} if isinstance(beta_eff, int | float) else beta_eff
        trial.set_user_attr(
            BETA_EFF, {**attrs.get(BETA_EFF, {}), str(step): {k: float(v) for k, v in beta.items()}}
        )
    if (parameters is not None or num_features is not None) and MODEL not in attrs:
        trial.set_user_attr(MODEL, {"parameters": parameters, "num_features": num_features})
    pruner = trial.study.pruner
    if isinstance(pruner, NcapPruner):
        predictor = pruner
    elif max_resource is not None:
        predictor = NcapPruner(max_resource, steps_per_epoch=steps_per_epoch or 1.0)
    else:
        return None
    frozen = _frozen(trial)
    prediction = predictor.predict(frozen, step)
    if prediction is not None:
        trial.set_user_attr(PREDICTION, prediction.as_dict())
    return prediction
