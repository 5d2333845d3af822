"""ncap.integrations.optuna: the pruner on real Optuna studies with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from ncap.exceptions import ConfigError  # noqa: E402
from ncap.integrations.optuna import NcapPruner, report  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
T = 40  # epochs, one report per epoch


def curve(final: float, epoch: int) -> float:
    """A saturating learning curve from chance (0.1) to ``final``."""
    return final - (final - 0.1) * math.exp(-epoch / 3)


def run_study(finals, pruner, *, stop_after=None):
    study = optuna.create_study(direction="maximize", pruner=pruner)
    stopped = {}
    for i, final in enumerate(finals):
        trial = study.ask()
        for epoch in range(1, T + 1):
            acc = curve(final, epoch)
            report(trial, acc, epoch, train_loss=-math.log(acc), parameters=20_000 + 1000 * i)
            if trial.should_prune():
                stopped[i] = epoch
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
            if stop_after is not None and epoch == stop_after.get(i):
                break
        else:
            study.tell(trial, curve(final, T))
            continue
        if i not in stopped:  # stopped by the test (as a pruner of another kind would)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return study, stopped


@pytest.mark.parametrize("order", ["best first", "best last"])
def test_prunes_the_clearly_worse_trials_early_and_never_the_best(order):
    finals = [0.95, 0.93, 0.3, 0.2, 0.25, 0.9]
    if order == "best last":
        finals = finals[::-1]
    best = int(np.argmax(finals))
    study, stopped = run_study(finals, NcapPruner(max_resource=T))
    assert best not in stopped
    assert study.best_trial.number == best
    poor = [i for i, f in enumerate(finals) if f <= 0.3]
    first = 0 if order == "best first" else min(i for i, f in enumerate(finals) if f > 0.3)
    for i in poor:  # every poor trial after a good one is stopped within 20% of T
        if i > first:
            assert i in stopped and stopped[i] <= 0.2 * T, (i, stopped)
    # good trials are within reach of the best: never stopped
    assert not [i for i in stopped if finals[i] >= 0.9]
    # what report() stored
    attrs = study.trials[best].user_attrs
    assert set(attrs["ncap_prediction"]) >= {"accuracy", "68", "95", "by", "calibrated"}
    assert attrs["ncap_prediction"]["by"] == "last-observed"  # the default (bench-v3)
    assert len(attrs["ncap_train_loss"]) == T


def test_compares_at_equal_budgets_only():
    # 68%: at 95% LO's residuals in the first 7.5% of T are too wide to stop 0.16 against 0.64
    pruner = NcapPruner(max_resource=T, confidence=0.68)
    # a strong trial that stopped at epoch 3, then a poor one: at epochs 1-3 the poor one is
    # compared with the strong one's predictions at the same epochs; after that it has no rival
    study, stopped = run_study([0.95, 0.2], pruner, stop_after={0: 3})
    assert 1 in stopped and stopped[1] <= 3
    study, stopped = run_study(
        [0.95, 0.2],
        NcapPruner(max_resource=T, confidence=0.68, n_warmup_steps=3),
        stop_after={0: 3},
    )
    assert stopped == {}  # after the warm-up nobody else reported those epochs
    trial = study.trials[1]
    decision = pruner.decision(study, trial)
    assert not decision.prune and decision.rivals == 0


def test_decisions_follow_the_interval_and_confidence():
    study, _ = run_study([0.95, 0.6], optuna.pruners.NopPruner())
    strict, loose = (
        NcapPruner(max_resource=T, confidence=0.95),
        NcapPruner(max_resource=T, confidence=0.68),
    )
    for pruner in (strict, loose):
        d = pruner.decision(study, study.trials[1])
        own = pruner.predict(study.trials[1], T)
        assert d.upper == pytest.approx(own.interval(pruner.confidence)[1])
        assert d.best == pytest.approx(pruner.predict(study.trials[0], T).accuracy)
        assert d.prune == (d.upper < d.best)
    assert (
        strict.decision(study, study.trials[1]).upper
        >= loose.decision(study, study.trials[1]).upper
    )


def test_refuses_what_it_cannot_predict():
    with pytest.raises(ConfigError, match="0.68 and 0.95"):
        NcapPruner(max_resource=T, confidence=0.9)
    with pytest.raises(ConfigError, match="max_resource"):
        NcapPruner(max_resource=0)
    study = optuna.create_study(direction="minimize", pruner=NcapPruner(max_resource=T))
    trial = study.ask()
    trial.report(0.5, 1)
    with pytest.raises(ConfigError, match="direction='maximize'"):
        trial.should_prune()
    study = optuna.create_study(direction="maximize", pruner=NcapPruner(max_resource=T))
    trial = study.ask()
    trial.report(85.0, 1)
    with pytest.raises(ConfigError, match="divide a percentage"):
        trial.should_prune()


@pytest.mark.slow
def test_the_optuna_example_runs():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "examples" / "optuna_study.py"
    spec = importlib.util.spec_from_file_location("optuna_study", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    study = module.main(n_trials=4, epochs=4, quiet=True)
    assert len(study.trials) == 4 and study.best_trial.value > 0.5
