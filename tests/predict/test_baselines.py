import math

import numpy as np
import pytest

from ncap.predict.baselines import (
    BASELINES,
    last_observed_accuracy,
    learning_curve_prediction,
    points_within_budget,
    sum_training_losses,
    tse_score,
)

SPE = 4  # steps per epoch


def _point(step, loss, acc, spe=SPE):
    return {"step": step, "epoch": step / spe, "train_loss": loss, "val_accuracy": acc}


# intervals (in epochs): (0,.25] (.25,.5] (.5,1] (1,1.5] (1.5,1.75] | (1.75,2] after the budget
POINTS = [
    _point(1, 2.0, 0.30),
    _point(2, 1.6, 0.40),
    _point(4, 1.2, 0.50),
    _point(6, 1.0, 0.60),
    _point(7, 0.8, 0.65),  # irregular last interval within the budget
    _point(8, 0.1, 0.99),
]
BUDGET = 7
CONTEXT = {"steps_per_epoch": SPE, "target_epoch": 20.0}


def test_tse_hand_computed():
    # 2.0*.25 + 1.6*.25 + 1.2*.5 + 1.0*.5 + 0.8*.25
    total = sum_training_losses(POINTS, BUDGET, steps_per_epoch=SPE)
    assert total == pytest.approx(2.2)
    assert tse_score(POINTS, BUDGET, steps_per_epoch=SPE) == pytest.approx(-2.2)


def test_tse_e1_hand_computed_with_straddling_interval():
    # budget epoch 1.75, boundary 0.75: (.5,1] straddles it and counts for 0.25 epoch
    # 1.2*.25 + 1.0*.5 + 0.8*.25
    total = sum_training_losses(POINTS, BUDGET, steps_per_epoch=SPE, last_epochs=1)
    assert total == pytest.approx(1.0)
    # boundary 1.25: (1,1.5] straddles it: 1.0*.25 + 0.8*.25
    assert sum_training_losses(
        POINTS, BUDGET, steps_per_epoch=SPE, last_epochs=0.5
    ) == pytest.approx(0.45)


def test_tse_e_longer_than_budget_is_full_tse():
    full = sum_training_losses(POINTS, BUDGET, steps_per_epoch=SPE)
    assert sum_training_losses(POINTS, BUDGET, steps_per_epoch=SPE, last_epochs=10) == (
        pytest.approx(full)
    )


def test_tse_is_loss_sum_over_steps_divided_by_steps_per_epoch():
    # per-step losses, recorded as interval means at irregular points
    rng = np.random.default_rng(0)
    spe = 8
    losses = rng.uniform(0.2, 2.0, size=21)  # steps 1..21
    record_at = [2, 4, 6, 8, 12, 16, 20, 21]
    points, prev = [], 0
    for s in record_at:
        points.append(_point(s, float(losses[prev:s].mean()), 0.5, spe=spe))
        prev = s
    assert sum_training_losses(points, 21, steps_per_epoch=spe) == pytest.approx(losses.sum() / spe)
    # last epoch = steps 14..21: interval (12,16] straddles and counts for steps 14, 15, 16 of its
    # mean, i.e. 3 * mean(losses[12:16])
    expected = (3 * losses[12:16].mean() + losses[16:21].sum()) / spe
    assert sum_training_losses(points, 21, steps_per_epoch=spe, last_epochs=1) == pytest.approx(
        expected
    )


def test_budget_filtering_never_reads_later_points():
    garbage = {"step": 9, "epoch": "x", "train_loss": math.nan, "val_accuracy": None}
    points = [*POINTS, garbage]
    assert sum_training_losses(points, BUDGET, steps_per_epoch=SPE) == pytest.approx(2.2)
    assert last_observed_accuracy(points, BUDGET) == 0.65
    assert BASELINES["tse-e1"](points, BUDGET, CONTEXT)[0] == pytest.approx(-1.0)
    # a budget between two points takes the earlier one
    assert last_observed_accuracy(POINTS, 5) == 0.50
    assert sum_training_losses(POINTS, 5, steps_per_epoch=SPE) == pytest.approx(1.5)
    assert len(points_within_budget(points, BUDGET)) == 5


def test_last_observed():
    assert last_observed_accuracy(POINTS, BUDGET) == 0.65
    assert last_observed_accuracy(POINTS, 100) == 0.99
    with pytest.raises(ValueError, match="no trajectory point within the budget max_step=0"):
        last_observed_accuracy(POINTS, 0)


def test_sign_convention_lower_loss_scores_higher():
    fast = [_point(p["step"], p["train_loss"] * 0.5, p["val_accuracy"]) for p in POINTS]
    for last_epochs in (None, 1):
        kw = {"steps_per_epoch": SPE, "last_epochs": last_epochs}
        assert tse_score(fast, BUDGET, **kw) > tse_score(POINTS, BUDGET, **kw)
        assert sum_training_losses(fast, BUDGET, **kw) < sum_training_losses(POINTS, BUDGET, **kw)
    assert BASELINES["tse"](fast, BUDGET, CONTEXT)[0] > BASELINES["tse"](POINTS, BUDGET, CONTEXT)[0]


def test_step_zero_point_without_loss_is_ignored():
    points = [{"step": 0, "epoch": 0.0, "train_loss": None, "val_accuracy": 0.1}, *POINTS]
    assert sum_training_losses(points, BUDGET, steps_per_epoch=SPE) == pytest.approx(2.2)
    result = learning_curve_prediction(points, BUDGET, 20.0)
    assert result.n_points == 5  # the epoch-0 point is left out (families need x > 0)


