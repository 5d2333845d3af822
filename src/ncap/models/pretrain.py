"""Pretrain the built-in zoo on a source task, once, and cache the weights; the zoo's model source.

What the zoo is pretrained on is a :class:`PretrainSpec` passed as an option
(``create_backbone("resnet-s", pretrain=PretrainSpec("digits", None, 450))``), by default
:func:`default_pretrain`: Fashion-MNIST classes 0-4 when installed, else scikit-learn's digits.
The cache key covers the architecture's recipe and the spec, so each spec has its own weights.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncap._paths import cache_dir
from ncap.data.idx import fashion_mnist_dir
from ncap.data.inputs import InputAdapter, is_identity
from ncap.data.registry import load_dataset
from ncap.models.backbone import Backbone, parameter_count
from ncap.models.builtin import BUILTIN_INPUT, ModelSpec, fixed_size, list_models, model_spec
from ncap.models.registry import register_source
from ncap.storage import atomic_write_json, atomic_write_torch
from ncap.training.callbacks import Callback
from ncap.training.loop import train_steps

__all__ = [
    "PRETRAIN_DATA",
    "PRETRAIN_FALLBACK",
    "PretrainSpec",
    "default_pretrain",
    "pretrain",
    "zoo_weights_path",
]


@dataclass(frozen=True)
class PretrainSpec:
    """The source task of the built-in zoo: a dataset name, its sizes and the split seed."""

    dataset: str
    n_train: int | None
    n_val: int | None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "seed": self.seed,
        }


PRETRAIN_DATA = PretrainSpec("fashion-mnist-0-4", 6000, 2000, 0)
PRETRAIN_FALLBACK = PretrainSpec("digits", None, 450, 0)


def default_pretrain() -> PretrainSpec:
    """Fashion-MNIST classes 0-4 when installed, else scikit-learn's digits (always offline)."""
    return PRETRAIN_DATA if fashion_mnist_dir() is not None else PRETRAIN_FALLBACK


def _cache_key(spec: ModelSpec, data: dict[str, Any]) -> str:
    blob = json.dumps({"recipe": spec.recipe(), "data": data, "v": 1}, sort_keys=True)
    return f"{spec.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def source_task(spec: ModelSpec, data: PretrainSpec | None = None) -> PretrainSpec:
    """The data ``spec`` is pretrained on: ``data`` (default :func:`default_pretrain`), or the
    model's own source (``spec.source``) at ``data``'s sizes and split seed."""
    data = data or default_pretrain()
    if spec.source is not None:
        data = PretrainSpec(spec.source, data.n_train, data.n_val, data.seed)
    return data


def zoo_weights_path(name: str, data: PretrainSpec | None = None) -> Path:
    """Where the built-in model ``name``'s pretrained weights are cached (present or not)."""
    spec = model_spec(name)
    key = _cache_key(spec, source_task(spec, data).to_dict())
    return cache_dir() / "zoo" / f"{key}.pt"


@functools.lru_cache(maxsize=2)
def _source_dataset(name: str, n_train: int | None, n_val: int | None, seed: int):
    """The pretraining data, loaded once per process for the whole zoo."""
    return load_dataset(name, n_train=n_train, n_val=n_val, seed=seed)


def _pretrain_batches(source, steps: int, generator: torch.Generator, batch: int = 64):
    """The pretraining's batches: a seeded shuffle, reshuffled before a batch would run past the
    end (so every batch is full)."""
    n = len(source.y_train)
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for _ in range(steps):
        if cursor + batch > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        yield source.x_train[idx], source.y_train[idx]


