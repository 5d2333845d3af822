"""ncap's cheap defaults: the evaluation plan (dense early, sparse later, the budget's last point on
the full validation images), the variants tracked per step, and clear failures for a score that
needs a variant the run did not record."""

import dataclasses

import pytest
import torch
from torch import nn

from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError
from ncap.predict.capacitance import PredictorSettings
from ncap.predict.scores import run_score
from ncap.ranking.halving import HalvingSettings, plan_rungs
from ncap.ranking.preflight import check_budget
from ncap.ranking.rank import rank
from ncap.training.callbacks import Callback
from ncap.training.config import CHEAP_VARIANTS, FinetuneConfig
from ncap.training.loop import evaluate, finetune
from ncap.training.schedule import eval_plan, eval_steps


def test_default_plan_is_dense_early_and_full_at_the_budgets_end():
    config = FinetuneConfig()  # 3000 images / 64 = 47 steps; 1/8 x 64 x 47 = 376 images
    assert eval_plan(config, 3000, 1000) == {6: 47, 12: 47, 24: 47, 47: 376}
    # a validation split smaller than the cap: the last point sees all of it
    assert eval_plan(config, 3000, 200) == {6: 25, 12: 25, 24: 25, 47: 200}
    assert eval_plan(dataclasses.replace(config, max_val=100), 3000, 1000)[47] == 100
    # a short budget on a small set: the cap (1/8 x 64 x 8 = 64) is raised to MIN_FULL = 256
    assert eval_plan(config, 512, 450) == {1: 32, 2: 32, 4: 32, 8: 256}
    # val_share 0 (stored as None): every point on every validation image, as ncap 0.2 did
    flat = dataclasses.replace(config, val_share=0)
    assert flat.val_share is None and "val_share" not in flat.to_dict()
    assert set(eval_plan(flat, 3000, 1000).values()) == {1000}
    # an explicit interval: its multiples and the last step
    every = dataclasses.replace(config, eval_every=10)
    assert list(eval_plan(every, 3000, 1000)) == [10, 20, 30, 40, 47]


def test_a_longer_run_repeats_the_budgets_points_then_doubles():
    budget = FinetuneConfig()
    run = dataclasses.replace(budget, epochs=10, eval_anchor=budget.anchor_steps(3000))
    plan = eval_plan(run, 3000, 1000, extra=(47,))
    assert {s: n for s, n in plan.items() if s <= 47} == eval_plan(budget, 3000, 1000)
    assert {s: n for s, n in plan.items() if s > 47} == {94: 47, 188: 47, 376: 47, 470: 376}


def test_the_budget_check_counts_the_default_plan():
    predictor = PredictorSettings()  # quadratic: 4 points
    assert predictor.points_needed() == 4
    check_budget(FinetuneConfig(), predictor, 3000)  # 4 points: fine
    short = FinetuneConfig(steps=3)  # 3/8, 3/4, 3/2 -> steps 1, 1, 2 and 3: three points
    assert eval_steps(short, 3000) == [1, 2, 3]
    with pytest.raises(ConfigError, match="evaluates 3 time.*at 1/8, 1/4, 1/2 and the end"):
        check_budget(short, predictor, 3000)


def test_halving_lays_the_plan_out_for_its_first_rung():
    run_config, budgets, steps = plan_rungs(
        HalvingSettings(eta=2, min_budget=1.0), FinetuneConfig(epochs=4), 3000
    )
    assert steps == (47, 94, 188) and run_config.eval_anchor == 47
    points = eval_plan(run_config, 3000, 1000, extra=steps)
    assert points == {6: 47, 12: 47, 24: 47, 47: 376, 94: 376, 188: 376}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_train=320, n_val=60)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 24), nn.ReLU())


class _Reevaluate(Callback):
    """At every evaluation, the model's accuracy on the first 5, 40 and all validation images."""

    def __init__(self, x, y):
        self.x, self.y, self.seen = x, y, []

    def on_train_start(self, model):
        self.model = model

    def on_evaluate(self, point):
        self.seen.append({n: evaluate(self.model, self.x[:n], self.y[:n])[1] for n in (8, 60)})


def test_a_default_run_records_the_cheap_variants_and_full_validation_last(digits):
    assert FinetuneConfig().variants == CHEAP_VARIANTS == ("signed", "mean-abs")
    # 320 / 16 = 20 steps; cap 1/8 x 16 x 20 = 40 images, raised to the floor of 256 (here all
    # 60 validation images) at the end; subsets of 60 / 8 -> 8
    config = FinetuneConfig(batch_size=16, probe_hidden=(16, 12, 8))
    check = _Reevaluate(digits.x_val, digits.y_val)
    traj = finetune(_mlp(), 24, digits, config, callbacks=[check])
    assert [p["step"] for p in traj.points] == [3, 5, 10, 20]
    assert [p["val_images"] for p in traj.points] == [8, 8, 8, 60]
    assert all(set(p["beta_eff"]) == {"signed", "mean-abs"} for p in traj.points)
    assert [p["val_accuracy"] for p in traj.points] == [
        s[n] for s, n in zip(check.seen, [8, 8, 8, 60])
    ]
    # val_share 0: every point on all 60 images, and no val_images field (ncap 0.2's points)
    flat = finetune(_mlp(), 24, digits, dataclasses.replace(config, val_share=0))
    assert all("val_images" not in p for p in flat.points)
    assert all(round(p["val_accuracy"] * 60, 9).is_integer() for p in flat.points)


def test_an_nc_score_on_an_untracked_variant_fails_with_the_fix():
    points = [
        {"step": s, "epoch": s / 10, "val_accuracy": 0.5 + 0.02 * s,
         "beta_eff": {"signed": 1.0 / s, "mean-abs": 2.0 / s}}
        for s in range(1, 9)
    ]  # fmt: skip
    missing = run_score("nc/interval/abs-mean/quadratic/b0/logit", points, 8, {})
    assert missing.value is None
    assert "'abs-mean'" in missing.reason and "was not recorded" in missing.reason
    assert "--variants" in missing.reason and "--fixed-batch" in missing.reason
    fixed = run_score("dyn/fixed/mean-abs/slope", points, 8, {"steps_per_epoch": 10})
    assert fixed.value is None and "--fixed-batch" in fixed.reason
    assert run_score("nc/interval/signed/quadratic/b0/identity", points, 8, {}).value is not None
    # measured on a fixed batch instead: the extrapolation reads it from there
    for p in points:
        p["beta_eff_fixed"] = {"abs-mean": 3.0 / p["step"]}
    assert run_score("nc/interval/abs-mean/quadratic/b0/logit", points, 8, {}).value is not None


def test_rank_refuses_a_score_on_an_untracked_variant_before_training(tmp_path, digits):
    with pytest.raises(ConfigError, match="--variants.*--fixed-batch"):
        rank(["mlp-s"], digits, out_dir=tmp_path / "a", config=FinetuneConfig(),
             score="nc/interval/abs-mean/quadratic/b0/logit")  # fmt: skip
    with pytest.raises(ConfigError, match="tracks only \\['mean-abs'\\]; add it to --variants"):
        rank(["mlp-s"], digits, out_dir=tmp_path / "b",
             config=FinetuneConfig(variants=("mean-abs",)))  # fmt: skip
    assert not (tmp_path / "a" / "candidates").exists()
