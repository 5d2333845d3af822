"""timm:, tv: and py: model sources: heads, input conventions, weights caches and their errors."""

import sys
import textwrap

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from ncap.exceptions import PretrainedWeightsMissing
from ncap.models.registry import create_backbone
from ncap.models.sources import split_weights


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches, and no network."""
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("NCAP_OFFLINE", "1")
    return tmp_path


def _features(backbone, spec_size=None):
    size = spec_size or backbone.input_spec.size
    backbone.module.eval()
    with torch.no_grad():
        return backbone.module(torch.rand(2, 3, *size))


def test_split_weights():
    assert split_weights("resnet50@IMAGENET1K_V2") == ("resnet50", "IMAGENET1K_V2")
    assert split_weights("resnet50") == ("resnet50", None)
    with pytest.raises(ValueError, match="@random"):
        split_weights("resnet50@")


@pytest.mark.parametrize(
    "name, size, mean, interpolation",
    [
        ("timm:mobilenetv3_small_050@random", (224, 224), 0.485, "bicubic"),
        ("timm:vit_tiny_patch16_224@random", (224, 224), 0.5, "bicubic"),
        ("tv:inception_v3@random", (299, 299), 0.485, "bilinear"),
        ("tv:squeezenet1_0@random", (224, 224), 0.485, "bilinear"),
    ],
)
def test_input_convention_and_head_come_from_the_model(name, size, mean, interpolation):
    backbone = create_backbone(name)
    spec = backbone.input_spec
    assert spec.channels == 3 and spec.size == size and spec.interpolation == interpolation
    assert spec.mean[0] == pytest.approx(mean)
    out = _features(backbone)
    assert out.shape[0] == 2 and out.ndim == 2
    assert out.shape[1] == backbone.num_features  # the classifier is gone, features remain
    assert backbone.info["weights"] == "random"


def test_torchvision_classifier_removed_from_each_family():
    for name, features in [("resnet18", 512), ("densenet121", 1024), ("mobilenet_v3_small", 1024)]:
        backbone = create_backbone(f"tv:{name}@random")
        assert backbone.num_features == features
        assert _features(backbone, (64, 64)).shape == (2, features)


def test_unknown_architectures_suggest_close_names():
    with pytest.raises(ValueError, match="unknown timm architecture 'resnet5O'.*resnet50"):
        create_backbone("timm:resnet5O")
    with pytest.raises(ValueError, match="unknown torchvision architecture 'resnt18'.*resnet18"):
        create_backbone("tv:resnt18")
    with pytest.raises(ValueError, match="unknown weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        create_backbone("tv:resnet18@IMAGENET9K")


def test_missing_pretrained_weights_say_what_to_download_and_where(empty_caches):
    with pytest.raises(PretrainedWeightsMissing) as err:
        create_backbone("tv:resnet18")
    text = str(err.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in text
    assert str(empty_caches / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in text
    assert "tv:resnet18@random" in text
    with pytest.raises(PretrainedWeightsMissing) as err:
        create_backbone("timm:resnet10t")
    text = str(err.value)
    hub_id = timm.models.get_pretrained_cfg("resnet10t").hf_hub_id
    assert f"huggingface-cli download {hub_id}" in text and str(empty_caches / "hf") in text
    with pytest.raises(PretrainedWeightsMissing, match="does not exist"):
        create_backbone(f"timm:resnet10t@{empty_caches / 'nope.safetensors'}")


def test_pretrained_weights_load_from_the_libraries_caches(empty_caches):
    # torchvision: a file in $TORCH_HOME/hub/checkpoints is used without any download
    reference = torchvision.models.resnet18()
    path = empty_caches / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    backbone = create_backbone("tv:resnet18")
    assert backbone.info["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    torch.testing.assert_close(backbone.module.conv1.weight, reference.conv1.weight)
    # timm: a snapshot in the Hugging Face cache layout
    hub_id = timm.models.get_pretrained_cfg("resnet10t").hf_hub_id
    folder = empty_caches / "hf" / f"models--{hub_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    snapshot = folder / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    source = timm.create_model("resnet10t", pretrained=False)
    save_file(source.state_dict(), snapshot / "model.safetensors")
    backbone = create_backbone("timm:resnet10t")
    assert backbone.info["weights"].endswith("model.safetensors")
    torch.testing.assert_close(backbone.module.conv1[0].weight, source.conv1[0].weight)
    assert backbone.num_features == 512


def test_user_factory_with_checkpoint(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def net():
                return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

            def with_size():
                return net(), 4

            def not_a_model():
                return 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_models", None)
    import my_models

    trained = my_models.net()
    state = {f"0.{k}": v for k, v in trained[0].state_dict().items()}
    torch.save({"state_dict": state | {"fc.weight": torch.zeros(2, 4)}}, tmp_path / "ck.pt")
    backbone = create_backbone(f"py:my_models:net@{tmp_path / 'ck.pt'}")
    torch.testing.assert_close(backbone.module[0].weight, trained[0].weight)
    assert backbone.info["ignored_keys"] == ["fc.weight"]
    assert backbone.num_features is None and backbone.input_spec is None
    assert create_backbone("py:my_models:with_size").num_features == 4
    torch.save({"0.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"lacks 1 of the model's weights \(e.g. 0.bias\)"):
        create_backbone(f"py:my_models:net@{tmp_path / 'partial.pt'}")
    with pytest.raises(ValueError, match="returned int"):
        create_backbone("py:my_models:not_a_model")
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        create_backbone("py:no_such_module:f")
    with pytest.raises(ValueError, match="py:<module>:<callable>"):
        create_backbone("py:just_a_module")
