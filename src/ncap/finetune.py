"""Fine-tune a backbone under a frozen neural capacitance probe and record its trajectory.

The loop is plain PyTorch: shuffled mini-batches (seeded), the probe on top of the backbone's
features, softmax cross-entropy, an optimiser over the backbone only. Every ``eval_every`` steps it
reads the probe's beta_eff for the interval since the last evaluation (all tracked variants), the mean
training loss of the interval and the validation loss and accuracy, then starts a new interval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ncap.datasets import ImageDataset
from ncap.edge_stats import VARIANTS
from ncap.probe import NeuralCapacitanceProbe

__all__ = ["CandidateError", "FinetuneConfig", "evaluate", "finetune", "make_optimizer"]

OPTIMIZERS = ("adam", "sgd", "adamw")


class CandidateError(RuntimeError):
    """A candidate cannot be fine-tuned (diverged, bad data, size mismatch); the reason says why."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of the early fine-tuning (paper defaults: batch 64, learning rate 1e-3)."""

    epochs: float = 1.0
    steps: int | None = None  # the budget in training steps; overrides epochs when given
    eval_every: int | None = None  # steps; default: 8 evaluations per epoch
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    probe_hidden: tuple[int, ...] = (128, 64, 32)
    probe_activation: str = "relu"
    variants: tuple[str, ...] = VARIANTS
    seed: int = 0
    max_val: int | None = None  # evaluate on at most this many validation images

    def __post_init__(self) -> None:
        if not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ValueError(f"epochs must be a positive number, got {self.epochs!r}.")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive and finite, got {self.lr!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}.")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1 step, got {self.eval_every}.")

    def steps_per_epoch(self, n_train: int) -> int:
        return max(1, math.ceil(n_train / self.batch_size))

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, int(round(self.epochs * self.steps_per_epoch(n_train))))

    def interval(self, n_train: int) -> int:
        if self.eval_every is not None:
            return self.eval_every
        return max(1, round(self.steps_per_epoch(n_train) / 8))

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def make_optimizer(name: str, params, *, lr: float, momentum: float, weight_decay: float):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch: int = 512
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), batch):
        logits = model(x[i : i + batch])
        loss_sum += float(nn.functional.cross_entropy(logits, y[i : i + batch], reduction="sum"))
        correct += int((logits.argmax(1) == y[i : i + batch]).sum())
    model.train(was_training)
    return loss_sum / len(y), correct / len(y)


@dataclass
class Trajectory:
    """What one fine-tuning run recorded."""

    points: list[dict[str, Any]] = field(default_factory=list)
    steps_per_epoch: int = 0
    total_steps: int = 0
    seconds: float = 0.0


def _check_inputs(module: nn.Module, num_features: int, dataset: ImageDataset) -> None:
    dataset.validate()
    with torch.no_grad():
        was_training = module.training
        module.eval()
        try:
            out = module(dataset.x_train[:2])
        except RuntimeError as err:
            raise CandidateError(
                f"the backbone cannot take this dataset's inputs of shape "
                f"{tuple(dataset.x_train.shape[1:])}: {str(err).splitlines()[0]}"
            ) from err
        finally:
            module.train(was_training)
    if out.ndim != 2 or out.shape[1] != num_features:
        raise CandidateError(
            f"the backbone returns features of shape {tuple(out.shape[1:])} but the probe expects "
            f"{num_features}; fix the backbone's declared feature size (num_features)."
        )


def finetune(
    module: nn.Module,
    num_features: int,
    dataset: ImageDataset,
    config: FinetuneConfig,
    *,
    on_step: Callable[[int, int], None] | None = None,
    extra_eval_steps: Sequence[int] = (),
) -> Trajectory:
    """Fine-tune ``module`` under a frozen random probe; return the recorded trajectory.

    Parameters
    ----------
    module : nn.Module
        Backbone mapping a batch of ``dataset`` inputs to ``(batch, num_features)`` features. It is
        trained in place.
    num_features : int
        The backbone's feature size (the probe's input size).
    dataset : ImageDataset
    config : FinetuneConfig
    on_step : callable(step, total_steps), optional
        Progress callback after every training step.
    extra_eval_steps : sequence of int
        Steps to evaluate at besides every ``eval_every`` steps and the last one (a longer run
        uses this to evaluate where a shorter budget ends, so its prefix equals the short run).

    Raises
    ------
    CandidateError
        For a loss that becomes NaN/inf, inputs the backbone cannot take, or a feature size that
        does not match ``num_features``.
    """
    _check_inputs(module, num_features, dataset)
    torch.manual_seed(config.seed)
    probe = NeuralCapacitanceProbe(
        num_features,
        dataset.num_classes,
        hidden=config.probe_hidden,
        activation=config.probe_activation,
        seed=config.seed,
        lr=config.lr,
        variants=config.variants,
    )
    model = nn.Sequential(module, probe)
    optimizer = make_optimizer(
        config.optimizer,
        [p for p in module.parameters() if p.requires_grad],
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    x_val, y_val = dataset.x_val, dataset.y_val
    if config.max_val is not None:
        x_val, y_val = x_val[: config.max_val], y_val[: config.max_val]
    n = len(dataset.y_train)
    traj = Trajectory(steps_per_epoch=config.steps_per_epoch(n), total_steps=config.total_steps(n))
    interval = config.interval(n)
    extra = set(extra_eval_steps)
    generator = torch.Generator().manual_seed(config.seed)
    order, cursor = torch.randperm(n, generator=generator), 0
    loss_sum, loss_count = 0.0, 0
    start = time.perf_counter()
    model.train()
    for step in range(1, traj.total_steps + 1):
        if cursor >= n:
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + config.batch_size]
        cursor += config.batch_size
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(dataset.x_train[idx]), dataset.y_train[idx])
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise CandidateError(
                f"training diverged at step {step}: the loss is {loss_value}; lower the learning "
                f"rate (now {config.lr}) or check the data for NaN/inf values."
            )
        loss.backward()
        optimizer.step()
        loss_sum += loss_value * len(idx)
        loss_count += len(idx)
        if on_step is not None:
            on_step(step, traj.total_steps)
        if step % interval == 0 or step == traj.total_steps or step in extra:
            val_loss, val_acc = evaluate(model, x_val, y_val)
            traj.points.append(
                {
                    "step": step,
                    "epoch": step / traj.steps_per_epoch,
                    "beta_eff": _read_beta(probe),
                    "train_loss": loss_sum / loss_count,
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                    "wall_time": time.perf_counter() - start,
                }
            )
            probe.reset_statistics()
            loss_sum, loss_count = 0.0, 0
    traj.seconds = time.perf_counter() - start
    return traj


def _read_beta(probe: NeuralCapacitanceProbe) -> dict[str, float | None]:
    """beta_eff of every tracked variant; None where it is undefined (zero total arc weight)."""
    values: dict[str, float | None] = {}
    for variant in probe.variants:
        try:
            values[variant] = float(probe.beta_eff(variant))
        except ValueError:
            values[variant] = None
    return values


def trajectory_arrays(
    points: Sequence[dict[str, Any]], variant: str, *, max_step: int | None = None
) -> tuple[list[float], list[float]]:
    """``(beta_eff, val_accuracy)`` lists of the points up to ``max_step`` with a defined beta."""
    beta, acc = [], []
    for p in points:
        if max_step is not None and p["step"] > max_step:
            break
        value = p["beta_eff"].get(variant)
        if value is not None and math.isfinite(value):
            beta.append(value)
            acc.append(p["val_accuracy"])
    return beta, acc
