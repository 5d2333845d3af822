"""Successive halving replayed on scores, the decisions and their compute only: rung budgets as
fractions of T, the schedule, one run (:func:`successive_halving`, with every rung's decision) and
many runs at once (:func:`halving_batch`, for the bootstrap), with the rules of
:mod:`ncap.ranking.halving_core`. The protocol is in :mod:`ncap.bench.simulate`'s docstring.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ncap.ranking import halving_core as core

__all__ = [
    "DEFAULT_SETTINGS",
    "FULL",
    "TRAIN_ALL",
    "HalvingResult",
    "HalvingSetting",
    "Rung",
    "halving_batch",
    "halving_budgets",
    "halving_schedule",
    "rank_candidates",
    "regret",
    "successive_halving",
]

TRAIN_ALL = "train-all"  # the setting of the baseline: every candidate trained to T
FULL = 1.0  # the full budget T, as a fraction of T


def _key(budget: float) -> float:
    """Budgets are rounded so that 0.025 * 3 and 0.075 are the same cache key."""
    return round(float(budget), 10)


@dataclass(frozen=True)
class HalvingSetting:
    """One scheduler configuration: ``eta`` and the minimum and maximum budget (fractions of T)."""

    eta: float = 2
    min_budget: float = 0.025
    max_budget: float = 0.2

    @property
    def budgets(self) -> tuple[float, ...]:
        return halving_budgets(self.min_budget, self.eta, self.max_budget)

    @property
    def name(self) -> str:
        return f"eta{self.eta:g} {100 * self.min_budget:g}%-{100 * self.max_budget:g}%"


# eta 2 or 3, from 2.5% or 5% of T, up to 20% of T (the benchmark's largest early budget) or T
DEFAULT_SETTINGS = tuple(
    HalvingSetting(eta, lo, hi)
    for eta, lo, hi in itertools.product((2, 3), (0.025, 0.05), (0.2, 1.0))
)


@dataclass(frozen=True)
class Rung:
    """One rung: who was scored at ``budget`` (best first), who continued, who was dropped."""

    budget: float
    ranked: tuple[int, ...]  # candidates scored at this rung, best first
    scores: tuple[float | None, ...]  # their scores, in the same order (None = failed)
    promoted: tuple[int, ...]  # the first len(promoted) of ``ranked``
    dropped: tuple[tuple[int, float | None], ...]  # (candidate, score) for the rest


@dataclass(frozen=True)
class HalvingResult:
    """The rungs, the pick and the compute of one successive-halving run (see module doc)."""

    n: int
    eta: float
    budgets: tuple[float, ...]
    rungs: tuple[Rung, ...]
    pick: int
    trained_to: tuple[float, ...]  # per candidate, as a fraction of T (the pick: 1.0)
    compute: float  # fraction of training every candidate to T (cost-weighted with ``costs``)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "eta": self.eta,
            "budgets": list(self.budgets),
            "pick": self.pick,
            "compute": self.compute,
            "trained_to": list(self.trained_to),
            "rungs": [
                {
                    "budget": r.budget,
                    "ranked": list(r.ranked),
                    "scores": list(r.scores),
                    "promoted": list(r.promoted),
                    "dropped": [list(d) for d in r.dropped],
                }
                for r in self.rungs
            ],
        }


def halving_budgets(min_budget: float, eta: float, max_budget: float = FULL) -> tuple[float, ...]:
    """``min_budget * eta**k`` for k = 0, 1, ..., capped at ``max_budget`` (its last element):
    :func:`ncap.ranking.halving_core.halving_budgets` in fractions of T, rounded to 10 digits."""
    if not 0.0 < min_budget <= max_budget <= FULL:
        raise ValueError(
            f"need 0 < min_budget <= max_budget <= 1 (fractions of T); got {min_budget}, "
            f"{max_budget}."
        )
    return tuple(_key(b) for b in core.halving_budgets(min_budget, eta, max_budget))


def _check(n: int, budgets: Sequence[float], eta: float) -> tuple[float, ...]:
    budgets = tuple(float(b) for b in budgets)
    if n < 1:
        raise ValueError(f"successive halving needs at least one candidate; got n={n}.")
    if eta <= 1:
        raise ValueError(f"eta must be > 1; got {eta}.")
    if not budgets or any(not 0.0 < b <= FULL for b in budgets):
        raise ValueError(f"budgets must be fractions of T in (0, 1]; got {budgets}.")
    if any(b >= c for b, c in zip(budgets, budgets[1:])):
        raise ValueError(f"budgets must be strictly increasing; got {budgets}.")
    return budgets


def halving_schedule(n: int, budgets: Sequence[float], eta: float) -> list[tuple[float, int, int]]:
    """The rungs ``(budget, candidates scored, candidates kept)`` for ``n`` candidates.

    The counts depend only on ``n``, the budgets and ``eta``: ``kept = ceil(scored / eta)``, or 1 at
    the last budget; the schedule ends at the first rung that keeps one candidate. Empty for n=1.
    """
    budgets = _check(n, budgets, eta)
    schedule: list[tuple[float, int, int]] = []
    alive = n
    for k, budget in enumerate(budgets):
        if alive <= 1:
            break
        kept = core.kept_count(alive, eta, last=k == len(budgets) - 1)
        schedule.append((budget, alive, kept))
        alive = kept
    return schedule


def _as_scores(values: Any, n: int) -> np.ndarray:
    """Scores as float64 with NaN for failures (None, NaN, +-inf)."""
    if not isinstance(values, np.ndarray):
        values = [np.nan if v is None else float(v) for v in values]
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"scores_at must give {n} scores (one per candidate); got {arr.shape}.")
    return np.where(np.isfinite(arr), arr, np.nan)


def rank_candidates(scores: np.ndarray, candidates: Sequence[int]) -> list[int]:
    """``candidates`` best first by :func:`ncap.ranking.halving_core.rank`: higher score first,
    failures (NaN) last, ties by lower index (the candidates are named in index order)."""
    values = {c: None if np.isnan(scores[c]) else float(scores[c]) for c in candidates}
    return list(core.rank(values, sorted(candidates)))


def successive_halving(
    scores_at: Callable[[int], Sequence[float | None] | np.ndarray] | Sequence[Any],
    n: int,
    budgets: Sequence[float],
    eta: float = 2,
    *,
    costs: Sequence[float] | None = None,
) -> HalvingResult:
    """Synchronous successive halving over candidates ``0..n-1`` (see the module docstring).

    Parameters
    ----------
    scores_at
        ``scores_at(k)``: the scores of all ``n`` candidates at rung ``k``'s budget
        ``budgets[k]`` (higher is better; ``None``/NaN = failed, ranked last); only the
        survivors' entries are read. A sequence indexed by ``k`` works too.
    n
        The number of candidates.
    budgets
        Strictly increasing rung budgets, fractions of the full budget T; the last is the maximum.
    eta
        The reduction factor: the top ``ceil(len / eta)`` survivors of a rung continue.
    costs
        Optional per-candidate cost of training to T (e.g. seconds); the compute is then weighted
        by it. Default: every candidate costs the same.
    """
    budgets = _check(n, budgets, eta)
    get = scores_at if callable(scores_at) else scores_at.__getitem__
    weights = np.ones(n) if costs is None else np.asarray(costs, dtype=np.float64)
    if weights.shape != (n,) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"costs must be {n} non-negative numbers, not all zero.")
    trained = np.zeros(n)
    rungs: list[Rung] = []
    alive = list(range(n))
    for k, (budget, _, kept) in enumerate(halving_schedule(n, budgets, eta)):
        scores = _as_scores(get(k), n)
        ranked = rank_candidates(scores, alive)
        trained[ranked] = budget
        as_list = [None if np.isnan(scores[c]) else float(scores[c]) for c in ranked]
        rungs.append(
            Rung(
                budget=budget,
                ranked=tuple(ranked),
                scores=tuple(as_list),
                promoted=tuple(ranked[:kept]),
                dropped=tuple(zip(ranked[kept:], as_list[kept:])),
            )
        )
        alive = ranked[:kept]
    pick = alive[0]
    trained[pick] = FULL
    return HalvingResult(
        n=n,
        eta=eta,
        budgets=budgets,
        rungs=tuple(rungs),
        pick=pick,
        trained_to=tuple(float(t) for t in trained),
        compute=float((trained * weights).sum() / weights.sum()),
    )


def halving_batch(
    rows: Sequence[np.ndarray], schedule: Sequence[tuple[float, int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Many halving runs at once, with the rules of :func:`successive_halving` (those of
    :mod:`ncap.ranking.halving_core`, vectorised: a test checks that they agree).

    ``rows[k]`` has shape (B, n): the scores of the n candidates of each of B problems at rung k
    (NaN = failed). Returns the picks (B,) and the budget each candidate was trained to (B, n).
    """
    B, n = rows[0].shape if rows else (1, 1)
    alive = np.broadcast_to(np.arange(n), (B, n)).copy()
    trained = np.zeros((B, n))
    for (budget, _, kept), scores in zip(schedule, rows):
        s = np.take_along_axis(np.asarray(scores, dtype=np.float64), alive, axis=1)
        failed = ~np.isfinite(s)
        order = np.lexsort((alive, np.where(failed, 0.0, -s), failed), axis=-1)
        np.put_along_axis(trained, alive, budget, axis=1)
        alive = np.take_along_axis(alive, order[:, :kept], axis=1)
    picks = alive[:, 0]
    trained[np.arange(B), picks] = FULL
    return picks, trained


def regret(truth: Sequence[float], pick: int) -> float:
    """Accuracy points lost by taking ``pick`` instead of the truly best candidate."""
    truth = np.asarray(truth, dtype=np.float64)
    return float(100.0 * (truth.max() - truth[pick]))
