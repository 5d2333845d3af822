"""A ranking with real ImageNet checkpoints (tiny: small images, few steps) and ncap demo --imagenet."""

import json

import numpy as np
import pytest

import ncap
from ncap.cli import main
from ncap.models.checkpoints import PACKAGED
from ncap.ranking import demo
from ncap.ranking.demo import ImagenetDemoTask, keep_test, twin_comparison, twin_of

REAL = "tv:mobilenet_v2@IMAGENET1K_V1"


@pytest.fixture
def tiny_task(monkeypatch, tmp_path):
    """The demo's pipeline on digits, one real checkpoint and its twin, 32 px, few steps."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("NCAP_OFFLINE", "1")
    task = ImagenetDemoTask("digits", 512, 256, 100, 2.0, 32, (REAL, twin_of(REAL)))
    monkeypatch.setattr(demo, "imagenet_demo_task", lambda epochs, size=None: task)
    return task


def test_the_demo_task_pairs_each_real_checkpoint_with_its_twin():
    task = demo.imagenet_demo_task(1.0)
    assert set(task.models) == set(PACKAGED) | {twin_of(n) for n in PACKAGED}
    assert 64 <= task.input_size <= 96 and task.n_test < 1000
    assert twin_of("timm:tf_efficientnet_lite0") == "timm:tf_efficientnet_lite0@random"


def test_keep_test_takes_a_seeded_subset():
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (200, 8, 8), dtype=np.uint8), np.arange(200) % 4
    data = ncap.dataset_from_arrays(images, labels, x_test=images, y_test=labels, n_val=50)
    small = keep_test(data, 50, seed=3)
    assert len(small.y_test) == 50 and small.x_test.shape[1:] == data.x_test.shape[1:]
    assert keep_test(data, 50, seed=3).y_test.tolist() == small.y_test.tolist()
    assert keep_test(data, 50, seed=4).y_test.tolist() != small.y_test.tolist()
    assert keep_test(data, 10**6) is data


def test_a_real_checkpoint_ranks_above_its_random_twin(tiny_task, tmp_path, capsys):
    """The product's main path with a genuine ImageNet model: grey 8-px digits expanded to RGB,
    resized to 32 px with MobileNetV2's own normalisation, fine-tuned under the probe."""
    out = tmp_path / "run"
    code = main(["demo", "--imagenet", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    by_name = {c["name"]: c for c in results["candidates"]}
    real, twin = by_name[REAL], by_name[twin_of(REAL)]
    assert real["status"] == twin["status"] == "ok"
    assert real["backbone"]["weights_sha256"] == PACKAGED[REAL].sha256
    assert (
        real["runtime"]["input"]["size"] == [32, 32] and real["runtime"]["input"]["channels"] == 3
    )
    assert real["observed_accuracy"] > twin["observed_accuracy"] + 0.1
    rows = twin_comparison(results["candidates"], results["ranking"])
    assert len(rows) == 1 and rows[0]["real"]["observed_accuracy"] == real["observed_accuracy"]
    line = next(line for line in text.splitlines() if line.startswith(f"  {REAL}:"))
    assert f"observed {100 * real['observed_accuracy']:.1f}%" in line
    assert f"twin rank {rows[0]['twin']['rank']}" in line
    assert "real checkpoints ranked above their twins; the demo took" in text