def test_tse_errors():
    with pytest.raises(ValueError, match="steps_per_epoch must be finite and > 0"):
        sum_training_losses(POINTS, BUDGET, steps_per_epoch=0)
    with pytest.raises(ValueError, match="last_epochs must be finite and > 0"):
        sum_training_losses(POINTS, BUDGET, steps_per_epoch=SPE, last_epochs=0)
    with pytest.raises(ValueError, match="pass the steps_per_epoch the trajectory was recorded"):
        sum_training_losses(POINTS, BUDGET, steps_per_epoch=8)
    bad = [*POINTS[:2], {**POINTS[2], "train_loss": math.nan}, *POINTS[3:]]
    with pytest.raises(ValueError, match="step 4 has train_loss nan"):
        sum_training_losses(bad, BUDGET, steps_per_epoch=SPE)
    # an interval outside the TSE-E window is not read: TSE-E0.5 starts at epoch 1.25
    assert sum_training_losses(bad, BUDGET, steps_per_epoch=SPE, last_epochs=0.5) == (
        pytest.approx(0.45)
    )
    with pytest.raises(ValueError, match="strictly increasing step order"):
        sum_training_losses([POINTS[1], POINTS[0]], BUDGET, steps_per_epoch=SPE)


def test_learning_curve_prediction_uses_budget_points():
    x = np.arange(1, 13) * 0.25
    acc = 0.9 - 0.5 * np.exp(-1.2 * x)
    points = [_point(i + 1, 1.0, float(a)) for i, a in enumerate(acc)]
    points.append(_point(13, 1.0, 0.0))  # after the budget: would ruin the fit if read
    result = learning_curve_prediction(points, 12, 20.0, curves=["exp3"])
    assert result.n_points == 12
    assert result.prediction == pytest.approx(0.9, abs=1e-3)
    with pytest.raises(ValueError, match="at least 3 points"):
        learning_curve_prediction(points, 2, 20.0)


def test_registry_names_and_scores():
    assert set(BASELINES) == {
        "last-observed",
        "tse",
        "tse-e1",
        "learning-curve",
        "param-count",
        "source-accuracy",
    }
    context = {**CONTEXT, "parameters": 1234, "source_accuracy": 0.77}
    results = {name: method(POINTS, BUDGET, context) for name, method in BASELINES.items()}
    for name, (score, info) in results.items():
        assert isinstance(info, dict), name
        assert score is None or math.isfinite(score), name
        if score is None:
            assert info["reason"], name
    assert results["last-observed"][0] == 0.65
    assert results["last-observed"][1]["step"] == 7
    assert results["tse"][0] == pytest.approx(-2.2)
    assert results["tse"][1]["sum_training_losses"] == pytest.approx(2.2)
    assert results["tse-e1"][0] == pytest.approx(-1.0)
    assert results["param-count"] == (1234.0, {"parameters": 1234.0})
    assert results["source-accuracy"][0] == 0.77
    score, info = results["learning-curve"]
    assert set(info["predictions"]) | set(info["failures"]) >= {"pow3", "exp3"}
    if score is not None:
        assert score == pytest.approx(np.mean(list(info["predictions"].values())))


def test_registry_returns_none_with_reason_on_failure():
    # no point within the budget
    for name in ("last-observed", "tse", "tse-e1", "learning-curve"):
        score, info = BASELINES[name](POINTS, 0, CONTEXT)
        assert score is None
        assert "no trajectory point within the budget" in info["reason"]
    # too few points for the learning curve
    score, info = BASELINES["learning-curve"](POINTS, 2, CONTEXT)
    assert score is None and "at least 3 points" in info["reason"]
    # every curve implausible: the reasons are passed on
    rising = [_point(s, 1.0, 0.2 + 0.05 * s) for s in range(1, 17)]  # 1.0 at epoch 4
    score, info = BASELINES["learning-curve"](rising, 16, {**CONTEXT, "target_epoch": 40.0})
    assert score is None
    assert "no learning curve could be extrapolated" in info["reason"]
    assert "implausible extrapolation" in info["reason"]
    assert info["failures"] and not info["predictions"]
    # a NaN loss
    bad = [*POINTS[:-1], {**POINTS[-2], "step": 8, "epoch": 2.0, "train_loss": math.nan}]
    score, info = BASELINES["tse"](bad, 8, CONTEXT)
    assert score is None and "train_loss nan" in info["reason"]
    # training-free entries without their value
    for name, key in (("param-count", "parameters"), ("source-accuracy", "source_accuracy")):
        assert BASELINES[name](POINTS, BUDGET, CONTEXT) == (
            None,
            {"reason": f"context[{key!r}] is missing or None: {name} is unknown for this run"},
        )
        score, info = BASELINES[name](POINTS, BUDGET, {key: math.nan})
        assert score is None and "not finite" in info["reason"]


def test_registry_missing_configuration_raises():
    with pytest.raises(ValueError, match="needs context\\['steps_per_epoch'\\]"):
        BASELINES["tse"](POINTS, BUDGET, {})
    with pytest.raises(ValueError, match="needs context\\['target_epoch'\\]"):
        BASELINES["learning-curve"](POINTS, BUDGET, {})


def test_training_free_entries_ignore_points():
    context = {"parameters": 10, "source_accuracy": 0.5}
    assert BASELINES["param-count"]([], 0, context)[0] == 10.0
    assert BASELINES["source-accuracy"]([], 0, context)[0] == 0.5