def pretrain(
    spec: ModelSpec,
    *,
    data: PretrainSpec | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, int, dict[str, Any]]:
    """Build ``spec`` and pretrain it with a linear head on the source task, or load it from cache.

    Deterministic for a given recipe; the state dict and a JSON record (source accuracy, time) are
    written to the cache atomically and read back with ``torch.load(..., weights_only=True)``.
    ``data`` is the source task (default: :func:`default_pretrain`); a model with its own source
    (``spec.source``) is pretrained on that dataset at ``data``'s sizes and split seed. Source
    images stored in another encoding than the zoo's (uint8 generated datasets) pass the input
    adapter first.
    """
    data = source_task(spec, data).to_dict()
    key = _cache_key(spec, data)
    folder = cache_dir() / "zoo"
    weights_path, record_path = folder / f"{key}.pt", folder / f"{key}.json"
    torch.manual_seed(0)
    module, num_features = spec.build()
    if weights_path.exists() and record_path.exists():
        try:
            module.load_state_dict(torch.load(weights_path, weights_only=True))
            return module, num_features, json.loads(record_path.read_text()) | {"cached": True}
        except Exception as err:  # a damaged cache entry (truncated, edited): pretrain again
            if log:
                log(f"cached {spec.name} in {weights_path} is damaged ({type(err).__name__}); "
                    "pretraining it again")  # fmt: skip
            torch.manual_seed(0)
            module, num_features = spec.build()
    if log:
        log(f"pretraining {spec.name} on {data['dataset']} (first use; cached afterwards)")
    source = _source_dataset(data["dataset"], data["n_train"], data["n_val"], data["seed"])
    head = nn.Linear(num_features, source.num_classes)
    model = nn.Sequential(module, head)
    if not is_identity(source.mean, source.std, source.channels, source.image_size, BUILTIN_INPUT):
        adapter = InputAdapter(data_mean=source.mean, data_std=source.std, spec=BUILTIN_INPUT)
        model = nn.Sequential(adapter, module, head)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.pretrain_lr)
    n = len(source.y_train)
    steps = int(round(spec.pretrain_epochs * n / 64))
    start = time.perf_counter()
    model.train()
    progress = [_PretrainProgress(spec.name, steps, log)] if log else []
    train_steps(model, _pretrain_batches(source, steps, generator), optimizer, callbacks=progress)
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


class _PretrainProgress(Callback):
    """``pretraining lenet: 50% (300/600 steps, 12 s, loss 0.41)`` at every quarter of the steps."""

    def __init__(self, name: str, total: int, log: Callable[[str], None]) -> None:
        self.name, self.total, self.log = name, total, log
        self.marks = {max(1, round(total * q / 4)): q * 25 for q in (1, 2, 3)}
        self.start = time.perf_counter()

    def on_step_end(self, step: int, loss: float, batch_size: int) -> None:
        if step in self.marks:
            elapsed = time.perf_counter() - self.start
            self.log(
                f"pretraining {self.name}: {self.marks[step]}% ({step}/{self.total} steps, "
                f"{elapsed:.0f} s, about {elapsed * (self.total - step) / step:.0f} s left, "
                f"loss {loss:.3f})"
            )


_pretrain = pretrain  # (zoo_backbone's option of the same name shadows it)


def zoo_backbone(
    name: str,
    *,
    log: Callable[[str], None] | None = None,
    pretrain: PretrainSpec | None = None,
) -> Backbone:
    """A built-in model, pretrained on ``pretrain`` (default :func:`default_pretrain`) or cached."""
    spec = model_spec(name)
    module, num_features, record = _pretrain(spec, data=pretrain, log=log)
    info = {
        k: record[k]
        for k in ("family", "source_accuracy", "parameters", "pretrain_seconds", "cached")
    } | {"source_dataset": record["data"]["dataset"]}
    size = fixed_size(name)  # an MLP or a LeNet gets its pretraining size, whatever the data's
    input_spec = BUILTIN_INPUT if size is None else BUILTIN_INPUT.with_size(size)
    return Backbone(
        name=name, module=module, num_features=num_features, info=info, input_spec=input_spec
    )


zoo_backbone.names = list_models  # listed in the registry's unknown-source message
register_source("", zoo_backbone)
