"""ncap.integrations.curve: a trial's prediction is the one ``ncap rank`` gives the same run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ncap.exceptions import ConfigError
from ncap.integrations.curve import LearningCurve, predict_final
from ncap.predict.features import logit, sigmoid
from ncap.predict.recommended import resolve_trial_score
from ncap.predict.scores import run_score
from ncap.predict.settings import PredictorSettings
from ncap.predict.shipped import shipped_residuals
from ncap.ranking.scoring import add_predictions, score_candidates

BENCH = Path(__file__).parents[2] / "benchmarks" / "results" / "bench-v2.json"


@pytest.fixture(scope="module")
def runs():
    data = json.loads(BENCH.read_text())
    return data, [r for r in data["runs"] if r["target"] == "digits" and r["seed"] == 0][:4]


@pytest.mark.parametrize("score", [None, "fit/base"])
@pytest.mark.parametrize("fraction", [0.025, 0.1, 0.2])
def test_equals_the_ranking_score_and_interval_of_the_same_run(runs, fraction, score):
    """By default LO with bench-v3's residuals (the defaults at 2.5-10% predict no run's
    accuracy), or a named score: the prediction and intervals ``ncap rank`` gives that run."""
    data, chosen = runs
    for run in chosen:
        free = data["training_free"][run["target"]][run["model"]]
        spe, total = run["steps_per_epoch"], data["plan"]["epochs"]
        max_step = int(round(fraction * total * spe))
        mine = predict_final(
            run["points"], steps_per_epoch=spe, full_epochs=total, max_step=max_step,
            parameters=free["parameters"], num_features=free["num_features"], score=score,
        )  # fmt: skip
        record = {
            "name": run["model"],
            "status": "ok",
            "trajectory": run["points"],
            "backbone": {"parameters": free["parameters"], "num_features": free["num_features"]},
        }
        spec = resolve_trial_score(score, fraction)
        score_candidates(
            [record], spec, budget_steps=max_step, steps_per_epoch=spe, full_epochs=total
        )
        add_predictions([record], PredictorSettings(), fraction)
        theirs = record["prediction"]
        assert mine.by == theirs["by"] == (score or "last-observed")
        assert mine.accuracy == pytest.approx(theirs["accuracy"], rel=1e-9)
        assert mine.interval(0.95) == pytest.approx(tuple(theirs["95"]), rel=1e-9)
        assert mine.interval(0.68) == pytest.approx(tuple(theirs["68"]), rel=1e-9)
        assert mine.calibrated and mine.budget_fraction == pytest.approx(max_step / (total * spe))
        if score is None:  # the median of logit(LO) + r, r the shipped residuals at that budget
            lo = run_score("last-observed", run["points"], max_step, {}).value
            res = shipped_residuals("last-observed", fraction)
            assert res[0] == fraction
            assert mine.accuracy == pytest.approx(sigmoid(logit(lo) + np.median(res[1])), rel=1e-12)
            low, high = mine.interval(0.95)
            inside = np.mean((logit(low) <= logit(lo) + np.array(res[1])) &
                             (logit(lo) + np.array(res[1]) <= logit(high)))  # fmt: skip
            assert 0.94 <= inside <= 0.96


def test_a_score_that_predicts_no_run_is_refused_before_training():
    from ncap.integrations.optuna import NcapPruner

    with pytest.raises(ConfigError, match="predicts no run's final accuracy"):
        NcapPruner(10, score="ravg/lo+logme")
    with pytest.raises(ConfigError, match="unknown score"):
        predict_final(
            [{"step": 1, "val_accuracy": 0.5}], steps_per_epoch=1, full_epochs=10, score="lo"
        )
    assert NcapPruner(10, score="fit/base").score == "fit/base"


def test_a_curve_refuses_percentages_and_steps_that_go_back():
    curve = LearningCurve(steps_per_epoch=10)
    curve.add(10, 0.5, train_loss=1.0)
    with pytest.raises(ConfigError, match="must increase"):
        curve.add(10, 0.6)
    with pytest.raises(ConfigError, match="divide a percentage"):
        curve.add(20, 60.0)
    assert curve.predict(full_epochs=10).accuracy > 0
    with pytest.raises(ConfigError, match="0.68 and 0.95"):
        curve.predict(full_epochs=10).interval(0.9)


def test_a_prediction_without_an_interval_is_never_pruned():
    from ncap.integrations.curve import FinalPrediction
    from ncap.integrations.rule import decide

    rival = FinalPrediction(0.9, "fit/base", 10, 0.05, {"95": (0.85, 0.95), "68": (0.88, 0.92)})
    bare = FinalPrediction(0.2, "fit/base", 10, 0.05)  # flagged: no interval
    banded = FinalPrediction(0.2, "fit/base", 10, 0.05, {"95": (0.1, 0.3), "68": (0.15, 0.25)})
    assert not decide(bare, [rival]).prune
    assert decide(banded, [rival]).prune


def test_labels_that_do_not_sum_to_the_captured_batches_are_refused_by_name():
    import torch
    from torch import nn

    from ncap.integrations.tap import ProbeTap

    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).train()
    tap = ProbeTap("1", num_classes=3).attach(model)
    model(torch.randn(5, 4)), model(torch.randn(3, 4))  # two micro-batches (accumulation)
    with pytest.raises(ConfigError, match="do not match the captured"):
        tap.observe(torch.zeros(7, dtype=torch.long))  # 7 labels for 5 + 3 features
    model(torch.randn(5, 4)), model(torch.randn(3, 4))
    assert tap.observe(torch.zeros(8, dtype=torch.long)) == 8
    model(torch.randn(4, 4))
    tap.observe(torch.tensor([0, -1, 3, 1]))  # queued: checked when the queue is added
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 3\); got -1..3"):
        tap.read()
