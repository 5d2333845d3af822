"""The model registry: named candidates, one way to create them.

A registry entry turns a name into a :class:`Backbone`: a torch module mapping an input batch to a
feature vector, with its feature size. Names without a prefix are ncap's built-in zoo of small
architectures, pretrained on a source task (Fashion-MNIST classes 0-4) on first use and cached.
Other sources register a prefix (``timm:``, ``tv:``, ...) with :func:`register_source`.

>>> from ncap.zoo import list_models
>>> "resnet-s" in list_models()
True
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncap.datasets import MEAN, STD
from ncap.inputs import InputSpec

__all__ = [
    "Backbone",
    "ModelSpec",
    "cache_dir",
    "create_backbone",
    "list_models",
    "pretrain",
    "register_model",
    "register_source",
]


@dataclass
class Backbone:
    """A feature extractor and what is known about it.

    ``num_features`` may be None: fine-tuning then reads it off the first forward pass.
    ``input_spec`` is the input convention the model was pretrained with (None: the dataset's
    stored images as they are).
    """

    name: str
    module: nn.Module
    num_features: int | None
    info: dict[str, Any] = field(default_factory=dict)  # source accuracy, parameter count, ...
    input_spec: InputSpec | None = None


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

    def recipe(self) -> dict[str, Any]:
        return {"name": self.name, "epochs": self.pretrain_epochs, "lr": self.pretrain_lr}


_MODELS: dict[str, ModelSpec] = {}
_SOURCES: dict[str, Callable[..., Backbone]] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a built-in architecture to the registry (names must be unique)."""
    if spec.name in _MODELS:
        raise ValueError(f"model {spec.name!r} is already registered.")
    _MODELS[spec.name] = spec
    return spec


def register_source(prefix: str, factory: Callable[..., Backbone]) -> None:
    """Register a model source: ``create_backbone(f"{prefix}:{name}")`` calls ``factory(name)``."""
    _SOURCES[prefix] = factory


def list_models() -> list[str]:
    """Names of the built-in architectures."""
    return sorted(_MODELS)


def model_spec(name: str) -> ModelSpec:
    if name not in _MODELS:
        raise ValueError(
            f"unknown model {name!r}. Built-in models: {', '.join(list_models())}"
            + (
                f"; sources: {', '.join(p + ':<name>' for p in sorted(_SOURCES))}"
                if _SOURCES
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


DEMO_MODELS = ("mlp-s", "lenet", "cnn-s", "vgg-s", "resnet-s", "mobilenet-s")
_register_builtins()


# -- pretraining and the cache ---------------------------------------------------------------------
def cache_dir() -> Path:
    """ncap's cache folder: ``$NCAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/ncap``, else ``~/.cache/ncap``."""
    if os.environ.get("NCAP_CACHE_DIR"):
        return Path(os.environ["NCAP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ncap"


PRETRAIN_DATA = {"dataset": "fashion-mnist-0-4", "n_train": 6000, "n_val": 2000, "seed": 0}
PRETRAIN_FALLBACK = {"dataset": "digits", "n_train": None, "n_val": 450, "seed": 0}


def _cache_key(spec: ModelSpec, data: dict[str, Any]) -> str:
    blob = json.dumps({"recipe": spec.recipe(), "data": data, "v": 1}, sort_keys=True)
    return f"{spec.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@functools.lru_cache(maxsize=2)
def _source_dataset(name: str, n_train: int | None, n_val: int | None, seed: int):
    """The pretraining data, loaded once per process for the whole zoo."""
    from ncap.datasets import load_dataset

    return load_dataset(name, n_train=n_train, n_val=n_val, seed=seed)


def pretrain(
    spec: ModelSpec, *, data: dict[str, Any] | None = None, log: Callable[[str], None] | None = None
) -> tuple[nn.Module, int, dict[str, Any]]:
    """Build ``spec`` and pretrain it with a linear head on the source task, or load it from cache.

    Deterministic for a given recipe; the state dict and a JSON record (source accuracy, time) are
    written to the cache atomically and read back with ``torch.load(..., weights_only=True)``.
    """
    from ncap.datasets import fashion_mnist_dir
    from ncap.storage import atomic_write_json, atomic_write_torch

    if data is None:
        data = PRETRAIN_DATA if fashion_mnist_dir() is not None else PRETRAIN_FALLBACK
    key = _cache_key(spec, data)
    folder = cache_dir() / "zoo"
    weights_path, record_path = folder / f"{key}.pt", folder / f"{key}.json"
    torch.manual_seed(0)
    module, num_features = spec.build()
    if weights_path.exists() and record_path.exists():
        module.load_state_dict(torch.load(weights_path, weights_only=True))
        return module, num_features, json.loads(record_path.read_text()) | {"cached": True}
    if log:
        log(f"pretraining {spec.name} on {data['dataset']} (first use; cached afterwards)")
    source = _source_dataset(data["dataset"], data["n_train"], data["n_val"], data["seed"])
    head = nn.Linear(num_features, source.num_classes)
    model = nn.Sequential(module, head)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.pretrain_lr)
    n = len(source.y_train)
    steps = int(round(spec.pretrain_epochs * n / 64))
    start = time.perf_counter()
    model.train()
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for _ in range(steps):
        if cursor + 64 > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + 64]
        cursor += 64
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(source.x_train[idx]), source.y_train[idx])
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        correct = sum(
            int((model(source.x_val[i : i + 512]).argmax(1) == source.y_val[i : i + 512]).sum())
            for i in range(0, len(source.y_val), 512)
        )
    record = {
        "model": spec.name,
        "family": spec.family,
        "source_dataset": data["dataset"],
        "source_accuracy": correct / len(source.y_val),
        "pretrain_seconds": time.perf_counter() - start,
        "pretrain_steps": steps,
        "parameters": parameter_count(module),
        "recipe": spec.recipe(),
        "data": data,
    }
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_torch(module.state_dict(), weights_path)
    atomic_write_json(record, record_path)
    if log:
        log(
            f"pretrained {spec.name}: source accuracy {100 * record['source_accuracy']:.1f}% "
            f"in {record['pretrain_seconds']:.1f} s ({steps} steps), cached in {weights_path}"
        )
    return module, num_features, record | {"cached": False}


def create_backbone(name: str, *, log: Callable[[str], None] | None = None) -> Backbone:
    """Resolve a candidate name to a (pretrained) backbone.

    ``"prefix:rest"`` goes to the source registered for ``prefix``; other names are built-in models.
    """
    if ":" in name and not Path(name).exists():
        prefix, rest = name.split(":", 1)
        if prefix not in _SOURCES:
            raise ValueError(
                f"unknown model source {prefix!r} in {name!r}; known sources: "
                f"{', '.join(sorted(_SOURCES)) or 'none'}; built-in models: {', '.join(list_models())}."
            )
        return _SOURCES[prefix](rest)
    spec = model_spec(name)
    module, num_features, record = pretrain(spec, log=log)
    info = {
        k: record[k]
        for k in ("family", "source_accuracy", "parameters", "pretrain_seconds", "cached")
    }
    return Backbone(
        name=name, module=module, num_features=num_features, info=info, input_spec=BUILTIN_INPUT
    )


def describe_models() -> list[dict[str, Any]]:
    """One row per built-in model: name, family, description, pretraining recipe."""
    return [asdict(spec) | {"build": None} for spec in (_MODELS[n] for n in list_models())]


def _register_zoo_sources() -> None:
    from ncap.zoo_sources import register_zoo_sources

    register_zoo_sources()


_register_zoo_sources()
