"""The recommended score: how it is resolved, how candidates are ranked by it, and that it is the
committed study's adopted default (issues 14 and 26: bench-v3's, per budget)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ncap.exceptions import ConfigError
from ncap.predict import recommended
from ncap.predict.recommended import (
    PAPER,
    RECOMMENDED,
    Fitted,
    parse_score,
    predicts_one_run,
    resolve_score,
    resolve_trial_score,
)
from ncap.ranking.scoring import score_candidates

STUDY = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "bench-v3-study"


def test_the_shipped_default_is_read_at_the_nearest_study_budget_with_its_note():
    """bench-v3's defaults per budget (protocol section 3.5), at the budget nearest in log f."""
    spec, note = resolve_score(None, 0.025)
    assert spec.name == "logme" and note is None
    for f in (0.05, 0.07, 0.1):
        spec, note = resolve_score("recommended", f)
        assert spec.name == "ravg/lo+logme+dyn/interval/mean-abs" and note is None
    assert spec.components == ("last-observed", "logme", "dyn/interval/mean-abs/slope")
    assert spec.signs == (1.0, 1.0, recommended.SIGMA["dyn/interval/mean-abs/slope"]) == (1, 1, -1)
    spec, note = resolve_score(None, 0.2)
    assert spec.name == "last-observed"
    assert note == "nothing beat the last observed accuracy reliably at this budget"
    spec, note = resolve_score(None, None)  # T unknown: the 10% choice, said so
    assert spec.name == "ravg/lo+logme+dyn/interval/mean-abs" and "T is unknown" in note
    spec, note = resolve_score(None, 0.5)
    assert spec.name == "last-observed" and "extrapolated" in note and "nothing beat" in note
    spec, note = resolve_score(None, 0.01)
    assert spec.name == "logme" and "extrapolated" in note


def test_a_study_that_decided_per_bin_picks_the_bin_and_says_when_it_extrapolates():
    """The per-bin reading of a bench-v2-style study (no defaults per budget)."""
    spec, note = resolve_score(None, 0.05, by_budget={})
    assert spec.name == RECOMMENDED["early"] and note is None
    spec, note = resolve_score("recommended", 0.1, by_budget={})
    assert spec.name == RECOMMENDED["late"] and note is None
    assert resolve_score(None, 0.0708, by_budget={})[0].name == RECOMMENDED["late"]
    assert resolve_score(None, 0.0706, by_budget={})[0].name == RECOMMENDED["early"]
    spec, note = resolve_score(None, None, by_budget={})
    assert spec.name == RECOMMENDED["late"] and "T is unknown" in note  # the bins differ
    assert "extrapolated" in resolve_score(None, 0.5, by_budget={})[1]
    assert "extrapolated" in resolve_score(None, 0.01, by_budget={})[1]


def test_one_runs_prediction_uses_lo_where_the_default_predicts_no_run():
    """The integrations' score (resolve_trial_score): the default when it predicts one run's
    accuracy, else LO; a named score must predict one."""
    for f in (0.025, 0.05, 0.1, 0.2, None):
        assert resolve_trial_score(None, f).name == "last-observed"
    assert isinstance(resolve_trial_score("fit/base", 0.1), Fitted)
    assert resolve_trial_score("paper", 0.1).name == PAPER
    for name in ("logme", "ravg/lo+logme", "tse-e1", "dyn/interval/mean-abs/slope"):
        assert not predicts_one_run(parse_score(name))
        with pytest.raises(ConfigError, match="predicts no run's final accuracy"):
            resolve_trial_score(name, 0.1)
    with pytest.raises(ConfigError, match="unknown score"):
        resolve_trial_score("lastobserved", 0.1)


def test_scores_by_name_and_clear_errors():
    assert parse_score("paper").name == PAPER == "nc/interval/signed/linear/b0/identity"
    spec = parse_score("ravg/lo+params+dyn/interval/abs-mean")
    assert spec.components == ("last-observed", "param-count", "dyn/interval/abs-mean/slope")
    assert parse_score("ravg/lo+nc/fixed").components[1] == "nc/fixed/abs-mean/quadratic/b0/logit"
    with pytest.raises(ConfigError, match="unknown score 'lastobserved'"):
        parse_score("lastobserved")
    spec = parse_score("fit/base")
    assert isinstance(spec, Fitted) and spec.components[0] == "lo" and "logme" in spec.components
    assert spec.training_free == ("parameters", "logme", "source_accuracy")
    with pytest.raises(ConfigError, match="does not ship"):
        parse_score("fit/dyn/interval/mean-abs")
    with pytest.raises(ConfigError, match="malformed"):
        parse_score("nc/interval/abs-mean")


