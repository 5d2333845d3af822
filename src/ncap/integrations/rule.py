"""The pruning rule of ncap's Optuna pruner and Ray Tune stopper, without either framework.

A trial is stopped at budget ``b`` (a step both it and its rivals reported) when the upper end of
its predicted final accuracy's ``confidence`` interval (:class:`~ncap.integrations.curve.
FinalPrediction`, the score that predicts one run at that share of the full budget) lies below the
best predicted final accuracy among the other trials *at the same budget* ``b``: it is then, with
that confidence, worse than the best trial. Trials are compared at equal budgets only (the
prediction from ``b`` steps of one trial against the predictions from ``b`` steps of the others,
never a finished trial's final value), so a slow starter is not judged against a finished curve.

The trial with the highest prediction at a budget is never stopped there (its upper end is at
least its own prediction).

>>> from ncap.integrations.curve import FinalPrediction
>>> a = FinalPrediction(0.90, "fit/base", 4, 0.1, {"95": (0.85, 0.94), "68": (0.88, 0.92)})
>>> b = FinalPrediction(0.70, "fit/base", 4, 0.1, {"95": (0.60, 0.80), "68": (0.65, 0.75)})
>>> decide(b, [a], confidence=0.95).prune, decide(a, [b], confidence=0.95).prune
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ncap.integrations.curve import FinalPrediction, check_confidence

__all__ = ["Decision", "EqualBudgetBook", "decide"]


class Decision(NamedTuple):
    prune: bool
    upper: float | None  # the trial's upper end at the confidence
    best: float | None  # the best rival prediction at the same budget
    rivals: int  # trials compared at this budget
    reason: str


def decide(
    own: FinalPrediction | None,
    rivals: Sequence[FinalPrediction],
    *,
    confidence: float = 0.95,
    min_rivals: int = 1,
) -> Decision:
    """Stop when ``own``'s upper end is below the best of ``rivals`` (see the module doc).

    A prediction without an interval (a flagged one: at chance, outside the fit) is never pruned.
    """
    key = check_confidence(confidence)
    if own is None:
        return Decision(False, None, None, len(rivals), "no prediction for this trial yet")
    if len(rivals) < min_rivals:
        return Decision(
            False,
            None,
            None,
            len(rivals),
            f"{len(rivals)} rival(s) at this budget (< {min_rivals})",
        )
    if key not in own.intervals:  # a point estimate claims no confidence
        return Decision(
            False, None, None, len(rivals), "no interval for this trial's prediction: never pruned"
        )
    upper = own.interval(confidence)[1]
    best = max(r.accuracy for r in rivals)
    if upper < best:
        return Decision(
            True,
            upper,
            best,
            len(rivals),
            f"predicted final accuracy {own.accuracy:.3f} ({100 * confidence:g}% up to "
            f"{upper:.3f}) < the best trial's {best:.3f} at step {own.step}",
        )
    return Decision(False, upper, best, len(rivals), "within reach of the best trial")


@dataclass
class EqualBudgetBook:
    """Predictions of many trials at the steps they reported, each computed once.

    ``predict(trial, step)`` is the framework's way to get a trial's prediction from its own
    values up to ``step``; ``steps(trial)`` the steps it reported. :meth:`decide` applies
    :func:`decide` to ``trial`` at ``step`` against every other trial that reported ``step``.
    """

    predict: Callable[[Hashable, int], FinalPrediction | None]
    confidence: float = 0.95
    min_rivals: int = 1
    cache: dict[tuple[Hashable, int], FinalPrediction | None] = field(default_factory=dict)

    def prediction(self, trial: Hashable, step: int) -> FinalPrediction | None:
        key = (trial, int(step))
        if key not in self.cache:
            self.cache[key] = self.predict(trial, int(step))
        return self.cache[key]

    def decide(self, trial: Hashable, step: int, rivals_at_step: Sequence[Hashable]) -> Decision:
        """``rivals_at_step``: the other trials that reported ``step``."""
        own = self.prediction(trial, step)
        preds = [self.prediction(r, step) for r in rivals_at_step if r != trial]
        return decide(
            own,
            [p for p in preds if p is not None],
            confidence=self.confidence,
            min_rivals=self.min_rivals,
        )
