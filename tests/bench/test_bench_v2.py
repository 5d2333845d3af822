"""bench-v2: the fixed-batch beta_eff, the target shifts, the plan and its schedule."""

import copy
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import ncap
from ncap.bench.build import build_benchmark
from ncap.bench.plans import V2_PLAN, V2_SMOKE_PLAN, BenchPlan, Target
from ncap.data.dataset import MEAN, STD
from ncap.data.folders import dataset_from_arrays
from ncap.data.registry import load_dataset
from ncap.data.shifts import apply_shift, check_shift
from ncap.models.builtin import model_spec, plain_cnn
from ncap.training.config import FinetuneConfig
from ncap.training.fixed_batch import FixedBatchBetaEff, fixed_probe_batch
from ncap.training.loop import finetune


def _digits():
    return load_dataset("digits", n_train=192, n_val=64)


class _Snapshots(FixedBatchBetaEff):
    """The fixed-batch hook that also keeps the weights (and BN buffers) at every evaluation."""

    def __init__(self, x, y):
        super().__init__(x, y)
        self.states = []

    def on_evaluate(self, point):
        self.states.append(copy.deepcopy(self.model.state_dict()))
        super().on_evaluate(point)


def _run(dataset, hook, seed=0):
    torch.manual_seed(0)
    module, features = plain_cnn(8, 2)  # BatchNorm: the measurement must use eval mode
    config = FinetuneConfig(epochs=2, eval_every=2, probe_hidden=(16, 12, 8), seed=seed)
    traj = finetune(module, features, dataset, config, callbacks=[hook] if hook else [])
    return traj, module


def test_fixed_batch_beta_equals_probe_beta_eff_with_the_weights_at_that_point():
    dataset = _digits()
    x, y = fixed_probe_batch(dataset, 40)
    hook = _Snapshots(x, y)
    traj, module = _run(dataset, hook)
    assert len(hook.states) == len(traj.points) == 3
    values = [p["beta_eff_fixed"]["mean-abs"] for p in traj.points]
    assert len(set(values)) == len(values)  # the weights move, so does the measurement
    for point, state in zip(traj.points, hook.states, strict=True):
        # rebuild the backbone and the probe from the saved state, independently of ncap's hook
        torch.manual_seed(0)
        front, _ = plain_cnn(8, 2)
        own = list(front.state_dict())
        # the backbone's entries sit under some prefix of the fine-tuned model (front.<...>.)
        prefix = next(k[: -len(own[0])] for k in state if k.endswith("." + own[0]))
        front.load_state_dict({k: state[prefix + k] for k in own})
        front.eval()
        with torch.no_grad():
            features = front(x)
        n_layers = sum(1 for k in state if k.startswith("probe.layers.") and k.endswith(".weight"))
        weights = [state[f"probe.layers.{a}.weight"] for a in range(n_layers)]
        biases = [state[f"probe.layers.{a}.bias"] for a in range(n_layers)]
        for variant in ncap.VARIANTS:
            expected = ncap.probe_beta_eff(weights, biases, features, y, lr=1e-3, variant=variant)
            assert point["beta_eff_fixed"][variant] == pytest.approx(expected, rel=1e-10)


