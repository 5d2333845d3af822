"""The trust statement (ncap.predict.trust) against exact and brute-force answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm

from ncap.predict.trust import (
    APART,
    COIN,
    DRAWS,
    Empirical,
    Predictive,
    exact_p_best_two,
    sample,
    trust_statement,
)


def _two(d: float, s1: float, s2: float, link: str = "identity") -> list[Predictive]:
    base = 0.6 if link == "identity" else 0.4
    return [Predictive("a", link, base + d, s1), Predictive("b", link, base, s2)]


@pytest.mark.parametrize("link", ["identity", "logit"])
@pytest.mark.parametrize(
    ("d", "s1", "s2"),
    [(0.0, 0.02, 0.03), (0.02, 0.02, 0.03), (0.05, 0.01, 0.04), (-0.03, 0.03, 0.01)],
)
def test_two_candidates_match_the_exact_normal_answer(d, s1, s2, link):
    cands = _two(d, s1, s2, link)
    exact = norm.cdf(d / math.hypot(s1, s2))
    assert exact_p_best_two(*cands) == pytest.approx(exact)
    got = trust_statement(cands).p_best
    # 4000 draws: the Monte-Carlo error is at most sqrt(0.25 / 4000) = 0.0079 (4 s.e.: 0.032)
    assert abs(got - exact) < 0.032


def test_expected_regret_matches_the_exact_folded_normal():
    # identity link, far from the clip: regret = E[max(0, B - A)] = s*phi(d/s) - d*Phi(-d/s)
    d, s1, s2 = 0.01, 0.02, 0.03
    s = math.hypot(s1, s2)
    exact = 100 * (s * norm.pdf(d / s) - d * norm.cdf(-d / s))
    got = trust_statement(_two(d, s1, s2)).expected_regret
    assert got == pytest.approx(exact, rel=0.08)


def test_many_candidates_against_brute_force():
    rng = np.random.default_rng(5)
    cands = [
        Predictive(f"m{j}", "logit", float(m), float(s))
        for j, (m, s) in enumerate(zip(rng.normal(0.5, 0.3, 6), rng.uniform(0.05, 0.3, 6)))
    ]
    t = trust_statement(cands, pick=2)
    # an independent computation: numerical integration of P(X_2 > max of the rest)
    x = np.linspace(-4, 4, 20001)
    dens = norm.pdf(x, cands[2].mean, cands[2].sd)
    others = np.prod([norm.cdf(x, c.mean, c.sd) for j, c in enumerate(cands) if j != 2], axis=0)
    exact = float(np.trapezoid(dens * others, x))
    assert abs(t.p_best - exact) < 0.03
    assert t.candidates == 6 and t.pick == "m2"


def test_monotone_in_the_lead_and_in_the_spread():
    leads = [trust_statement(_two(d, 0.02, 0.02)).p_best for d in (0.0, 0.01, 0.02, 0.04)]
    assert leads == sorted(leads) and leads[-1] > 0.9
    regrets = [trust_statement(_two(d, 0.02, 0.02)).expected_regret for d in (0.0, 0.01, 0.04)]
    assert regrets == sorted(regrets, reverse=True)
    spread = [trust_statement(_two(0.02, s, s)).p_best for s in (0.005, 0.02, 0.08)]
    assert spread == sorted(spread, reverse=True)


def test_seeded_and_reproducible():
    cands = _two(0.01, 0.03, 0.03)
    assert trust_statement(cands) == trust_statement(cands)
    assert np.array_equal(sample(cands), sample(cands))
    assert trust_statement(cands, seed=1).p_best != trust_statement(cands).p_best


def test_warnings():
    flat = [Predictive(f"m{j}", "identity", 0.5, 0.05) for j in range(4)]
    t = trust_statement(flat)
    assert COIN in t.warnings and APART in t.warnings  # p about 1/4 < 1.5/4
    clear = trust_statement(
        [Predictive("a", "identity", 0.9, 0.01), Predictive("b", "identity", 0.5, 0.01)]
    )
    assert clear.warnings == () and clear.p_best == 1.0
    # apart in their 68% intervals but not sure: no overlap warning, yet below 1.5/k
    near = trust_statement(
        [Predictive("a", "identity", 0.60, 0.010), Predictive("b", "identity", 0.58, 0.009)]
    )
    assert APART not in near.warnings


def test_uncalibrated_member_makes_the_statement_uncalibrated():
    cands = [
        Predictive("a", "identity", 0.7, 0.02),
        Predictive("b", "identity", 0.6, 0.02, calibrated=False),
    ]
    assert trust_statement(cands).calibrated is False


def test_bad_input():
    with pytest.raises(ValueError, match="at least two"):
        trust_statement([Predictive("a", "identity", 0.5, 0.1)])
    with pytest.raises(ValueError, match="link"):
        Predictive("a", "probit", 0.5, 0.1)
    with pytest.raises(ValueError, match="finite"):
        Predictive("a", "logit", math.nan, 0.1)


def _record(name, mean, sd, flags=None, score="fit/base"):
    rec = {
        "name": name,
        "status": "ok",
        "flags": flags or {},
        "score": {
            "name": score,
            "value": 1 / (1 + math.exp(-mean)),
            "link": "logit",
            "link_mean": mean,
            "link_sd": sd,
            "fit": {"budget_fraction": 0.1},
        },
    }
    return rec


def test_trust_of_a_ranking_uses_the_shipped_factor_and_the_flags():
    from ncap.predict.recommended import RECALIBRATION
    from ncap.ranking.scoring import trust_of

    ranked = [_record("a", 1.0, 0.2), _record("b", 0.8, 0.2)]
    out = trust_of(ranked, 0.1)
    k = RECALIBRATION["fit/base"][0.1]["95"]
    exact = norm.cdf(0.2 / math.hypot(0.2 * k, 0.2 * k))
    assert abs(out["p_best"] - exact) < 0.032
    assert out["calibrated"] is False and "underconfident" in out["calibration"]  # the check
    assert set(out) >= {"p_best", "expected_regret", "warnings", "calibrated"}
    flagged = trust_of([_record("a", 1.0, 0.2, {"at-chance": "x"}), _record("b", 0.8, 0.2)], 0.1)
    assert flagged["calibrated"] is False and flagged["p_best"] == out["p_best"]
    none = trust_of(
        [{"name": "a", "status": "ok", "score": {"name": "last-observed"}}, _record("b", 0.8, 0.2)],
        0.1,
    )
    assert none["p_best"] is None and "last-observed" in none["reason"]


def test_the_calibration_verdict_is_the_committed_check():
    import json
    from pathlib import Path

    from ncap.predict.trust import CHECKED

    path = Path(__file__).parents[2] / "benchmarks/results/bench-v2-trust/calibration.json"
    committed = json.loads(path.read_text())
    assert committed["score"] == "fit/base"
    assert CHECKED["fit/base"]["calibrated"] == committed["calibrated"]
    directions = {d for s in committed["own"].values() for d in s["direction"]}
    assert directions == {CHECKED["fit/base"]["direction"]}
    for s in committed["own"].values():  # the note's ranges hold the committed means
        assert 0.44 <= s["mean_p_best"] < 0.455 and 0.495 <= s["observed_best"] < 0.535
        assert 1.05 <= s["mean_realised_regret"] < 1.45 and 3.8 <= s["mean_expected_regret"] < 4.4


def test_the_lo_verdict_is_the_committed_v3_check():
    import json
    from pathlib import Path

    from ncap.predict.trust import CHECKED

    path = Path(__file__).parents[2] / "benchmarks/results/bench-v3-trust/calibration.json"
    committed = json.loads(path.read_text())
    assert committed["checked"]["0.2"] == {"score": "last-observed", "checked": True}
    assert not any(c["checked"] for f, c in committed["checked"].items() if f != "0.2")
    own = committed["own"]["0.2"]
    assert CHECKED["last-observed"]["calibrated"] == own["calibrated"] is False
    assert own["direction"] == [CHECKED["last-observed"]["direction"]] == ["under"]
    note = CHECKED["last-observed"]["note"]  # the figures the note quotes
    assert (
        f"{100 * own['observed_best']:.0f}%" in note and f"{100 * own['mean_p_best']:.0f}%" in note
    )
    assert f"({own['mean_realised_regret']:.1f} points)" in note
    assert f"({own['mean_expected_regret']:.1f})" in note


def test_empirical_p_best_matches_the_exact_share_of_residual_pairs():
    # two LO candidates with the benchmark's residuals: P(a best) is the share of (r_a, r_b)
    # pairs with center_a + r_a >= center_b + r_b, enumerated exactly
    rng = np.random.default_rng(3)
    res = tuple(rng.normal(0.3, 0.8, size=37).tolist())
    a, b = Empirical("a", 0.4, res), Empirical("b", 0.0, res)
    exact = np.mean([[0.4 + x >= 0.0 + y for y in res] for x in res])
    st = trust_statement([a, b])
    assert abs(st.p_best - exact) < 4 * np.sqrt(exact * (1 - exact) / DRAWS)
    # regret: E[max - pick] in points, exactly over the pairs
    pairs = [(expit(0.4 + x), expit(y)) for x in res for y in res]
    exact_regret = 100 * np.mean([max(p, q) - p for p, q in pairs])
    assert st.expected_regret == pytest.approx(exact_regret, rel=0.15, abs=0.05)


def test_normals_draw_as_before_and_mix_with_empirical_candidates():
    normal = [Predictive("a", "logit", 1.0, 0.5), Predictive("b", "logit", 0.5, 0.5)]
    z = np.random.default_rng(0).standard_normal((DRAWS, 2))  # what sample() always drew
    assert np.array_equal(sample(normal), expit(np.array([1.0, 0.5]) + 0.5 * z))
    mixed = sample([*normal, Empirical("c", 0.0, (0.1, -0.2))])
    values = set(np.unique(mixed[:, 2]).round(12))
    assert values == {round(float(v), 12) for v in expit([0.1, -0.2])}


def test_empirical_refuses_missing_or_non_finite_residuals():
    with pytest.raises(ValueError, match="residuals"):
        Empirical("a", 0.0, ())
    with pytest.raises(ValueError, match="finite"):
        Empirical("a", float("nan"), (0.1,))


def test_trust_of_last_observed_draws_from_the_shipped_residuals(monkeypatch):
    # LO gives no sd; with residuals shipped for it (bench-v3's export) each candidate's final
    # accuracy is sigmoid(logit(LO) + r): P(best) is the exact share of residual pairs
    import ncap.ranking.scoring as scoring

    res = (-0.5, 0.0, 0.25, 0.6)
    monkeypatch.setattr(
        scoring,
        "shipped_residuals",
        lambda name, f: (0.1, res) if name == "last-observed" else None,
    )

    def lo(name, acc):
        return {"name": name, "status": "ok", "score": {"name": "last-observed", "value": acc}}

    out = scoring.trust_of([lo("a", 0.62), lo("b", 0.55)], 0.1)
    gap = float(np.log(0.62 / 0.38) - np.log(0.55 / 0.45))
    exact = np.mean([[gap + x >= y for y in res] for x in res])
    assert abs(out["p_best"] - exact) < 4 * math.sqrt(exact * (1 - exact) / DRAWS)
    assert out["calibrated"] is False  # last-observed has no committed calibration check yet
    monkeypatch.setattr(scoring, "shipped_residuals", lambda name, f: None)
    assert scoring.trust_of([lo("a", 0.62), lo("b", 0.55)], 0.1)["p_best"] is None
