"""ncap.integrations.curve: a trial's prediction is the one ``ncap rank`` gives the same run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ncap.exceptions import ConfigError
from ncap.integrations.curve import LearningCurve, predict_final
from ncap.predict.recommended import resolve_score
from ncap.predict.settings import PredictorSettings
from ncap.ranking.scoring import add_predictions, score_candidates

BENCH = Path(__file__).parents[1] / "benchmarks" / "results" / "bench-v2.json"


@pytest.fixture(scope="module")
def runs():
    data = json.loads(BENCH.read_text())
    return data, [r for r in data["runs"] if r["target"] == "digits" and r["seed"] == 0][:4]


@pytest.mark.parametrize("fraction", [0.025, 0.1, 0.2])
def test_equals_the_ranking_score_and_interval_of_the_same_run(runs, fraction):
    data, chosen = runs
    for run in chosen:
        free = data["training_free"][run["target"]][run["model"]]
        spe, total = run["steps_per_epoch"], data["plan"]["epochs"]
        max_step = int(round(fraction * total * spe))
        mine = predict_final(
            run["points"], steps_per_epoch=spe, full_epochs=total, max_step=max_step,
            parameters=free["parameters"], num_features=free["num_features"],
        )  # fmt: skip
        record = {
            "name": run["model"],
            "status": "ok",
            "trajectory": run["points"],
            "backbone": {"parameters": free["parameters"], "num_features": free["num_features"]},
        }
        spec, _ = resolve_score(None, fraction)
        score_candidates(
            [record], spec, budget_steps=max_step, steps_per_epoch=spe, full_epochs=total
        )
        add_predictions([record], PredictorSettings(), fraction)
        theirs = record["prediction"]
        assert mine.by == theirs["by"] == "fit/base"
        assert mine.accuracy == pytest.approx(theirs["accuracy"], rel=1e-9)
        assert mine.interval(0.95) == pytest.approx(tuple(theirs["95"]), rel=1e-9)
        assert mine.interval(0.68) == pytest.approx(tuple(theirs["68"]), rel=1e-9)
        assert mine.calibrated and mine.budget_fraction == pytest.approx(max_step / (total * spe))


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
