"""Synchronous successive halving, the decisions only (no training): budgets, counts, who continues.

Rung budgets ``r_k = min_budget * eta**k`` for k = 0, 1, ... below ``max_budget``, then
``max_budget`` itself. At rung ``k`` every survivor is trained to ``r_k`` and ranked by its score
at that budget; the top ``ceil(len / eta)`` continue (one at the last rung), and the run ends at
the first rung that keeps one candidate. Higher scores are better; a candidate without a score
(None, NaN, inf) ranks below every scored one, and a failed candidate never continues. Ties go to
the candidate named first. ``ncap bench simulate`` (:mod:`ncap.bench.simulate`) replays these
rules (:func:`rank`, :func:`kept_count`, :func:`halving_budgets`) on recorded trajectories, so a
real run takes the decisions the simulation replays, with one caveat on exact ties: the simulation
names the survivors in candidate order at every rung, the live run (:mod:`ncap.ranking.halving`)
in the previous rung's ranking.

>>> halving_budgets(0.25, 2, 1.0)
(0.25, 0.5, 1.0)
>>> decide({"a": 0.5, "b": 0.9, "c": None, "d": 0.7}, ["a", "b", "c", "d"], eta=2, last=False)
RungDecision(ranked=('b', 'd', 'a', 'c'), kept=('b', 'd'), dropped=('a', 'c'))
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import NamedTuple

from ncap.exceptions import ConfigError

__all__ = ["RungDecision", "decide", "halving_budgets", "kept_count", "rank", "rung_steps"]


def halving_budgets(min_budget: float, eta: float, max_budget: float) -> tuple[float, ...]:
    """``min_budget * eta**k`` below ``max_budget``, then ``max_budget`` (in epochs)."""
    if not (0 < min_budget <= max_budget and math.isfinite(max_budget)):
        raise ConfigError(
            f"need 0 < min budget <= max budget (epochs); got {min_budget} and {max_budget}."
        )
    if not eta > 1:
        raise ConfigError(f"eta must be > 1 (2 halves, 3 keeps a third); got {eta}.")
    out: list[float] = []
    budget = float(min_budget)
    while budget < max_budget * (1.0 - 1e-9):
        out.append(budget)
        budget *= eta
    return (*out, float(max_budget))


def rung_steps(budgets: Sequence[float], steps_per_epoch: int) -> tuple[int, ...]:
    """The training step each rung ends at; refuses budgets that round to the same step."""
    steps = tuple(max(1, round(b * steps_per_epoch)) for b in budgets)
    if any(a >= b for a, b in zip(steps, steps[1:])):
        raise ConfigError(
            f"the rung budgets {budgets} epochs end at steps {steps} ({steps_per_epoch} steps per "
            "epoch), which are not increasing; raise --min-budget or lower --eta."
        )
    return steps


class RungDecision(NamedTuple):
    ranked: tuple[str, ...]  # best first
    kept: tuple[str, ...]
    dropped: tuple[str, ...]


def kept_count(scored: int, eta: float, last: bool) -> int:
    """How many of ``scored`` candidates continue: ``ceil(scored / eta)``, or one at the last rung."""
    return 1 if last else math.ceil(scored / eta)


def rank(
    scores: Mapping[Hashable, float | None],
    order: Sequence[Hashable],
    failed: Collection[Hashable] = (),
) -> tuple[Hashable, ...]:
    """``order`` best first: higher score first; a candidate without a finite score, or ``failed``,
    after every scored one; ties (failures included) to the candidate named first in ``order``."""
    position = {name: i for i, name in enumerate(order)}

    def key(name: Hashable):
        value = scores.get(name)
        ok = value is not None and math.isfinite(value) and name not in failed
        return (0, -float(value), position[name]) if ok else (1, 0.0, position[name])

    return tuple(sorted(order, key=key))


def decide(
    scores: Mapping[str, float | None],
    order: Sequence[str],
    *,
    eta: float,
    last: bool,
    failed: Collection[str] = (),
) -> RungDecision:
    """Rank the candidates of a rung (``order``: names, first named wins ties) and keep the top
    ``ceil(n / eta)`` (one when ``last``); ``failed`` ones are dropped whatever the count."""
    ranked = rank(scores, order, failed)
    n_kept = kept_count(len(ranked), eta, last)
    kept = tuple(n for n in ranked[:n_kept] if n not in failed)
    return RungDecision(ranked, kept, tuple(n for n in ranked if n not in kept))
