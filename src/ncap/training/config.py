"""FinetuneConfig: the one definition of the early fine-tuning settings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ncap.capacitance.variants import VARIANTS
from ncap.exceptions import ConfigError

__all__ = ["OPTIMIZERS", "FinetuneConfig"]

OPTIMIZERS = ("adam", "sgd", "adamw")


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
    input_size: int | None = None  # square input size for every model; None: each model's own

    def __post_init__(self) -> None:
        if not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ConfigError(f"epochs must be a positive number, got {self.epochs!r}.")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be positive and finite, got {self.lr!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}.")
        if self.eval_every is not None and self.eval_every < 1:
            raise ConfigError(f"eval_every must be >= 1 step, got {self.eval_every}.")
        if self.input_size is not None and self.input_size < 1:
            raise ConfigError(f"input_size must be >= 1 pixel, got {self.input_size}.")

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
