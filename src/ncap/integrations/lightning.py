"""Lightning: a ``Callback`` that tracks beta_eff on a ``LightningModule``'s features and predicts
the final validation accuracy at every validation (``pip install 'ncap[lightning]'``).

.. code-block:: python

    import lightning as L
    from ncap.integrations.lightning import NcapCallback

    ncap_cb = NcapCallback("backbone", num_classes=10, monitor="val_acc")
    trainer = L.Trainer(max_epochs=20, callbacks=[ncap_cb])
    trainer.fit(model, train_loader, val_loader)
    ncap_cb.prediction          # FinalPrediction: accuracy, interval(0.95), by, budget_fraction

What it logs through the module's logger (``pl_module.log``), at every validation:
``ncap/beta_eff/<variant>`` over the training samples since the previous validation (the interval
of an evaluation point, as ``ncap rank`` records it), and ``ncap/predicted_final_acc`` with its 95%
interval (``ncap/predicted_final_acc_low95``, ``..._high95``): the final ``monitor`` value after
``max_epochs`` predicted as :mod:`ncap.integrations.curve` says (by default LO). With
``log_every_n_steps=k`` beta_eff is also read and logged every ``k`` optimiser steps, over the
samples since the previous read. The probe reads the feature layer as
:class:`~ncap.integrations.tap.ProbeTap` describes; the model and its training are untouched.

What it does per training batch is kept small (docs/integrations.md gives the measured cost): the
probe's forward and backward pass on the batch's features, whose statistics are queued and added
in chunks; the training loss is summed on the device. Nothing is copied to the host and nothing
waits for the device between two validations (unless ``log_every_n_steps`` asks for reads).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from ncap.exceptions import ConfigError, MissingDependency
from ncap.integrations.curve import FinalPrediction, LearningCurve, check_score
from ncap.integrations.tap import FeatureLayer, ProbeTap
from ncap.training.config import CHEAP_VARIANTS

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as err:  # pragma: no cover - the extra is installed in CI
    raise MissingDependency(
        "ncap.integrations.lightning needs Lightning: pip install 'ncap[lightning]'."
    ) from err

__all__ = ["NcapCallback", "default_labels"]


def default_labels(batch: Any) -> torch.Tensor:
    """The labels of a batch: ``batch[1]`` of a tuple/list, ``batch["labels"]`` (or ``"label"``,
    ``"y"``) of a dict."""
    if isinstance(batch, Mapping):
        for key in ("labels", "label", "y"):
            if key in batch:
                return batch[key]
    elif isinstance(batch, Sequence) and len(batch) >= 2:
        return batch[1]
    raise ConfigError(
        "NcapCallback cannot find the labels in the batch; pass labels=lambda batch: ... ."
    )


class NcapCallback(Callback):
    """Track beta_eff on ``feature_layer`` and predict the final ``monitor`` value.

    Parameters
    ----------
    feature_layer : str or callable
        The submodule of the ``LightningModule`` whose output are the features (a name from
        ``named_modules()``) or a function ``module -> submodule``.
    num_classes : int
    monitor : str
        The logged validation accuracy (in [0, 1]), as ``ModelCheckpoint``'s ``monitor``.
    full_epochs : float, optional
        The full budget T (default: the trainer's ``max_epochs``).
    log_every_n_steps : int, optional
        Also read and log beta_eff every this many optimiser steps (default None: only at each
        validation, over the samples since the previous one; a read costs a host sync and the
        statistics' reduction, so reading every step costs more than the step of a small model).
    labels : callable
        ``batch -> labels`` (default :func:`default_labels`).
    lr : float, optional
        The learning rate that scales beta_eff (default: the first optimiser's at the start).
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
        monitor: str = "val_acc",
        full_epochs: float | None = None,
        log_every_n_steps: int | None = None,
        labels: Callable[[Any], torch.Tensor] = default_labels,
        lr: float | None = None,
        score: str | None = None,
        hidden: Sequence[int] = (128, 64, 32),
        variants: str | Iterable[str] = CHEAP_VARIANTS,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.score = check_score(score)
        self.tap = ProbeTap(feature_layer, num_classes, hidden=hidden, variants=variants, seed=seed)
        self.monitor, self.full_epochs, self.lr = monitor, full_epochs, lr
        self.log_every_n_steps, self.labels = log_every_n_steps, labels
        self.history: list[dict[str, Any]] = []  # {"step", "beta_eff"} per log
        self.curve: LearningCurve | None = None
        self.prediction: FinalPrediction | None = None
        if log_every_n_steps is not None and not (
            isinstance(log_every_n_steps, int) and log_every_n_steps >= 1
        ):
            raise ConfigError(
                f"log_every_n_steps must be a positive integer or None (read beta_eff at each "
                f"validation only), got {log_every_n_steps!r}."
            )
        self._losses: list[torch.Tensor] = []  # the interval's losses, on their device: no sync
        self._loss_count = 0
        self._betas: list[dict[str, float]] = []
        self._last_logged = -1

    # -- set-up ----------------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module) -> None:
        self.tap.attach(pl_module)
        if self.lr is None:
            opts = trainer.optimizers
            self.lr = float(opts[0].param_groups[0]["lr"]) if opts else 1e-3
        self.tap.probe_options["lr"] = self.lr
        if self.full_epochs is None:
            if trainer.max_epochs is None or trainer.max_epochs < 1:
                raise ConfigError(
                    "NcapCallback needs the full budget: set Trainer(max_epochs=...) or "
                    "NcapCallback(full_epochs=...)."
                )
            self.full_epochs = float(trainer.max_epochs)

    def on_train_start(self, trainer, pl_module) -> None:
        every = trainer.num_training_batches  # known once the train loader is set up
        accumulate = max(1, int(getattr(trainer, "accumulate_grad_batches", 1)))
        steps_per_epoch = max(1, int(every) // accumulate) if math.isfinite(every) else 1
        self.curve = LearningCurve(steps_per_epoch=steps_per_epoch)
        self.curve.points.extend(getattr(self, "_restored_points", []))

    def on_fit_end(self, trainer, pl_module) -> None:
        self.tap.detach()

    # -- every batch -----------------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.tap.observe(self.labels(batch))
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._losses.append(loss.detach().reshape(()))
            self._loss_count += 1
            if len(self._losses) >= 1024:  # bounded: fold them into their sum (on the device)
                self._losses = [torch.stack(self._losses).sum()]
        every = self.log_every_n_steps
        if every is not None:
            step = trainer.global_step
            if step > 0 and step % every == 0 and step != self._last_logged:
                self._read(pl_module, step, on_step=True)

    def _read(self, pl_module, step: int, *, on_step: bool) -> None:
        """Read beta_eff over the samples since the last read, record and log it."""
        beta = self.tap.read()
        if beta is None:
            return
        self._last_logged = step
        self.history.append({"step": step, "beta_eff": beta})
        self._betas.append(beta)
        for variant, value in beta.items():
            pl_module.log(f"ncap/beta_eff/{variant}", value, on_step=on_step, on_epoch=not on_step)

    # -- every validation ------------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.curve is None or trainer.global_step == 0:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise ConfigError(
                f"NcapCallback(monitor={self.monitor!r}): the module logged no such metric; "
                f"logged: {', '.join(trainer.callback_metrics) or 'none'}. Log the validation "
                "accuracy (in [0, 1]) with self.log in validation_step."
            )
        if self.curve.points and trainer.global_step <= self.curve.points[-1]["step"]:
            return
        self._read(pl_module, trainer.global_step, on_step=False)  # the interval's remainder
        betas = {
            k: float(sum(b[k] for b in self._betas) / len(self._betas))
            for k in (self._betas[0] if self._betas else {})
        }
        self.curve.add(
            trainer.global_step,
            float(value),
            train_loss=(
                float(torch.stack(self._losses).sum()) / self._loss_count
                if self._loss_count
                else None
            ),
            beta_eff=betas or None,
        )
        self._losses, self._loss_count, self._betas = [], 0, []
        self.prediction = self.predict(pl_module)
        if self.prediction is not None:
            low, high = self.prediction.interval(0.95)
            pl_module.log("ncap/predicted_final_acc", self.prediction.accuracy)
            pl_module.log("ncap/predicted_final_acc_low95", low)
            pl_module.log("ncap/predicted_final_acc_high95", high)

    def predict(self, pl_module=None) -> FinalPrediction | None:
        """The final accuracy predicted from the validations so far (None before the first)."""
        if self.curve is None:
            return None
        parameters = None
        if pl_module is not None:
            parameters = sum(p.numel() for p in pl_module.parameters())
        return self.curve.predict(
            self.full_epochs,
            parameters=parameters,
            num_features=self.tap.num_features,
            score=self.score,
        )

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "points": [] if self.curve is None else list(self.curve.points),
            "history": list(self.history),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self._restored_points = list(state_dict.get("points", []))
