"""Divergence: a fine-tuning whose loss explodes is a failed candidate, not a result.

:class:`DivergenceGuard` is a training callback that reads only the numbers the loop already has
(each step's loss, each evaluation's point), so it costs two comparisons per step. It raises
:class:`~ncap.exceptions.CandidateError` with the step when

- a training loss, validation loss or beta_eff is NaN or infinite (beta_eff overflowing);
- the training loss rises above ``factor`` times the starting loss (the first step's, or the
  chance level ``ln(num_classes)`` when that is larger). The validation loss is not compared: in
  eval mode a batch-norm network's loss can be huge for a few steps while its training is sound.

Cross-entropy at chance is ``ln(num_classes)``; a loss a hundred times that means the model is
confidently wrong on nearly everything, which no learning rate worth keeping produces.
"""

from __future__ import annotations

import math

from ncap.exceptions import CandidateError
from ncap.results import TrajectoryPoint
from ncap.training.callbacks import Callback

__all__ = ["DIVERGENCE_FACTOR", "DivergenceGuard", "divergence"]

DIVERGENCE_FACTOR = 100.0


def divergence(loss: float, reference: float, factor: float = DIVERGENCE_FACTOR) -> str | None:
    """Why ``loss`` counts as diverged against ``reference`` (None when it does not)."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
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
        why = divergence(loss, self.reference or self.chance, self.factor)
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
