"""Hugging Face ``Trainer``: a ``TrainerCallback`` that tracks beta_eff on a classification
model's features and predicts the final evaluation accuracy (``pip install 'ncap[transformers]'``).

.. code-block:: python

    from transformers import Trainer
    from ncap.integrations.transformers import NcapTrainerCallback

    ncap_cb = NcapTrainerCallback("resnet.pooler", num_classes=10)   # or e.g. "vit.layernorm"
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      compute_metrics=accuracy, callbacks=[ncap_cb])
    trainer.train()
    ncap_cb.prediction   # the final eval_accuracy after args.num_train_epochs, with its interval

Every ``args.logging_steps`` steps the training log gains ``ncap/beta_eff/<variant>`` (over the
samples since the previous log); every evaluation log that holds ``metric`` (default
``eval_accuracy``, as ``compute_metrics`` returns ``accuracy``) gains ``ncap/predicted_final_acc``
and its 95% interval. They are added to the ``logs`` dict of ``on_log``, so they reach
``trainer.state.log_history`` (and ``trainer_state.json``) and the reporting callbacks placed
after this one; reporting integrations that the ``Trainer`` installs itself (``report_to``) run
before user callbacks and do not see them. The labels are read from the model's ``labels``
keyword argument (how the ``Trainer`` calls a model); the probe reads the feature layer as
:class:`~ncap.integrations.tap.ProbeTap` describes, and the model and its training are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ncap.exceptions import ConfigError, MissingDependency
from ncap.integrations.curve import FinalPrediction, LearningCurve, check_score
from ncap.integrations.tap import FeatureLayer, ProbeTap
from ncap.training.config import CHEAP_VARIANTS

try:
    from transformers import TrainerCallback
except ImportError as err:  # pragma: no cover - the extra is installed in CI
    raise MissingDependency(
        "ncap.integrations.transformers needs transformers: pip install 'ncap[transformers]'."
    ) from err

__all__ = ["NcapTrainerCallback"]


class NcapTrainerCallback(TrainerCallback):
    """Track beta_eff on ``feature_layer`` and predict the final ``metric``.

    Parameters
    ----------
    feature_layer : str or callable
        The submodule whose output are the features (a name from ``model.named_modules()``,
        e.g. ``"resnet.pooler"``, ``"vit.layernorm"``, ``"bert.pooler"``) or ``model -> submodule``.
    num_classes : int
    metric : str
        The evaluation accuracy in the evaluation logs (in [0, 1]).
    full_epochs : float, optional
        The full budget T (default: ``args.num_train_epochs``, or ``max_steps`` in epochs).
    lr : float, optional
        The learning rate that scales beta_eff (default: ``args.learning_rate``).
    score : str, optional
        The score that predicts the final accuracy (default None: the last observed accuracy
        with bench-v3's residuals, :mod:`ncap.integrations.curve`; e.g. "fit/base").
    hidden, variants, seed
        The probe's (:class:`~ncap.integrations.tap.ProbeTap`).
    """

    def __init__(
        self,
        feature_layer: FeatureLayer,
        num_classes: int,
        *,
        metric: str = "eval_accuracy",
        full_epochs: float | None = None,
        lr: float | None = None,
        score: str | None = None,
        hidden: Sequence[int] = (128, 64, 32),
        variants: str | Iterable[str] = CHEAP_VARIANTS,
        seed: int = 0,
    ) -> None:
        self.score = check_score(score)
        self.tap = ProbeTap(feature_layer, num_classes, hidden=hidden, variants=variants, seed=seed)
        self.metric, self.full_epochs, self.lr = metric, full_epochs, lr
        self.history: list[dict[str, Any]] = []  # {"step", "beta_eff"} per read
        self.curve: LearningCurve | None = None
        self.prediction: FinalPrediction | None = None
        self._labels: list[torch.Tensor] = []
        self._handle = None
        self._parameters: int | None = None
        self._loss: tuple[float, int] | None = None
        self._betas: list[dict[str, float]] = []
        self._pending_beta: dict[str, float] | None = None

    # -- set-up ----------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        if model is None:
            raise ConfigError("NcapTrainerCallback needs the model (the Trainer passes it).")
        self.tap.probe_options["lr"] = float(self.lr if self.lr is not None else args.learning_rate)
        self.tap.attach(model)
        self._handle = model.register_forward_pre_hook(self._take_labels, with_kwargs=True)
        self._parameters = sum(p.numel() for p in model.parameters())
        steps_per_epoch = None
        if state.max_steps and state.num_train_epochs:
            steps_per_epoch = state.max_steps / state.num_train_epochs
        loader = kwargs.get("train_dataloader")
        if loader is not None and hasattr(loader, "__len__"):
            steps_per_epoch = max(1, len(loader) // max(1, args.gradient_accumulation_steps))
        if not steps_per_epoch:
            raise ConfigError("NcapTrainerCallback cannot tell the steps per epoch.")
        if self.full_epochs is None:
            self.full_epochs = (
                state.max_steps / steps_per_epoch if args.max_steps > 0 else args.num_train_epochs
            )
        self.curve = LearningCurve(steps_per_epoch=steps_per_epoch)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self.tap.detach()
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _take_labels(self, module, args, kwargs) -> None:
        if module.training and torch.is_grad_enabled() and self.tap.enabled:
            labels = kwargs.get("labels")
            if labels is None:
                raise ConfigError(
                    "NcapTrainerCallback reads the labels from the model's `labels` argument; "
                    "the Trainer passed none (name the dataset's label column `labels`)."
                )
            self._labels.append(labels.detach())

    # -- every step ------------------------------------------------------------------------------
    def on_step_end(self, args, state, control, **kwargs) -> None:
        labels, self._labels = self._labels, []
        self.tap.observe(labels)
        every = max(1, int(args.logging_steps)) if args.logging_steps >= 1 else 1
        if state.global_step % every == 0:
            beta = self.tap.read()
            if beta is not None:
                self.history.append({"step": state.global_step, "beta_eff": beta})
                self._betas.append(beta)
                self._pending_beta = beta

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if logs is None:
            return
        if "loss" in logs and math.isfinite(float(logs["loss"])):
            self._loss = (float(logs["loss"]), state.global_step)
        if self._pending_beta is not None and self.metric not in logs:
            logs.update({f"ncap/beta_eff/{k}": v for k, v in self._pending_beta.items()})
            self._pending_beta = None
        if self.metric in logs and self.curve is not None and state.global_step > 0:
            self._evaluated(float(logs[self.metric]), state.global_step)
            if self.prediction is not None:
                low, high = self.prediction.interval(0.95)
                logs.update(
                    {
                        "ncap/predicted_final_acc": self.prediction.accuracy,
                        "ncap/predicted_final_acc_low95": low,
                        "ncap/predicted_final_acc_high95": high,
                    }
                )
        if state.log_history and logs is not state.log_history[-1]:
            entry = state.log_history[-1]
            entry.update({k: v for k, v in logs.items() if k.startswith("ncap/")})

    def _evaluated(self, value: float, step: int) -> None:
        if self.curve.points and step <= self.curve.points[-1]["step"]:
            return
        betas = {
            k: float(sum(b[k] for b in self._betas) / len(self._betas))
            for k in (self._betas[0] if self._betas else {})
        }
        self.curve.add(
            step, value, train_loss=self._loss[0] if self._loss else None, beta_eff=betas or None
        )
        self._betas = []
        self.prediction = self.predict()

    def predict(self) -> FinalPrediction | None:
        """The final accuracy predicted from the evaluations so far (None before the first)."""
        if self.curve is None:
            return None
        return self.curve.predict(
            self.full_epochs,
            parameters=self._parameters,
            num_features=self.tap.num_features,
            score=self.score,
        )