def _record(name, accs, params, status="ok"):
    points = [
        {"step": 2 * (i + 1), "epoch": 0.5 * (i + 1), "val_accuracy": a, "train_loss": 1 - a,
         "beta_eff": {"abs-mean": 1.0 / (i + 1)}}
        for i, a in enumerate(accs)
    ]  # fmt: skip
    return {"name": name, "status": status, "trajectory": points,
            "backbone": {"parameters": params}}  # fmt: skip


def test_candidates_are_ranked_by_the_score_and_unrated_ones_come_last():
    records = [_record("a", [0.5, 0.6], 10), _record("b", [0.5, 0.8], 5),
               _record("c", [0.5, 0.7], None), _record("d", [], 1, status="failed")]  # fmt: skip
    order = score_candidates(records, parse_score("last-observed"), budget_steps=4,
                             steps_per_epoch=4, full_epochs=40)  # fmt: skip
    assert order == ["b", "c", "a"]
    assert records[1]["score"]["value"] == 0.8 and "score" not in records[3]
    # rank average of last observed and parameter count; c has no parameter count: unrated
    order = score_candidates(records, parse_score("ravg/lo+params"), budget_steps=4,
                             steps_per_epoch=4, full_epochs=40)  # fmt: skip
    assert order == ["b", "a", "c"]
    a, b = records[0]["score"]["value"], records[1]["score"]["value"]
    # among a, b, c: LO ranks a=0, c=0.5, b=1; params (c failed, lowest) a=1, b=0.5
    assert a == pytest.approx((0.0 + 1.0) / 2) and b == pytest.approx((1.0 + 0.5) / 2)
    assert records[2]["score"]["value"] is None and "param-count" in records[2]["score"]["reason"]


def test_the_default_is_the_committed_studys_adopted_score():
    rep = json.loads((STUDY / "report.json").read_text())
    sel = json.loads((STUDY / "selection.json").read_text())
    assert {float(f): d["score"] for f, d in rep["defaults"].items()} == {
        f: d["score"] for f, d in recommended.RECOMMENDED_BY_BUDGET.items()
    }
    # per bin (older readers): the default at the bin's first budget
    assert RECOMMENDED == {b: rep["defaults"][str(fs[0])]["score"] for b, fs in sel["bins"].items()}
    for d in recommended.RECOMMENDED_BY_BUDGET.values():
        for comp in parse_score(str(d["score"])).components:
            if comp.startswith("dyn/"):
                assert recommended.SIGMA[comp] == sel["sigma"][comp]


def test_a_study_that_decides_per_budget_is_read_at_the_nearest_budget_with_its_note():
    by_budget = {
        0.025: {"score": "last-observed", "note": "nothing beat the last observed accuracy"},
        0.05: {"score": "tse-e1", "note": None},
        0.1: {"score": "ravg/lo+logme", "note": None},
        0.2: {"score": "last-observed", "note": "nothing beat the last observed accuracy"},
    }
    spec, note = resolve_score(None, 0.06, by_budget=by_budget)  # log-nearest to 5%
    assert spec.name == "tse-e1" and note is None
    spec, note = resolve_score(None, 0.08, by_budget=by_budget)  # log-nearest to 10%
    assert spec.name == "ravg/lo+logme" and note is None
    assert [p.name for p in spec.parts] == ["last-observed", "logme"]
    spec, note = resolve_score(None, 0.02, by_budget=by_budget)
    assert spec.name == "last-observed"
    assert "extrapolated" in note and "nothing beat the last observed accuracy" in note
    spec, note = resolve_score(None, None, by_budget=by_budget)  # T unknown: 10%, said so
    assert spec.name == "ravg/lo+logme" and "T is unknown" in note and "10% of T" in note
    assert resolve_score("paper", 0.05, by_budget=by_budget)[0].name == PAPER
