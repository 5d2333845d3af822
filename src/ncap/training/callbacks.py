"""The training loop's seam: callbacks called after every step and at every evaluation.

:func:`ncap.training.loop.train_steps` calls ``on_step_end`` after each optimiser step; the
fine-tuning's :class:`CapacitanceRecorder` (a callback itself) evaluates at the evaluation steps,
records the trajectory point and calls ``on_evaluate`` of the others. Progress bars are callbacks
too (:class:`StepProgress`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ncap.capacitance.probe import NeuralCapacitanceProbe
from ncap.results import Trajectory, TrajectoryPoint

__all__ = ["Callback", "CapacitanceRecorder", "StepProgress"]


class Callback:
    """Hooks of the training loop; every hook is a no-op unless overridden."""

    def on_train_start(self, model: nn.Module) -> None:
        """Before the first step of a fine-tuning, with the model it trains (backbone + probe)."""

    def on_step_end(self, step: int, loss: float, batch_size: int) -> None:
        """After the optimiser step ``step`` (1-based) with this batch's mean loss."""

    def on_evaluate(self, point: TrajectoryPoint) -> None:
        """After an evaluation of the fine-tuning, with the point it recorded (which it may extend
        with measurements of its own; it must not change the model)."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep for the run to continue exactly (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` when a run continues from a checkpoint."""


class StepProgress(Callback):
    """``on_step(step, total)`` after every step: a progress display."""

    def __init__(self, on_step: Callable[[int, int], None], total: int) -> None:
        self.on_step, self.total = on_step, total

    def on_step_end(self, step: int, loss: float, batch_size: int) -> None:
        self.on_step(step, self.total)


class CapacitanceRecorder(Callback):
    """Evaluates at the steps of ``plan`` (``step -> validation images``,
    :func:`ncap.training.schedule.eval_plan`): reads the probe's beta_eff of the interval, the
    mean training loss and the validation loss/accuracy on the first that many validation images
    into ``trajectory.points``, then resets the probe's statistics for the next interval.
    ``record_images`` adds the number of validation images to each point (``val_images``)."""

    def __init__(
        self,
        trajectory: Trajectory,
        *,
        model: nn.Module,
        probe: NeuralCapacitanceProbe,
        validation: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        plan: dict[int, int],
        evaluate: Callable[..., tuple[float, float]],
        read_beta: Callable[[NeuralCapacitanceProbe], dict[str, float | None]],
        listeners: Sequence[Callback] = (),
        record_images: bool = False,
    ) -> None:
        self.trajectory, self.model, self.probe = trajectory, model, probe
        self.validation, self.device = validation, device
        self.plan, self.record_images = dict(plan), record_images
        self.evaluate, self.read_beta, self.listeners = evaluate, read_beta, listeners
        self.loss_sum, self.loss_count = 0.0, 0
        self.start = time.perf_counter()

    def on_step_end(self, step: int, loss: float, batch_size: int) -> None:
        self.loss_sum += loss * batch_size
        self.loss_count += batch_size
        traj = self.trajectory
        if step in self.plan:
            n = self.plan[step]
            x_val, y_val = self.validation
            val_loss, val_acc = self.evaluate(self.model, x_val[:n], y_val[:n], device=self.device)
            point: TrajectoryPoint = {
                "step": step,
                "epoch": step / traj.steps_per_epoch,
                "beta_eff": self.read_beta(self.probe),
                "train_loss": self.loss_sum / self.loss_count,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "wall_time": time.perf_counter() - self.start,
            }
            if self.record_images:
                point["val_images"] = min(n, len(y_val))
            traj.points.append(point)
            self.probe.reset_statistics()
            self.loss_sum, self.loss_count = 0.0, 0
            for listener in self.listeners:
                listener.on_evaluate(point)

    def state_dict(self) -> dict[str, Any]:
        """The interval's running training loss and the seconds since the run started."""
        return {
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "elapsed": time.perf_counter() - self.start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum, self.loss_count = float(state["loss_sum"]), int(state["loss_count"])
        self.start = time.perf_counter() - float(state["elapsed"])
