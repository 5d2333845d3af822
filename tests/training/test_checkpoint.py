"""A fine-tuning stopped at a step and continued from its checkpoint is the uninterrupted run."""

import pytest
import torch
from torch import nn

from ncap.capacitance.variants import VARIANTS
from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError
from ncap.training.checkpoint import Segment
from ncap.training.config import FinetuneConfig
from ncap.training.fixed_batch import FixedBatchBetaEff, fixed_probe_batch
from ncap.training.loop import finetune

# all three variants per step, dropout (the global generator) and BatchNorm (buffers), Adam (state);
# every evaluation on the whole validation split (ncap 0.2's way)
CONFIG = FinetuneConfig(
    epochs=2, eval_every=3, batch_size=32, probe_hidden=(16, 12, 8), variants=VARIANTS,
    val_share=None,
)  # fmt: skip
# the default schedule and validation subsets, laid out for step 4 (as halving's first rung)
DEFAULT_PLAN = FinetuneConfig(epochs=2, batch_size=32, probe_hidden=(16, 12, 8), eval_anchor=4)


def _backbone():
    torch.manual_seed(7)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 48),
        nn.BatchNorm1d(48),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(48, 24),
    )


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", n_train=200, n_val=60)


def _run(data, *, callbacks=(), config=CONFIG, **kwargs):
    module = _backbone()
    traj = finetune(module, 24, data, config, callbacks=list(callbacks), **kwargs)
    return traj, module


def _fixed(data):
    return [FixedBatchBetaEff(*fixed_probe_batch(data, 30))]


def _no_time(points):
    return [{k: v for k, v in p.items() if k != "wall_time"} for p in points]


@pytest.mark.parametrize(
    ("config", "steps"),
    [(CONFIG, [3, 5, 6, 9, 12, 14]), (DEFAULT_PLAN, [1, 2, 4, 5, 8, 9, 14])],
    ids=["every-3", "default-plan"],
)
def test_stop_and_continue_equals_a_straight_run_bit_for_bit(data, tmp_path, config, steps):
    stops = (5, 9, 14)  # mid-interval and at evaluation points; evaluations at the stops too
    straight, straight_module = _run(
        data, callbacks=_fixed(data), extra_eval_steps=stops, config=config
    )
    assert straight.total_steps == 14
    ckpt = tmp_path / "c.pt"
    previous, prev_stop = None, 0
    for stop in stops:
        traj, module = _run(
            data,
            callbacks=_fixed(data),
            config=config,
            extra_eval_steps=stops,
            segment=Segment(stop_at=stop, resume_from=previous, checkpoint_to=ckpt),
        )
        assert (traj.first_step, traj.last_step) == (prev_stop, stop)
        previous, prev_stop = ckpt, stop
    assert _no_time(traj.points) == _no_time(straight.points)  # == on floats: bit for bit
    assert all("beta_eff_fixed" in p for p in traj.points)
    for (k, a), (_, b) in zip(module.state_dict().items(), straight_module.state_dict().items()):
        assert torch.equal(a, b), k
    assert [p["step"] for p in traj.points] == steps
    assert traj.points[-1]["wall_time"] > 0
    if config.val_share is not None:  # the anchor and the stops on all 60 (floor 256), else 8
        full = {4, *stops}
        assert [p["val_images"] for p in traj.points] == [60 if s in full else 8 for s in steps]
    else:
        assert all("val_images" not in p for p in traj.points)


def test_checkpoint_loads_with_weights_only_and_refuses_other_settings(data, tmp_path):
    ckpt = tmp_path / "c.pt"
    _run(data, segment=Segment(stop_at=4, checkpoint_to=ckpt))
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 4 and len(state["points"]) == 1
    # the divergence guard's starting loss travels too: a continued run compares with the same
    assert state["guard"]["step"] == 4 and state["guard"]["reference"] >= 2.302
    other = FinetuneConfig(epochs=2, eval_every=3, batch_size=32, probe_hidden=(16, 12, 8), lr=0.01)
    with pytest.raises(ConfigError, match="other settings"):
        finetune(_backbone(), 24, data, other, segment=Segment(resume_from=ckpt))
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="delete it"):
        _run(data, segment=Segment(resume_from=ckpt))


def test_probe_batch_measures_the_untracked_variant_at_evaluations_and_the_fit_reads_it(data):
    from ncap.predict.capacitance import PredictorSettings, predict_from_points
    from ncap.results import trajectory_arrays

    cheap = FinetuneConfig(epochs=2, eval_every=3, batch_size=32, probe_hidden=(16, 12, 8),
                           variants=("signed", "mean-abs"), fixed_batch=30)  # fmt: skip
    traj = finetune(_backbone(), 24, data, cheap)
    assert all(set(p["beta_eff"]) == {"signed", "mean-abs"} for p in traj.points)
    assert all(set(p["beta_eff_fixed"]) == {"abs-mean"} for p in traj.points)
    beta, _ = trajectory_arrays(traj.points, "abs-mean")
    assert beta == [p["beta_eff_fixed"]["abs-mean"] for p in traj.points]
    assert predict_from_points(traj.points, PredictorSettings(), 14)["predicted_accuracy"] > 0
    # the same measurement as the fixed-batch callback of bench-v2 (same images, same weights)
    full = _run(data, callbacks=[FixedBatchBetaEff(*fixed_probe_batch(data, 30))])[0]
    assert [p["beta_eff_fixed"]["abs-mean"] for p in full.points] == beta


def test_fixed_batch_runs_keep_the_divergence_guard_on_evaluations(data, monkeypatch):
    """--fixed-batch adds a callback to the evaluation listeners; the guard must stay among them."""
    import ncap.training.loop as loop
    from ncap.exceptions import CandidateError

    monkeypatch.setattr(loop, "evaluate", lambda *args, **kwargs: (float("inf"), 0.5))
    config = FinetuneConfig(epochs=1, eval_every=3, batch_size=32, probe_hidden=(16, 12, 8),
                            variants=("signed",), fixed_batch=30)  # fmt: skip
    with pytest.raises(CandidateError, match="the validation loss is inf"):
        finetune(_backbone(), 24, data, config)
