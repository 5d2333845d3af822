"""benchmarks/overhead.py: its settings are what they claim, and its two ratios are measured on the
runs those settings make."""

import sys
from pathlib import Path

import pytest
from torch import nn

from ncap.capacitance.variants import VARIANTS
from ncap.data.registry import load_dataset
from ncap.models.backbone import Backbone
from ncap.models.registry import register_source
from ncap.training.config import FinetuneConfig
from ncap.training.schedule import eval_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
overhead = pytest.importorskip("overhead")

register_source(
    "test-overhead",
    lambda rest: Backbone(rest, nn.Sequential(nn.Flatten(), nn.Linear(784, 24)), num_features=24),
)


def test_the_settings_are_the_defaults_and_ncap_0_2():
    s = overhead.settings(3000)
    assert set(s) == set(overhead.SETTINGS)
    assert s["default"] == FinetuneConfig()
    old = s["v0.2"]  # every variant per step, 8 evaluations per epoch on the whole split
    assert old.variants == VARIANTS and old.val_share is None and old.eval_every == 6
    assert (
        set(eval_plan(old, 3000, 1000).values()) == {1000} and len(eval_plan(old, 3000, 1000)) == 8
    )
    assert s["fixed-batch"] == FinetuneConfig(fixed_batch=256)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n_train=320, n_val=60)


def test_the_ratios_come_from_the_runs(digits):
    import torch

    configs = overhead.settings(len(digits.y_train))
    for name, evaluations in (("default", 4), ("v0.2", 5)):  # 5 steps: 1, 2, 3, 5 / every step
        config = configs[name]
        e = overhead.eval_share("test-overhead:mlp", None, digits, config, torch.device("cpu"))
        assert e["evaluations"] == len(eval_plan(config, 320, 60)) == evaluations
        assert 0 < e["share"] and 0 < e["seconds"] and 0 < e["logme_share"]
        s = overhead.step_ratio("test-overhead:mlp", None, digits, config, 3, torch.device("cpu"))
        low, high = s["ratio_range"]
        assert low <= s["ratio"] <= high and s["step_ms_on"] > 0 and s["step_ms_off"] > 0
