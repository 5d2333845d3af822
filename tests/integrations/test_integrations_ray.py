"""ncap.integrations.ray: the Tune stopper, driven directly (fast) and on a local Ray (slow)."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("ray.tune")

from ncap.exceptions import ConfigError  # noqa: E402
from ncap.integrations.ray import NcapStopper  # noqa: E402

T = 40


def curve(final: float, epoch: int) -> float:
    return final - (final - 0.1) * math.exp(-epoch / 3)


def test_stops_the_clearly_worse_trials_in_lock_step_and_never_the_best():
    finals = {"a": 0.95, "b": 0.3, "c": 0.9, "d": 0.2}
    stopper = NcapStopper("val_acc", max_t=T, loss_metric="train_loss", parameters=20_000)
    alive, stopped = set(finals), {}
    for epoch in range(1, T + 1):  # trials report in lock step, as concurrent trials do
        for trial in sorted(alive):
            acc = curve(finals[trial], epoch)
            result = {"val_acc": acc, "train_loss": -math.log(acc), "training_iteration": epoch}
            if stopper(trial, result):
                stopped[trial] = epoch
        alive -= set(stopped)
    assert stopped["a"] == T and stopped["c"] == T  # the good ones reach max_t
    assert stopped["b"] <= 0.2 * T and stopped["d"] <= 0.2 * T
    assert stopper.predictions["a"].by == "fit/base"
    assert not stopper.decisions["a"].prune


def test_refuses_minimisation_and_missing_metrics():
    with pytest.raises(ConfigError, match="mode='max'"):
        NcapStopper("val_loss", max_t=T, mode="min")
    with pytest.raises(ConfigError, match="'val_acc'"):
        NcapStopper("val_acc", max_t=T)("t", {"loss": 1.0, "training_iteration": 1})


@pytest.mark.slow
def test_the_ray_tune_example_runs_on_a_local_ray():
    import importlib.util
    from pathlib import Path

    import ray

    path = Path(__file__).parents[2] / "examples" / "ray_tune_digits.py"
    spec = importlib.util.spec_from_file_location("ray_tune_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        results, stopper = module.main(samples=4, epochs=3, quiet=True)
    finally:
        ray.shutdown()
    assert len(results) == 4 and not results.errors
    assert all(r.metrics["training_iteration"] <= 3 for r in results)
    assert len(stopper.curves) == 4
