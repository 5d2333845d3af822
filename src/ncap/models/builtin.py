"""ncap's built-in zoo: small architectures, pretrained on a source task on first use and cached.

>>> from ncap.models.builtin import list_models
>>> "resnet-s" in list_models()
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ncap.data.dataset import MEAN, STD
from ncap.data.inputs import InputSpec
from ncap.exceptions import ConfigError
from ncap.models.registry import list_sources

__all__ = [
    "BUILTIN_INPUT",
    "BUILTIN_SIZE",
    "fixed_size",
    "DEMO_MODELS",
    "ModelSpec",
    "describe_models",
    "list_models",
    "model_spec",
    "register_model",
]

# the built-in zoo's convention: one channel, standardised with the Fashion-MNIST statistics, any size
BUILTIN_INPUT = InputSpec(
    channels=1, size=None, mean=(MEAN,), std=(STD,), source="ncap built-in zoo"
)


@dataclass(frozen=True)
class ModelSpec:
    """A built-in architecture: its builder, family and pretraining recipe."""

    name: str
    family: str
    build: Callable[[], tuple[nn.Module, int]]
    description: str
    pretrain_epochs: float = 2.0
    pretrain_lr: float = 1e-3
    # the dataset this model is pretrained on, at the source task's sizes (None: the source task)
    source: str | None = None

    def recipe(self) -> dict[str, Any]:
        recipe = {"name": self.name, "epochs": self.pretrain_epochs, "lr": self.pretrain_lr}
        return recipe | ({"source": self.source} if self.source else {})


_MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a built-in architecture to the registry (names must be unique)."""
    if spec.name in _MODELS:
        raise ConfigError(f"model {spec.name!r} is already registered.")
    _MODELS[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of the built-in architectures."""
    return sorted(_MODELS)


BUILTIN_SIZE = 28  # the zoo is pretrained on 28 x 28 grey images


@functools.cache
def fixed_size(name: str) -> int | None:
    """:data:`BUILTIN_SIZE` for a built-in architecture that takes only its pretraining size (an
    MLP, a LeNet, a 28-px ViT: found by running the untrained architecture on a 32-px image), None
    for one that takes any size. Such a model's input is resized to it, whatever the data's size."""
    with torch.random.fork_rng():
        module, _ = model_spec(name).build()
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, 1, BUILTIN_SIZE + 4, BUILTIN_SIZE + 4))
    except (RuntimeError, ValueError, AssertionError):
        return BUILTIN_SIZE
    return None


def model_spec(name: str) -> ModelSpec:
    if name not in _MODELS:
        raise ConfigError(
            f"unknown model {name!r}. Built-in models: {', '.join(list_models())}"
            + (
                f"; sources: {', '.join(p + ':<name>' for p in list_sources())}"
                if list_sources()
                else ""
            )
            + "."
        )
    return _MODELS[name]


# -- building blocks -------------------------------------------------------------------------------
def _conv_bn(c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(c_in, c_out, stride=stride),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def _pooled(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def mlp(width: int = 256, depth: int = 2) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = 28 * 28
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.ReLU(inplace=True)]
        n_in = width
    return nn.Sequential(*layers), width


def lenet(width: int = 16) -> tuple[nn.Module, int]:
    return (
        nn.Sequential(
            nn.Conv2d(1, width // 2, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(width // 2, width, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(width * 5 * 5, 8 * width), nn.Tanh(),
        ),
        8 * width,
    )  # fmt: skip


def plain_cnn(width: int = 16, depth: int = 2) -> tuple[nn.Module, int]:
    layers, c = [], 1
    for stage in range(depth):
        layers += [_conv_bn(c, width * 2**stage), nn.MaxPool2d(2)]
        c = width * 2**stage
    return _pooled(*layers), c


def vgg(width: int = 16, stages: int = 3, convs_per_stage: int = 2) -> tuple[nn.Module, int]:
    layers, c = [], 1
    for stage in range(stages):
        for _ in range(convs_per_stage):
            layers.append(_conv_bn(c, width * 2**stage))
            c = width * 2**stage
        layers.append(nn.MaxPool2d(2))
    return _pooled(*layers), c


def resnet(width: int = 16, blocks_per_stage: int = 1, stages: int = 3) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = [_conv_bn(1, width)]
    c = width
    for stage in range(stages):
        for b in range(blocks_per_stage):
            out = width * 2**stage
            layers.append(_BasicBlock(c, out, stride=2 if (stage > 0 and b == 0) else 1))
            c = out
    return _pooled(*layers), c


def mobilenet(width: int = 16, stages: int = 3) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = [_conv_bn(1, width, stride=1)]
    c = width
    for stage in range(stages):
        out = width * 2 ** (stage + 1)
        layers += [
            _conv_bn(c, c, stride=2, groups=c),  # depthwise
            _conv_bn(c, out, k=1),  # pointwise
            _conv_bn(out, out, groups=out),
            _conv_bn(out, out, k=1),
        ]
        c = out
    return _pooled(*layers), c


def timm_model(name: str, **kwargs: Any) -> tuple[nn.Module, int]:
    """A timm architecture without classifier for the zoo's inputs (1 channel, 28 x 28 pixels).

    Needs the ``zoo`` extra (timm). The feature size is read off a forward pass in eval mode, which
    neither changes the module's state nor draws random numbers.
    """
    import timm  # optional: timm (ncap[zoo])

    module = timm.create_model(name, pretrained=False, in_chans=1, num_classes=0, **kwargs)
    module.eval()
    with torch.no_grad():
        num_features = int(module(torch.zeros(2, 1, 28, 28)).shape[1])
    return module.train(), num_features


def torchvision_mobilenet_v2() -> tuple[nn.Module, int]:
    """torchvision's MobileNetV2 without classifier, its first convolution taking one channel."""
    import torchvision  # optional: torchvision (ncap[zoo])

    module = torchvision.models.mobilenet_v2()
    first = module.features[0][0]
    module.features[0][0] = nn.Conv2d(1, first.out_channels, 3, stride=2, padding=1, bias=False)
    module.classifier = nn.Identity()
    return module, 1280


def _register_builtins() -> None:
    entries = [
        # name, family, builder, description, pretraining epochs on the source task
        ("mlp-s", "mlp", lambda: mlp(256, 2), "2-layer MLP, width 256", 2.0),
        ("lenet", "lenet", lambda: lenet(16), "LeNet-5 style, tanh, average pooling", 2.0),
        (
            "cnn-s",
            "cnn",
            lambda: plain_cnn(16, 2),
            "2 conv-BN-ReLU-pool stages, 16-32 channels",
            2.0,
        ),
        (
            "vgg-s",
            "vgg",
            lambda: vgg(16, 3, 2),
            "VGG-like, 3 stages of 2 convs, 16-64 channels",
            2.0,
        ),
        (
            "resnet-s",
            "resnet",
            lambda: resnet(16, 1, 3),
            "ResNet-like, 3 stages of 1 basic block",
            2.0,
        ),
        (
            "mobilenet-s",
            "mobilenet",
            lambda: mobilenet(8, 3),
            "depthwise-separable, 8-64 channels",
            2.0,
        ),
        # the benchmark zoo adds depth, width and pretraining-budget variations
        ("mlp-xs", "mlp", lambda: mlp(64, 1), "1-layer MLP, width 64", 1.0),
        ("lenet-short", "lenet", lambda: lenet(16), "LeNet-5 style, pretrained for 0.1 epoch", 0.1),
        ("cnn-xs", "cnn", lambda: plain_cnn(8, 2), "2 conv stages, 8-16 channels, 0.5 epoch", 0.5),
        ("cnn-m", "cnn", lambda: plain_cnn(32, 3), "3 conv stages, 32-128 channels", 2.0),
        (
            "vgg-m",
            "vgg",
            lambda: vgg(24, 3, 2),
            "VGG-like, 3 stages of 2 convs, 24-96 channels",
            2.0,
        ),
        (
            "resnet-m",
            "resnet",
            lambda: resnet(16, 2, 3),
            "ResNet-like, 3 stages of 2 basic blocks",
            2.0,
        ),
        (
            "resnet-s-short",
            "resnet",
            lambda: resnet(16, 1, 3),
            "resnet-s pretrained for 0.25 epoch",
            0.25,
        ),
        (
            "mobilenet-m",
            "mobilenet",
            lambda: mobilenet(16, 3),
            "depthwise-separable, 16-128 channels",
            2.0,
        ),
        # bench-v2 adds sizes, depths and pretraining budgets, and four timm architectures adapted
        # to the source task's 1-channel 28-px images, pretrained by the zoo like the others
        ("mlp-m", "mlp", lambda: mlp(512, 3), "3-layer MLP, width 512", 2.0),
        ("mlp-xs-short", "mlp", lambda: mlp(64, 1), "mlp-xs pretrained for 0.1 epoch", 0.1),
        ("mlp-s-short", "mlp", lambda: mlp(256, 2), "mlp-s pretrained for 0.1 epoch", 0.1),
        ("lenet-w", "lenet", lambda: lenet(32), "LeNet-5 style, twice the width", 2.0),
        ("lenet-long", "lenet", lambda: lenet(16), "LeNet-5 style, pretrained for 5 epochs", 5.0),
        ("cnn-s-short", "cnn", lambda: plain_cnn(16, 2), "cnn-s pretrained for 0.1 epoch", 0.1),
        ("cnn-s3", "cnn", lambda: plain_cnn(16, 3), "3 conv stages, 16-64 channels", 2.0),
        (
            "vgg-xs",
            "vgg",
            lambda: vgg(8, 3, 2),
            "VGG-like, 3 stages of 2 convs, 8-32 channels",
            2.0,
        ),
        ("vgg-s-short", "vgg", lambda: vgg(16, 3, 2), "vgg-s pretrained for 0.25 epoch", 0.25),
        ("resnet-xs", "resnet", lambda: resnet(8, 1, 3), "ResNet-like, 8-32 channels", 2.0),
        ("resnet-s-long", "resnet", lambda: resnet(16, 1, 3), "resnet-s pretrained 5 epochs", 5.0),
        ("mobilenet-xs", "mobilenet", lambda: mobilenet(4, 3), "depthwise-separable, 4-32 ch", 2.0),
        (
            "mobilenet-s-short",
            "mobilenet",
            lambda: mobilenet(8, 3),
            "mobilenet-s pretrained for 0.25 epoch",
            0.25,
        ),
        (
            "mobilenet-s-long",
            "mobilenet",
            lambda: mobilenet(8, 3),
            "mobilenet-s pretrained for 5 epochs",
            5.0,
        ),
        ("timm-resnet", "timm-resnet", lambda: timm_model("test_resnet"), "timm test_resnet", 2.0),
        (
            "timm-resnet-short",
            "timm-resnet",
            lambda: timm_model("test_resnet"),
            "timm test_resnet pretrained for 0.25 epoch",
            0.25,
        ),
        (
            "timm-resnet10t-n",
            "timm-resnet",
            lambda: timm_model("resnet10t", channels=(16, 32, 64, 128)),
            "timm resnet10t with 16-128 channels",
            2.0,
        ),
        (
            "timm-effnet",
            "timm-efficientnet",
            lambda: timm_model("test_efficientnet"),
            "timm test_efficientnet (BatchNorm)",
            2.0,
        ),
        (
            "timm-effnet-gn",
            "timm-efficientnet",
            lambda: timm_model("test_efficientnet_gn"),
            "timm test_efficientnet_gn (GroupNorm)",
            2.0,
        ),
        (
            "timm-effnet-short",
            "timm-efficientnet",
            lambda: timm_model("test_efficientnet"),
            "timm test_efficientnet pretrained for 0.25 epoch",
            0.25,
        ),
        (
            "timm-vit-p7",
            "timm-vit",
            lambda: timm_model("test_vit", img_size=28, patch_size=7),
            "timm test_vit, 28 px, 7-px patches (16 tokens)",
            2.0,
        ),
        (
            "timm-vit-p7-short",
            "timm-vit",
            lambda: timm_model("test_vit", img_size=28, patch_size=7),
            "timm-vit-p7 pretrained for 0.25 epoch",
            0.25,
        ),
        (
            "timm-vit-p4",
            "timm-vit",
            lambda: timm_model("test_vit", img_size=28, patch_size=4),
            "timm test_vit, 28 px, 4-px patches (49 tokens)",
            2.0,
        ),
        (
            "timm-mambaout",
            "timm-mambaout",
            lambda: timm_model("test_mambaout"),
            "timm test_mambaout (gated CNN)",
            2.0,
        ),
        (
            "timm-mambaout-short",
            "timm-mambaout",
            lambda: timm_model("test_mambaout"),
            "timm test_mambaout pretrained for 0.25 epoch",
            0.25,
        ),
        (
            "timm-mambaout-long",
            "timm-mambaout",
            lambda: timm_model("test_mambaout"),
            "timm test_mambaout pretrained for 5 epochs",
            5.0,
        ),
        # bench-v3: the architectures of four ImageNet checkpoints (tv:mobilenet_v2,
        # timm:tf_efficientnet_lite0-2), pretrained by the zoo on the source task (1 channel)
        (
            "mobilenet-v2",
            "mobilenet-v2",
            torchvision_mobilenet_v2,
            "torchvision mobilenet_v2, 1 channel",
            2.0,
        ),
        *(
            (
                f"effnet-lite{k}",
                "efficientnet-lite",
                lambda k=k: timm_model(f"tf_efficientnet_lite{k}"),
                f"timm tf_efficientnet_lite{k}, 1 channel",
                2.0,
            )
            for k in (0, 1, 2)
        ),
    ]
    for name, family, build, description, epochs in entries:
        register_model(
            ModelSpec(
                name=name,
                family=family,
                build=build,
                description=description,
                pretrain_epochs=epochs,
            )
        )
    # bench-v3: eight architectures pretrained on a second source task, rendered letters K-T
    for base in SECOND_SOURCE_MODELS:
        spec = _MODELS[base]
        register_model(
            ModelSpec(
                name=f"{base}-{SECOND_SOURCE_SUFFIX}",
                family=spec.family,
                build=spec.build,
                description=f"{spec.description}; pretrained on {SECOND_SOURCE}",
                pretrain_epochs=spec.pretrain_epochs,
                pretrain_lr=spec.pretrain_lr,
                source=SECOND_SOURCE,
            )
        )


SECOND_SOURCE = "glyphs-letters-k-t"
SECOND_SOURCE_SUFFIX = "glyphs"
SECOND_SOURCE_MODELS = (
    "mlp-s", "lenet", "cnn-s", "vgg-xs", "resnet-xs", "mobilenet-s", "timm-effnet", "timm-vit-p7",
)  # fmt: skip

DEMO_MODELS = ("mlp-s", "lenet", "cnn-s", "vgg-s", "resnet-s", "mobilenet-s")


def describe_models() -> list[dict[str, Any]]:
    """One row per built-in model: name, family, description, pretraining recipe."""
    return [asdict(spec) | {"build": None} for spec in (_MODELS[n] for n in list_models())]


_register_builtins()
