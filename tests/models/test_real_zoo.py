"""End to end through `ncap rank`: timm and torchvision architectures on an image folder.

Random-initialised weights (no network); three timm and three torchvision families, next to the
failures a user meets: a pretrained model whose weights are not cached, an unknown architecture and
a model whose channels do not fit the data.
"""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from ncap.cli.commands import main

TIMM = ["timm:resnet10t@random", "timm:mobilenetv3_small_050@random", "timm:efficientnet_b0@random"]
TV = ["tv:resnet18@random", "tv:squeezenet1_0@random", "tv:inception_v3@random"]
FAILING = {
    "tv:resnet18": "are not cached",  # pretrained, but nothing in the empty torch hub cache
    "timm:resnet_nope@random": "unknown timm architecture",
}
GREY = ["cnn-s", "lenet"]  # the built-in zoo is single-channel and 28 px; the folder is RGB, 20 px


def _image_folder(root, rng):
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for cls in ("red", "green", "blue"):
            (root / split / cls).mkdir(parents=True)
            for k in range(n):
                image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / split / cls / f"{k}.png")
    return root


@pytest.fixture
def offline_caches(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("NCAP_OFFLINE", "1")


def test_rank_timm_and_torchvision_models_on_an_image_folder(
    tiny_zoo, offline_caches, tmp_path, capsys
):
    data = _image_folder(tmp_path / "shapes", np.random.default_rng(0))
    out = tmp_path / "out"
    models = TIMM + TV + GREY + list(FAILING)
    code = main(
        ["rank", "--models", ",".join(models), "--data", str(data), "--out", str(out),
         "--steps", "3", "--eval-every", "1", "--batch-size", "4", "--features", "linear",
         "--no-progress"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    by_name = {c["name"]: c for c in results["candidates"]}
    for name in TIMM + TV:
        c = by_name[name]
        assert c["status"] == "ok", (name, c["reason"])
        assert len(c["trajectory"]) == 3 and 0 <= c["predicted_accuracy"] <= 1
        assert c["test_accuracy"] is not None and c["test"]["step"] == 3
        assert c["runtime"]["device"] == "cpu" and c["runtime"]["input"]["channels"] == 3
        assert c["backbone"]["weights"] == "random"
    assert by_name["tv:inception_v3@random"]["runtime"]["input"]["size"] == [299, 299]
    assert by_name["timm:resnet10t@random"]["runtime"]["input"]["interpolation"] == "bicubic"
    for name, reason in FAILING.items():
        assert by_name[name]["status"] == "failed" and reason in by_name[name]["reason"], name
    reason = by_name["tv:resnet18"]["reason"]
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in reason
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in reason
    for name in GREY:  # each candidate its own conversion of the same stored RGB images
        c = by_name[name]
        assert c["status"] == "ok", (name, c["reason"])
        assert c["runtime"]["input"]["channels"] == 1
    assert by_name["lenet"]["runtime"]["input"]["size"] == [28, 28]  # an MLP/LeNet: resized
    assert by_name["cnn-s"]["runtime"]["input"]["size"] is None  # a CNN: the data's own size
    assert sorted(results["ranking"]) == sorted(TIMM + TV + GREY)
    assert results["settings"]["dataset"]["n_test"] == 6
    assert results["settings"]["runtime"]["executor"] == "local"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["name"] for r in rows if r["test_accuracy"]} == set(TIMM + TV + GREY)
    assert "test acc %" in printed
    # every finished candidate was persisted on its own
    assert len(list((out / "candidates").glob("*.json"))) == len(models)


def test_grey_data_feeds_rgb_models_and_input_size_override(tmp_path):
    from ncap.data.folders import dataset_from_arrays
    from ncap.predict.capacitance import PredictorSettings
    from ncap.ranking.rank import rank
    from ncap.training.config import FinetuneConfig

    rng = np.random.default_rng(1)
    data = dataset_from_arrays(
        rng.integers(0, 256, (16, 28, 28), dtype=np.uint8), np.arange(16) % 2
    )
    config = FinetuneConfig(steps=3, eval_every=1, batch_size=4, input_size=32)
    result = rank(
        ["tv:mobilenet_v3_small@random", "timm:mobilenetv3_small_050@random"],
        data,
        out_dir=tmp_path,
        config=config,
        predictor=PredictorSettings(features="linear"),
    )
    for c in result.candidates:
        assert c["status"] == "ok", c["reason"]
        assert c["runtime"]["input"]["size"] == [32, 32] and c["runtime"]["input"]["channels"] == 3
