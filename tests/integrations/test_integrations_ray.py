"""ncap.integrations.ray: the Tune stopper, driven directly (fast) and on a local Ray (slow)."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("ray.tune")

from ncap.exceptions import ConfigError  # noqa: E402
from ncap.integrations.ray import NcapScheduler, NcapStopper  # noqa: E402

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
    assert stopper.predictions["a"].by == "last-observed"
    assert not stopper.decisions["a"].prune


def test_refuses_minimisation_and_missing_metrics():
    with pytest.raises(ConfigError, match="mode='max'"):
        NcapStopper("val_loss", max_t=T, mode="min")
    with pytest.raises(ConfigError, match="'val_acc'"):
        NcapStopper("val_acc", max_t=T)("t", {"loss": 1.0, "training_iteration": 1})


def test_the_scheduler_takes_metric_and_mode_as_tune_schedulers_do():
    from ray.tune.schedulers import FIFOScheduler

    scheduler = NcapScheduler(max_t=T)
    assert isinstance(scheduler, FIFOScheduler)
    assert scheduler.set_search_properties("val_acc", "max")
    assert scheduler.rule.metric == "val_acc"
    assert not scheduler.set_search_properties("other", None)  # set already: Tune's convention
    with pytest.raises(ConfigError, match="mode='max'"):
        NcapScheduler(max_t=T).set_search_properties("val_loss", "min")
    with pytest.raises(ConfigError, match="mode='max'"):
        NcapScheduler(max_t=T, mode="min")


def _digits_trainable():
    """Tiny MLPs on the bundled digits, one result per epoch (deterministic per config); a local
    function, which Ray pickles by value (the test module is not importable in its workers)."""

    def trainable(config):
        import torch
        import torch.nn.functional as F
        from ray import tune
        from sklearn.datasets import load_digits
        from torch import nn

        torch.set_num_threads(1)
        x, y = load_digits(return_X_y=True)
        x, y = torch.tensor(x, dtype=torch.float32) / 16.0, torch.tensor(y)
        if config["scramble"]:  # a trial that cannot learn: its labels are noise
            y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
        tr, va = torch.arange(0, 1200), torch.arange(1200, len(y))
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(config["epochs"]):
            losses = []
            for idx in tr.split(100):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss))
            with torch.no_grad():
                acc = float((model(x[va]).argmax(1) == y[va]).float().mean())
            tune.report(
                {"val_acc": acc, "train_loss": sum(losses) / len(losses), "parameters": 2410}
            )

    return trainable


@pytest.mark.slow  # ~4 min on the loaded 2-core machine: Ray's start and two actors
def test_the_scheduler_stops_a_hopeless_trial_in_a_real_tune_run(tmp_path):
    """Two trials on a local Ray, one after the other: one learns the digits, one has shuffled
    labels. At 68% confidence the scheduler stops the hopeless one early (its predicted final
    accuracy is far below the other's at the same epoch) and lets the good one reach max_t."""
    import ray
    from ray import tune

    epochs = 8
    scheduler = NcapScheduler(
        max_t=epochs, confidence=0.68, loss_metric="train_loss", parameters_metric="parameters"
    )
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        results = tune.Tuner(
            tune.with_resources(_digits_trainable(), {"cpu": 1}),
            param_space={"scramble": tune.grid_search([False, True]), "epochs": epochs},
            tune_config=tune.TuneConfig(metric="val_acc", mode="max", scheduler=scheduler),
            run_config=tune.RunConfig(verbose=0, storage_path=str(tmp_path)),
        ).fit()
    finally:
        ray.shutdown()
    assert not results.errors and len(results) == 2
    by_config = {r.config["scramble"]: r.metrics for r in results}
    good, hopeless = by_config[False], by_config[True]
    assert good["training_iteration"] == epochs  # ran to max_t
    assert hopeless["training_iteration"] < epochs  # stopped by the rule
    assert scheduler.stopped == {hopeless["trial_id"]: hopeless["training_iteration"]}
    decision = scheduler.decisions[hopeless["trial_id"]]
    assert decision.prune and decision.upper < decision.best
    assert good["val_acc"] > 0.8 and hopeless["val_acc"] < 0.3


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
        results, scheduler = module.main(samples=4, epochs=3, quiet=True)
        ray.shutdown()
        stopped, stopper = module.main(samples=2, epochs=2, quiet=True, stopper=True)
    finally:
        ray.shutdown()
    assert isinstance(scheduler, NcapScheduler) and isinstance(stopper, NcapStopper)
    assert len(results) == 4 and not results.errors
    assert all(r.metrics["training_iteration"] <= 3 for r in results)
    assert len(scheduler.curves) == 4
    assert len(stopped) == 2 and not stopped.errors and len(stopper.curves) == 2
