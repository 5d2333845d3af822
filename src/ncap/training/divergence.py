"""Divergence: a fine-tuning whose loss explodes is a failed candidate, not a result.

:class:`DivergenceGuard` is a training callback that reads only the numbers the loop already has
(each step's loss, each evaluation's point), so it costs two comparisons per step. It raises
:class:`~ncap.exceptions.CandidateError` with the step when

- a training loss, validation loss or beta_eff is NaN or infinite (beta_eff overflowing);
- the training loss rises above ``factor`` times the starting loss (the first step's, or the
  chance level ``ln(num_classes)`` when that is larger). The validation loss is not compared: in
  eval mode a batch-norm network's loss can be huge for a few steps while its training is sound;
- a training loss is above :data:`OVERFLOW_FACTOR` times the chance level, from the
  first step on: the model's outputs are overflow-sized (a loss of 1e29 at step 1 never rises
  100 times, yet every number computed from it is meaningless).

Cross-entropy at chance is ``ln(num_classes)``; a loss a hundred times that means the model is
confidently wrong on nearly everything, which no learning rate worth keeping produces.
"""

from __future__ import annotations

import math

from ncap.exceptions import CandidateError
from ncap.results import TrajectoryPoint
from ncap.training.callbacks import Callback

__all__ = ["DIVERGENCE_FACTOR", "OVERFLOW_FACTOR", "DivergenceGuard", "divergence"]

DIVERGENCE_FACTOR = 100.0
# bench-v1's 84 runs peak at 1.4 x chance (3.19 for 5 classes); 1e4 x chance is a model whose
# logits are thousands of times too large: overflow, not learning
OVERFLOW_FACTOR = 1e4


def divergence(
    loss: float, reference: float, factor: float = DIVERGENCE_FACTOR, chance: float | None = None
) -> str | None:
    """Why ``loss`` counts as diverged against ``reference`` (None when it does not); with
    ``chance`` (ln of the class count) also a loss over ``OVERFLOW_FACTOR`` times it."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if chance is not None and loss > OVERFLOW_FACTOR * chance:
        return (
            f"the loss is {loss:.3g}, over {OVERFLOW_FACTOR:g} x chance ({chance:.3g}): the model's "
            "outputs overflow (scale its features down, e.g. with a normalisation layer)"
        )
    if loss > factor * reference:
        return f"the loss is {loss:.3g}, over {factor:g} x its starting value {reference:.3g}"
    return None


class DivergenceGuard(Callback):
    """Raise :class:`CandidateError` when the run diverges (see the module docstring)."""

    def __init__(self, num_classes: int, *, lr: float, factor: float = DIVERGENCE_FACTOR) -> None:
        self.chance = math.log(max(num_classes, 2))
        self.lr, self.factor = lr, factor
        self.reference: float | None = None
        self.step = 0

    def _fail(self, why: str, step: int) -> None:
        raise CandidateError(
            f"training diverged at step {step}: {why}; lower the learning rate (now {self.lr:g}) "
            "or check the data for NaN/inf values."
        )

    def on_step_end(self, step: int, loss: float, batch_size: int) -> None:
        self.step = step
        if self.reference is None and math.isfinite(loss):
            self.reference = max(loss, self.chance)
        why = divergence(loss, self.reference or self.chance, self.factor, self.chance)
        if why is not None:
            self._fail(why, step)

    def state_dict(self) -> dict[str, float | int | None]:
        """The starting loss the later ones are compared with (a continued run keeps it)."""
        return {"reference": self.reference, "step": self.step}

    def load_state_dict(self, state: dict[str, float | int | None]) -> None:
        reference = state.get("reference")
        self.reference = None if reference is None else float(reference)
        self.step = int(state.get("step") or 0)

    def on_evaluate(self, point: TrajectoryPoint) -> None:
        # only a non-finite validation loss: early in training, a network with batch norm can
        # have a huge one in eval mode (running statistics not settled yet) and still be fine
        if not math.isfinite(point["val_loss"]):
            self._fail(f"the validation loss is {point['val_loss']}", point["step"])
        for variant, value in point["beta_eff"].items():
            if value is not None and not math.isfinite(value):
                self._fail(f"beta_eff ({variant}) overflowed to {value}", point["step"])
