"""FinetuneConfig: the one definition of the early fine-tuning settings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ncap.capacitance.variants import VARIANTS, check_variants
from ncap.exceptions import ConfigError

__all__ = ["CHEAP_VARIANTS", "OPTIMIZERS", "FinetuneConfig", "setting"]

OPTIMIZERS = ("adam", "sgd", "adamw")
# tracked per step by default: the variants whose bookkeeping is cheap (abs-mean materialises an
# n_in x n_mid x n_out tensor per layer pair per batch: --variants or --fixed-batch asks for it)
CHEAP_VARIANTS = ("signed", "mean-abs")
# fields added after ncap 0.2: left out of to_dict() when unset (None), so the settings of runs
# written before them (and of the benchmark plans, which pin them to None) compare equal
_ADDED_LATER = ("fixed_batch", "val_share", "eval_anchor", "max_input_size")


def setting(
    default: Any,
    help: str,
    *,
    kind: str,
    recipe: str | None = "",
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    flag: bool = True,
) -> Any:
    """A field of :class:`FinetuneConfig` with what the command line and the recipe need to know.

    ``kind`` is the value's type: ``int``, ``float``, ``str``, ``ints`` (a tuple of integers) or
    ``names`` (a tuple of strings); a ``None`` default makes it optional. ``recipe`` is its key in a
    recipe's ``[run]`` table ("" = the field's name, None = not in ``[run]``); ``flag=False``
    keeps it off the command line.
    """
    return field(
        default=default,
        metadata={
            "help": help,
            "kind": kind,
            "recipe": recipe,
            "choices": choices,
            "metavar": metavar,
            "flag": flag,
        },
    )


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of the early fine-tuning (paper defaults: batch 64, learning rate 1e-3).

    The one definition of these settings: the command line's flags (``--batch-size`` ...), a
    recipe's ``[run]`` keys and the benchmark plans are derived from these fields.

    >>> FinetuneConfig(epochs=0.5).total_steps(n_train=640)
    5
    """

    epochs: float = setting(
        1.0, "fine-tuning budget in epochs", kind="float", recipe="budget_epochs"
    )
    steps: int | None = setting(
        None, "fine-tuning budget in training steps (overrides --epochs)", kind="int"
    )
    eval_every: int | None = setting(
        None,
        "evaluate every STEPS training steps (default: at 1/8, 1/4, 1/2 and the end of the "
        "budget, then at every doubling of it and at the end of the run)",
        kind="int",
        metavar="STEPS",
    )
    batch_size: int = setting(64, "mini-batch size (as in the paper)", kind="int")
    lr: float = setting(1e-3, "learning rate (as in the paper)", kind="float")
    optimizer: str = setting("adam", "optimiser for the backbone", kind="str", choices=OPTIMIZERS)
    momentum: float = setting(0.9, "momentum of the sgd optimiser", kind="float")
    weight_decay: float = setting(0.0, "weight decay", kind="float")
    probe_hidden: tuple[int, ...] = setting(
        (128, 64, 32),
        "hidden widths of the frozen probe, >= 2",
        kind="ints",
        metavar="W1,W2,...",
    )
    probe_activation: str = setting("relu", "activation of the frozen probe", kind="str")
    variants: tuple[str, ...] = setting(
        CHEAP_VARIANTS,
        "beta_eff variants the probe records per step (abs-mean costs a large tensor per batch: "
        "add it here, or measure it with --fixed-batch)",
        kind="names",
        choices=VARIANTS,
        metavar="V1,V2,...",
    )
    fixed_batch: int | None = setting(
        None,
        "measure the beta_eff variants not in --variants (e.g. the costly abs-mean) on a fixed "
        "batch of this many training images at evaluation points only (beta_eff_fixed); the "
        "prediction reads a variant from there when it is not tracked per step (default: off)",
        kind="int",
        metavar="IMAGES",
    )
    seed: int = setting(0, "seed of data order, split and probe", kind="int")
    max_val: int | None = setting(
        None, "evaluate on at most this many validation images (default: all)", kind="int"
    )
    val_share: float | None = setting(
        0.125,
        "cap the validation images of the budget's last evaluation (and of the run's last one) at "
        "SHARE x the images the budget trains on (batch x steps), the other evaluations use a "
        "fixed 1/8 of those (so evaluating costs under a tenth of the training); 0: every "
        "evaluation on all validation images (up to --max-val)",
        kind="float",
        metavar="SHARE",
    )
    eval_anchor: int | None = setting(
        None,
        "the step the evaluation schedule and --val-share are laid out for (default: the "
        "budget's last step; a longer run that must repeat a shorter budget's points sets it)",
        kind="int",
        recipe=None,
        flag=False,
    )
    input_size: int | None = setting(
        None,
        "square input size for every model (the paper used 32 for CIFAR/SVHN/Fashion-MNIST); "
        "default: each model's own pretrained size",
        kind="int",
        recipe=None,  # per dataset in a recipe: [[datasets]] input_size
    )

    max_input_size: int | None = setting(
        None,
        "cap every model's input size at this many pixels per side (an ImageNet model otherwise "
        "gets its own 224 or 299 px, upscaling small images at a large cost on a CPU); default: "
        "no cap",
        kind="int",
    )

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
        if self.val_share is not None and not (
            self.val_share >= 0 and math.isfinite(self.val_share)
        ):
            raise ConfigError(
                f"val_share must be a non-negative number (0: no cap), got {self.val_share!r}."
            )
        if self.val_share == 0:  # 0 and None both mean no cap: one stored form
            object.__setattr__(self, "val_share", None)
        if self.eval_anchor is not None and self.eval_anchor < 1:
            raise ConfigError(f"eval_anchor must be >= 1 step, got {self.eval_anchor}.")
        if self.fixed_batch is not None and self.fixed_batch < 1:
            raise ConfigError(f"fixed_batch must be >= 1 image, got {self.fixed_batch}.")
        if self.max_val is not None and self.max_val < 1:
            raise ConfigError(
                f"max_val must be >= 1 validation image (leave it out to evaluate on all), got "
                f"{self.max_val}."
            )
        if self.input_size is not None and self.input_size < 1:
            raise ConfigError(f"input_size must be >= 1 pixel, got {self.input_size}.")
        if self.max_input_size is not None and self.max_input_size < 1:
            raise ConfigError(f"max_input_size must be >= 1 pixel, got {self.max_input_size}.")
        try:
            check_variants(self.variants)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def steps_per_epoch(self, n_train: int) -> int:
        return max(1, math.ceil(n_train / self.batch_size))

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, int(round(self.epochs * self.steps_per_epoch(n_train))))

    def interval(self, n_train: int) -> int | None:
        """The fixed evaluation interval (``eval_every``); None under the default schedule
        (:mod:`ncap.training.schedule`)."""
        return self.eval_every

    def anchor_steps(self, n_train: int) -> int:
        """The step the evaluation schedule is laid out for: ``eval_anchor``, else the budget's
        last step."""
        return self.eval_anchor if self.eval_anchor is not None else self.total_steps(n_train)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings; fields added later are left out at their default (None), so the
        settings of runs written before them compare equal and those runs still resume."""
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in self.__dict__.items()
            if not (k in _ADDED_LATER and v is None)
        }
