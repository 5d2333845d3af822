"""The study statistics, written once: the 95% percentile interval of bootstrap replicates, the
two-sided bootstrap p-value of a difference, and Holm's step-down correction.

Used by the study (:mod:`ncap.bench.study.stages`), the halving simulation
(:mod:`ncap.bench.simulate`) and the scripts in ``benchmarks/``; numpy only.

>>> percentile_interval(np.arange(101.0))
[2.5, 97.5]
>>> bootstrap_p_value(np.array([1.0, 2.0, 3.0, -1.0]))
0.5
>>> holm({"T1": 0.01, "H1": 0.03, "H2": 0.04})
{'T1': True, 'H1': False, 'H2': False}
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["ALPHA", "bootstrap_p_value", "holm", "percentile_interval"]

ALPHA = 0.05  # the family-wise error rate of the study's confirmatory tests
K = TypeVar("K", bound=Hashable)


def percentile_interval(replicates: ArrayLike) -> list[float]:
    """The 95% percentile interval ``[2.5th, 97.5th percentile]`` of bootstrap replicates
    (numpy's default linear interpolation), as plain floats.

    Non-finite replicates (NaN, +-inf: a statistic undefined on that resample) are left out;
    ``[nan, nan]`` when none is finite. Any shape is read as one flat set of replicates.

    >>> percentile_interval([np.nan, 1.0, 2.0, 3.0, np.inf])
    [1.05, 2.95]
    >>> percentile_interval([np.nan])
    [nan, nan]
    """
    x = np.asarray(replicates, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return [math.nan, math.nan]
    lo, hi = np.percentile(x, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap_p_value(replicates: ArrayLike) -> float:
    """Two-sided bootstrap p-value of "the difference is zero" from replicates ``d*`` of the
    difference: ``min(1, 2 * min(share(d* <= 0), share(d* >= 0)))``.

    The shares are over all replicates: a NaN replicate lies on neither side (it stays in the
    denominator, as in the study's first implementation; so replicates that are all NaN give 0).
    1.0 (no evidence) for no replicates.

    >>> bootstrap_p_value(np.ones(100)), bootstrap_p_value(np.zeros(3)), bootstrap_p_value([])
    (0.0, 1.0, 1.0)
    """
    d = np.asarray(replicates, dtype=np.float64)
    if d.size == 0:
        return 1.0
    return float(min(1.0, 2.0 * min(np.mean(d <= 0), np.mean(d >= 0))))


def holm(pvalues: Mapping[K, float], alpha: float = ALPHA) -> dict[K, bool]:
    """Holm's step-down procedure at family-wise level ``alpha``: which hypotheses are rejected.

    The p-values are taken smallest first; the ``i``-th (from 0, of ``m``) is rejected while every
    p-value so far is ``<= alpha / (m - i)``; the first that is not stops the procedure and no
    later one is rejected. Ties give the same answer in either order. The result maps every name
    of ``pvalues`` (in its order) to True when rejected.

    >>> holm({"a": 0.01, "b": 0.02, "c": 0.04})
    {'a': True, 'b': True, 'c': True}
    >>> holm({"a": 0.2, "b": 0.001}, alpha=0.01)
    {'a': False, 'b': True}
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha}.")
    bad = {k: p for k, p in pvalues.items() if not 0.0 <= p <= 1.0}  # NaN included
    if bad:
        raise ValueError(f"p-values must lie in [0, 1]; got {bad}.")
    order = sorted(pvalues, key=pvalues.__getitem__)
    m = len(order)
    rejected: dict[K, bool] = {}
    stop = False
    for i, name in enumerate(order):
        stop = stop or pvalues[name] > alpha / (m - i)
        rejected[name] = not stop
    return {k: rejected[k] for k in pvalues}
