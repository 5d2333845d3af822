"""How far to trust a ranking's top pick (docs/benchmark-v3-protocol.md, section 5).

Each candidate's calibrated predictive distribution of its final accuracy is a normal in link
space, ``Normal(link_mean, (k * link_sd)^2)`` with ``k`` the shipped split-conformal factor at the
95% level, mapped back (sigmoid for the ``logit`` link, clipped to [0, 1] for ``identity``).
:func:`trust_statement` draws 4000 independent joint samples (``numpy.random.default_rng(0)``) and
reports

- ``p_best``: the share of draws in which the top pick has the highest final accuracy;
- ``expected_regret``: the mean, in accuracy points, of (best final accuracy - the pick's);
- ``warnings``: ``"no better than a coin"`` when ``p_best < 1.5 / k`` (k candidates), and
  ``"cannot be told apart at this budget"`` when the top two candidates' 68% intervals overlap;
- ``calibrated``: False when any candidate's distribution is not calibrated (no shipped factor, or
  a flagged candidate, :mod:`ncap.predict.caveats`).

A score that predicts no sd (the last observed accuracy, LO) gets an empirical distribution
instead (docs/benchmark-v3-protocol.md, section 5 and Deviation 4): ``logit(LO) + r``, r drawn
with replacement from the residuals ``logit(final) - logit(LO)`` that the benchmark recorded at
that budget (:class:`Empirical`).

Two candidates with equal sd, one a clear leader:

>>> lead = Predictive("a", "identity", 0.80, 0.01)
>>> t = trust_statement([lead, Predictive("b", "identity", 0.70, 0.01)])
>>> t.p_best, round(t.expected_regret, 3), t.warnings
(1.0, 0.0, ())
>>> t = trust_statement([lead, Predictive("b", "identity", 0.80, 0.01)])
>>> 0.45 < t.p_best < 0.55, t.warnings
(True, ('no better than a coin', 'cannot be told apart at this budget'))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CHECKED",
    "DRAWS",
    "QUANTILES",
    "SEED",
    "Empirical",
    "Predictive",
    "TrustStatement",
    "exact_p_best_two",
    "sample",
    "trust_statement",
]

DRAWS = 4000
SEED = 0
COIN = "no better than a coin"
APART = "cannot be told apart at this budget"
Z68 = 0.994  # the table's 68% half-width in sds (ncap.predict.recommended.Z)
# An empirical distribution's 68% and 95% intervals: its central quantiles.
QUANTILES = {"68": (0.16, 0.84), "95": (0.025, 0.975)}

# What the calibration check found, per score (benchmarks/trust_calibration.py ->
# benchmarks/results/bench-v2-trust/calibration.json for fit/base; benchmarks/trust_calibration_v3.py
# -> benchmarks/results/bench-v3-trust/calibration.json for the last observed accuracy, the only
# bench-v3 default with a predictive distribution; tests/predict/test_trust.py checks both): a score
# not listed was never checked, and its statement is not called calibrated either.
CHECKED: dict[str, dict[str, Any]] = {
    "fit/base": {
        "calibrated": False,
        "direction": "under",
        "note": (
            "underconfident on bench-v2: the pick was the best more often than P(best) said and "
            "the realised regret was about a third of the expected; read both as conservative "
            "(docs/benchmark.md)"
        ),
    },
    "last-observed": {
        "calibrated": False,
        "direction": "under",
        "note": (
            "underconfident on bench-v3's report half at 20% of T: the pick was the best in 62% "
            "of the subsets where P(best) said 50%, and the realised regret (1.4 points) was "
            "about a third of the expected (4.6); read both as conservative (docs/benchmark.md)"
        ),
    },
}


@dataclass(frozen=True)
class Predictive:
    """One candidate's calibrated predictive distribution of its final accuracy: ``mean`` and
    ``sd`` (already multiplied by the recalibration factor) in ``link`` space ("logit" or
    "identity"); ``interval68`` the 68% interval the table shows (None: computed from ``mean`` and
    ``sd``); ``calibrated`` False when ``sd`` carries no shipped factor or the candidate is
    flagged."""

    name: str
    link: str
    mean: float
    sd: float
    calibrated: bool = True
    interval68: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.link not in ("logit", "identity"):
            raise ValueError(f"link must be 'logit' or 'identity', not {self.link!r}")
        if not (math.isfinite(self.mean) and math.isfinite(self.sd) and self.sd >= 0):
            raise ValueError(f"{self.name}: mean and sd must be finite, sd >= 0")

    def back(self, x: np.ndarray) -> np.ndarray:
        """Link space -> accuracy."""
        if self.link == "logit":
            from scipy.special import expit  # lazy: scipy, only for this statistic

            return expit(x)  # (no overflow at any value)
        return np.clip(x, 0.0, 1.0)

    def interval(self) -> tuple[float, float]:
        """The 68% interval in accuracy (the table's when given)."""
        if self.interval68 is not None:
            return self.interval68
        lo, hi = self.back(np.array([self.mean - Z68 * self.sd, self.mean + Z68 * self.sd]))
        return float(lo), float(hi)

    def draw(self, z: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Draws of the final accuracy from standard normals ``z`` (``u`` unused)."""
        return self.back(self.mean + self.sd * z)


@dataclass(frozen=True)
class Empirical:
    """A final accuracy ``sigmoid(center + r)``, ``r`` drawn with replacement from ``residuals``
    (logit space): for a score without an sd, ``center = logit(LO)`` and the residuals the
    benchmark recorded, ``logit(final) - logit(LO)``. ``mean`` is the median draw's link value
    (what the overlap warning and the runner-up's choice read).

    >>> e = Empirical("a", 0.0, (-1.0, 0.0, 1.0))
    >>> e.mean, [round(v, 3) for v in e.interval()]
    (0.0, [0.336, 0.664])
    """

    name: str
    center: float
    residuals: tuple[float, ...]
    calibrated: bool = True
    link: str = "logit"

    def __post_init__(self) -> None:
        r = np.asarray(self.residuals, dtype=np.float64)
        if not math.isfinite(self.center) or r.size == 0 or not np.isfinite(r).all():
            raise ValueError(f"{self.name}: center and residuals must be finite, residuals given")

    @property
    def mean(self) -> float:
        return float(self.center + np.median(self.residuals))

    def back(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import expit  # lazy: scipy, only for this statistic

        return expit(x)

    def interval(self, level: str = "68") -> tuple[float, float]:
        """The central 68% (or "95") of the distribution, in accuracy."""
        q = np.quantile(np.asarray(self.residuals), QUANTILES[level])
        lo, hi = self.back(self.center + q)
        return float(lo), float(hi)

    def draw(self, z: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Draws of the final accuracy from uniforms ``u`` (``z`` unused)."""
        r = np.asarray(self.residuals, dtype=np.float64)
        idx = np.minimum((u * r.size).astype(np.int64), r.size - 1)
        return self.back(self.center + r[idx])


@dataclass(frozen=True)
class TrustStatement:
    """What :func:`trust_statement` says about the top pick (``pick``)."""

    pick: str
    candidates: int
    p_best: float
    expected_regret: float  # accuracy points (0-100 scale)
    warnings: tuple[str, ...] = ()
    calibrated: bool = True
    draws: int = DRAWS
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "pick": self.pick,
            "candidates": self.candidates,
            "p_best": self.p_best,
            "expected_regret": self.expected_regret,
            "warnings": list(self.warnings),
            "calibrated": self.calibrated,
            "draws": self.draws,
            "notes": list(self.notes),
        }


def sample(
    candidates: Sequence[Predictive | Empirical], draws: int = DRAWS, seed: int = SEED
) -> np.ndarray:
    """``draws`` x k joint draws of the candidates' final accuracies (independent: normals in
    link space, or resampled residuals, mapped back); the same seed gives the same draws. The
    normals are drawn first, so a ranking of normals alone draws what it always drew.

    >>> sample([Predictive("a", "logit", 0.0, 0.0)], draws=2).tolist()
    [[0.5], [0.5]]
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((draws, len(candidates)))
    u = rng.random((draws, len(candidates)))
    return np.column_stack([c.draw(z[:, j], u[:, j]) for j, c in enumerate(candidates)])


def trust_statement(
    candidates: Sequence[Predictive | Empirical],
    pick: int = 0,
    *,
    draws: int = DRAWS,
    seed: int = SEED,
    notes: Sequence[str] = (),
) -> TrustStatement:
    """P(best) and E[regret] of taking ``candidates[pick]`` (by default the first: the ranking's
    top), with the warnings of the module docstring. The top two for the overlap warning are the
    pick and the candidate with the highest predictive mean among the others."""
    k = len(candidates)
    if k < 2:
        raise ValueError("a trust statement needs at least two candidates")
    acc = sample(candidates, draws, seed)
    best = acc.max(axis=1)
    chosen = acc[:, pick]
    p_best = float(np.mean(chosen >= best))  # ties (sd 0, equal means) count for the pick
    regret = float(np.mean(best - chosen)) * 100.0
    warnings = []
    if p_best < 1.5 / k:
        warnings.append(COIN)
    others = [j for j in range(k) if j != pick]
    runner = max(others, key=lambda j: (candidates[j].mean, -j))
    a, b = candidates[pick].interval(), candidates[runner].interval()
    if a[0] <= b[1] and b[0] <= a[1]:
        warnings.append(APART)
    return TrustStatement(
        pick=candidates[pick].name,
        candidates=k,
        p_best=p_best,
        expected_regret=regret,
        warnings=tuple(warnings),
        calibrated=all(c.calibrated for c in candidates),
        draws=draws,
        notes=tuple(notes),
    )


def exact_p_best_two(a: Predictive, b: Predictive) -> float:
    """The exact P(a beats b) for two candidates of the same link (a monotone map, so the order
    is that of the link-space normals; the identity link away from the [0, 1] clip):
    ``Phi((mean_a - mean_b) / sqrt(sd_a^2 + sd_b^2))`` (the check of the Monte-Carlo).

    >>> round(exact_p_best_two(Predictive("a", "identity", 0.6, 0.03),
    ...                        Predictive("b", "identity", 0.6, 0.04)), 6)
    0.5
    """
    from scipy.stats import norm  # lazy: scipy, only for this statistic

    scale = math.hypot(a.sd, b.sd)
    if scale == 0:
        return float(a.mean >= b.mean)
    return float(norm.cdf((a.mean - b.mean) / scale))
