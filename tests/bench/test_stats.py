"""ncap.bench.stats: the percentile interval, the bootstrap p-value and Holm's correction, each
against an independent definition."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncap.bench.stats import bootstrap_p_value, holm, percentile_interval

# ---------------------------------------------------------------- percentile interval


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_is_numpys_percentile_of_the_finite_replicates(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=1000)
    assert percentile_interval(x) == [float(v) for v in np.percentile(x, [2.5, 97.5])]
    y = x.copy()
    y[::7] = np.nan
    y[3] = np.inf
    y[5] = -np.inf
    finite = y[np.isfinite(y)]
    assert finite.size == 1000 - len(range(0, 1000, 7)) - 2
    assert percentile_interval(y) == [float(v) for v in np.percentile(finite, [2.5, 97.5])]
    assert percentile_interval(y) == [float(v) for v in np.nanpercentile(y[np.abs(y) != np.inf], [2.5, 97.5])]  # fmt: skip


def test_interval_by_hand_and_when_nothing_is_finite():
    # 0..100: the 2.5th and 97.5th percentiles are 2.5 and 97.5 (linear interpolation)
    assert percentile_interval(np.arange(101)) == [2.5, 97.5]
    # one replicate: a point interval
    assert percentile_interval([0.3, np.nan]) == [0.3, 0.3]
    lo, hi = percentile_interval([np.nan, np.inf])
    assert math.isnan(lo) and math.isnan(hi)
    lo, hi = percentile_interval([])
    assert math.isnan(lo) and math.isnan(hi)
    assert all(type(v) is float for v in percentile_interval(np.arange(5)))


# ---------------------------------------------------------------- p-value


def test_p_value_on_hand_made_replicates():
    # 3 of 4 above zero, 1 below: 2 * min(1/4, 3/4)
    assert bootstrap_p_value(np.array([1.0, 2.0, 3.0, -1.0])) == 0.5
    # all on one side
    assert bootstrap_p_value(np.ones(100)) == 0.0
    assert bootstrap_p_value(-np.ones(100)) == 0.0
    # zeros count on both sides: a difference that is always 0 is never significant
    assert bootstrap_p_value(np.zeros(10)) == 1.0
    # 10 replicates: 1 negative, 1 zero, 8 positive -> 2 * min(2/10, 9/10)
    assert bootstrap_p_value([-0.5, 0.0, 1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(0.4)
    # balanced: capped at 1
    assert bootstrap_p_value([-1.0, 1.0]) == 1.0
    # a NaN replicate lies on neither side and stays in the denominator: 2 * min(1/4, 2/4)
    assert bootstrap_p_value([-1.0, 1.0, 2.0, np.nan]) == 0.5
    # no replicates: no evidence (the study's first implementation gave 1.0 here too)
    assert bootstrap_p_value([]) == 1.0


# ---------------------------------------------------------------- Holm


def closed_testing(p: list[float], alpha: float) -> list[bool]:
    """Holm by its definition as a closed test (Marcus, Peritz & Gabriel 1976; Holm 1979):
    H_i is rejected iff every intersection hypothesis H_S with i in S is rejected by Bonferroni,
    i.e. min over S of p <= alpha / |S|. Brute force over all subsets."""
    m = len(p)
    out = []
    for i in range(m):
        others = [j for j in range(m) if j != i]
        out.append(
            all(
                min(p[j] for j in (i, *rest)) <= alpha / (1 + len(rest))
                for r in range(m)
                for rest in itertools.combinations(others, r)
            )
        )
    return out


def adjusted(p: list[float]) -> list[float]:
    """Holm's adjusted p-values: max over the j smallest of min(1, (m - j) p_(j))."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adj, running = [0.0] * m, 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[i]))
        adj[i] = running
    return adj


pvalue = st.one_of(
    st.floats(0.0, 1.0, allow_nan=False),
    # values on the thresholds alpha / k, where <= against < matters
    st.sampled_from([0.05 / k for k in range(1, 8)] + [0.0, 1.0]),
)


@settings(max_examples=300, deadline=None)
@given(p=st.lists(pvalue, min_size=1, max_size=7), alpha=st.sampled_from([0.01, 0.05, 0.1]))
def test_holm_rejects_exactly_what_the_closed_test_rejects(p, alpha):
    names = [f"h{i}" for i in range(len(p))]
    ours = holm(dict(zip(names, p)), alpha)
    assert list(ours) == names  # every hypothesis, in the given order
    assert [ours[n] for n in names] == closed_testing(p, alpha)
    # and as adjusted p-values (away from the thresholds, where rounding could differ)
    for n, a in zip(names, adjusted(p)):
        if abs(a - alpha) > 1e-12:
            assert ours[n] == (a <= alpha)
    # Holm rejects at least what Bonferroni rejects, and only what unadjusted tests reject
    for n, q in zip(names, p):
        if q <= alpha / len(p):
            assert ours[n]
        if ours[n]:
            assert q <= alpha


def test_holm_by_hand_and_bad_input():
    assert holm({"a": 0.01, "b": 0.02, "c": 0.04}) == {"a": True, "b": True, "c": True}
    # 0.03 > 0.05 / 2 stops the procedure: c is not rejected although 0.04 <= 0.05
    assert holm({"a": 0.01, "b": 0.03, "c": 0.04}) == {"a": True, "b": False, "c": False}
    assert holm({}) == {}
    with pytest.raises(ValueError, match="p-values"):
        holm({"a": float("nan")})
    with pytest.raises(ValueError, match="alpha"):
        holm({"a": 0.01}, alpha=0.0)