def test_measuring_on_the_fixed_batch_changes_neither_weights_nor_trajectory():
    dataset = _digits()
    x, y = fixed_probe_batch(dataset, 40)
    plain, plain_module = _run(dataset, None)
    measured, measured_module = _run(dataset, FixedBatchBetaEff(x, y))
    strip = lambda p: {k: v for k, v in p.items() if k not in ("wall_time", "beta_eff_fixed")}  # noqa: E731
    assert [strip(p) for p in plain.points] == [strip(p) for p in measured.points]
    for (name, a), (_, b) in zip(
        plain_module.state_dict().items(), measured_module.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert "beta_eff_fixed" not in plain.points[0]


def test_fixed_probe_batch_is_seeded_and_bounded():
    dataset = _digits()
    x1, y1 = fixed_probe_batch(dataset, 50)
    x2, y2 = fixed_probe_batch(dataset, 50)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and len(y1) == 50
    assert len(fixed_probe_batch(dataset, 10_000)[1]) == len(dataset.y_train)
    with pytest.raises(ValueError, match="at least one image"):
        fixed_probe_batch(dataset, 0)


# -- shifts ----------------------------------------------------------------------------------------
def test_rot90_and_invert_shifts():
    dataset = _digits()
    rotated = apply_shift(dataset, "rot90")
    assert torch.equal(rotated.x_train[3, 0], torch.rot90(dataset.x_train[3, 0], 1))
    assert torch.equal(rotated.y_train, dataset.y_train) and rotated.info["shift"] == "rot90"
    inverted = apply_shift(dataset, "invert")
    pixel = dataset.x_val * STD + MEAN  # the stored encoding decoded to [0, 1]
    assert torch.allclose(inverted.x_val * STD + MEAN, 1 - pixel, atol=1e-6)
    uint8 = dataset_from_arrays(np.full((12, 5, 5), 40, np.uint8), np.arange(12) % 3, n_val=3)
    assert int(apply_shift(uint8, "invert").x_train.unique()) == 215


def test_label_noise_flips_training_labels_only_to_other_classes():
    dataset = load_dataset("digits", n_train=1000, n_val=200)
    noisy = apply_shift(dataset, "label-noise-0.4", seed=3)
    flipped = noisy.y_train != dataset.y_train
    assert 0.35 < float(flipped.float().mean()) < 0.45
    assert noisy.info["label_noise"]["flipped"] == int(flipped.sum())
    assert torch.equal(noisy.y_val, dataset.y_val) and torch.equal(noisy.x_train, dataset.x_train)
    assert int(noisy.y_train.min()) >= 0 and int(noisy.y_train.max()) < 10
    again = apply_shift(dataset, "label-noise-0.4", seed=3)
    assert torch.equal(again.y_train, noisy.y_train)


@pytest.mark.parametrize("bad", ["blur", "label-noise-1.5", "label-noise-0", "rot"])
def test_unknown_shifts_are_refused(bad):
    with pytest.raises(ValueError, match="unknown shift"):
        check_shift(bad)


# -- the plan --------------------------------------------------------------------------------------
def test_v2_plan_meets_its_design():
    families = {model_spec(m).family for m in V2_PLAN.models}
    assert len(V2_PLAN.models) == len(set(V2_PLAN.models)) >= 40
    assert len(families) >= 8
    assert sum(f.startswith("timm-") for f in families) >= 3
    assert len(V2_PLAN.targets) >= 8 and V2_PLAN.seeds == (0, 1) and V2_PLAN.epochs == 40
    for target in V2_PLAN.targets:  # nothing comes from the Fashion-MNIST test split
        assert target.dataset.startswith("fashion-mnist") or target.dataset == "digits"
        V2_PLAN.config(target.n_train, 0)  # divisible into quarter epochs
        if target.shift:
            check_shift(target.shift)


def test_v2_schedule_is_dense_early_and_in_the_last_epoch():
    steps_per_epoch = 8  # 512 training images
    config = V2_PLAN.config(512, 0)
    assert config.interval(512) == steps_per_epoch
    extra = V2_PLAN.extra_eval_steps(512)
    total = 40 * steps_per_epoch
    every = set(range(steps_per_epoch, total + 1, steps_per_epoch)) | set(extra)
    epochs = sorted(s / steps_per_epoch for s in every)
    quarter = [k / 4 for k in range(1, 33)]  # every quarter epoch up to 20% of T = 8 epochs
    assert epochs[:32] == quarter
    assert epochs[32:-4] == list(range(9, 40))  # then once per epoch
    assert epochs[-4:] == [39.25, 39.5, 39.75, 40.0]  # the truth: the mean over the last epoch
    assert BenchPlan(models=(), targets=()).extra_eval_steps(512) == ()


def test_v2_smoke_build_records_both_measurements(tmp_path, monkeypatch):
    monkeypatch.setenv("NCAP_CACHE_DIR", str(tmp_path / "cache"))
    plan = BenchPlan(**(V2_SMOKE_PLAN.__dict__ | {"models": ("mlp-xs",), "epochs": 2.0}))
    results = build_benchmark(tmp_path / "v2.json", plan, log=None)
    assert len(results["runs"]) == 4
    for run in results["runs"]:
        assert run["runtime"]["device"] == "cpu"
        for point in run["points"]:
            for key in ("beta_eff", "beta_eff_fixed"):
                assert set(point[key]) == set(ncap.VARIANTS)
                assert all(v is None or math.isfinite(v) for v in point[key].values())
    shifted = [r for r in results["runs"] if r["target"] == "digits-invert"]
    plain = [r for r in results["runs"] if r["target"] == "digits"]
    assert shifted[0]["points"][-1]["val_loss"] != plain[0]["points"][-1]["val_loss"]
    assert results["zoo"]["mlp-xs"]["pretrain_epochs"] == 1.0


def test_training_free_step_on_a_uint8_image_folder(tmp_path, monkeypatch):
    """LogME used to feed the stored uint8 images straight into the backbone and crash."""
    from PIL import Image

    monkeypatch.setenv("NCAP_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / "imgs" / f"c{c}").mkdir(parents=True)
        for k in range(40):
            pixels = rng.integers(0, 120, (28, 28)) + 120 * c
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "imgs" / f"c{c}" / f"{k}.png")
    plan = BenchPlan(
        models=("mlp-xs",),
        targets=(Target("folder", str(tmp_path / "imgs"), None, None),),
        epochs=8.0,
        evals_per_epoch=1,
        pretrain_data=V2_SMOKE_PLAN.pretrain_data,
        name="folder",
    )
    results = build_benchmark(tmp_path / "f.json", plan, log=None)
    logme = results["training_free"]["folder"]["mlp-xs"]["logme"]
    assert math.isfinite(logme)
    assert results["runs"][0]["points"][-1]["val_accuracy"] > 0.9  # the classes are separable


def test_cli_v2_smoke_plan(tmp_path):
    env = {"NCAP_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "PATH": ""}
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ncap.cli",
            "bench",
            "build",
            "--plan",
            "v2-smoke",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["plan"]["name"] == "v2-smoke" and len(results["runs"]) == 12
    assert "beta_eff_fixed" in results["runs"][0]["points"][0]
