"""When a fine-tuning run evaluates, and on how many validation images (no torch).

The plan of a run is a mapping ``step -> validation images`` (the first that many of the
validation split, a seeded random hold-out, so a smaller set is a fixed subset of a larger one).
It is a pure function of the settings, so a run continued from a checkpoint evaluates where an
uninterrupted run would.

Where (``FinetuneConfig.eval_every``):

- every ``eval_every`` steps when it is set (ncap 0.2's default was 8 times per epoch);
- by default, at 1/8, 1/4, 1/2 and all of the *anchor* ``A`` (the budget's last step), then at
  ``2A, 4A, ...``: dense early, sparse later, evenly spaced in log(epoch), which is what the
  slope of the early accuracy and the beta_eff fits read;
- always at the run's last step and at the ``extra`` steps a caller asks for (the budget's end
  inside a longer run, the rungs of successive halving, the benchmark's dense part).

On how many images (``FinetuneConfig.val_share``): the *full* evaluations (the anchor, the run's
last step, the extra steps) use at most ``ceil(val_share * batch_size * A)`` validation images, but
at least :data:`MIN_FULL` (256, or the whole split; never more than ``max_val``), every other point a fixed 1/``SUBSET_DIVISOR`` of those. An evaluation
image costs about a third of a training image (a forward pass against forward and backward), so
at the default share of 1/8 the default plan evaluates ``1/8 * (1 + 3/8)`` of the budget's
training images, about 7% of its training time (``benchmarks/overhead.py``). With ``val_share`` None every point uses all
validation images up to ``max_val`` (ncap 0.2).

>>> plan = eval_plan(FinetuneConfig(), n_train=3000, n_val=1000)  # 47 steps, batch 64
>>> plan
{6: 47, 12: 47, 24: 47, 47: 376}
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ncap.training.config import FinetuneConfig

__all__ = [
    "DEFAULT_FRACTIONS",
    "MIN_FULL",
    "SUBSET_DIVISOR",
    "eval_plan",
    "eval_steps",
    "val_images",
]

DEFAULT_FRACTIONS = (8, 4, 2)  # the default schedule's points before the anchor: A/8, A/4, A/2
SUBSET_DIVISOR = 8  # points other than the full evaluations use 1/8 of their images
# a full evaluation uses at least this many images (or the whole split): the last observed
# accuracy is the recommended score's main feature, and bench-v2 measured it on 450-500 images
MIN_FULL = 256


def eval_steps(
    config: FinetuneConfig, n_train: int, *, total: int | None = None, extra: Iterable[int] = ()
) -> list[int]:
    """The steps (ascending, within ``1..total``) a run of ``total`` steps (default: the
    config's) evaluates at."""
    total = config.total_steps(n_train) if total is None else total
    steps = {total} | {s for s in extra if 1 <= s <= total}
    if config.eval_every is not None:
        steps |= set(range(config.eval_every, total + 1, config.eval_every))
    else:
        anchor = config.anchor_steps(n_train)
        steps |= {math.ceil(anchor / d) for d in DEFAULT_FRACTIONS} | {anchor}
        doubled = anchor
        while doubled * 2 <= total:
            doubled *= 2
            steps.add(doubled)
    return sorted(s for s in steps if 1 <= s <= total)


def val_images(config: FinetuneConfig, n_train: int, n_val: int) -> tuple[int, int]:
    """``(full, subset)``: validation images of a full evaluation and of any other point."""
    full = n_val if config.max_val is None else min(n_val, config.max_val)
    if config.val_share is None:
        return full, full
    cap = math.ceil(config.val_share * config.batch_size * config.anchor_steps(n_train))
    full = max(1, min(full, max(cap, MIN_FULL)))
    return full, max(1, math.ceil(full / SUBSET_DIVISOR))


def eval_plan(
    config: FinetuneConfig,
    n_train: int,
    n_val: int,
    *,
    total: int | None = None,
    extra: Iterable[int] = (),
) -> dict[int, int]:
    """``step -> validation images`` of every evaluation of a run of ``total`` steps (default:
    the config's budget); see the module docstring."""
    total = config.total_steps(n_train) if total is None else total
    extra = tuple(extra)
    full, subset = val_images(config, n_train, n_val)
    full_steps = {total, config.anchor_steps(n_train), *extra}
    return {
        s: full if s in full_steps else subset
        for s in eval_steps(config, n_train, total=total, extra=extra)
    }
