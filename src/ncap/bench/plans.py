"""The benchmark's plans: what ``ncap bench build`` runs (targets, models, seeds, schedule).

A :class:`BenchPlan` fixes every run of a benchmark; the named plans (``FULL_PLAN`` = bench-v1,
``V2_PLAN`` = bench-v2, their smoke versions and the NAS plans) are what ``--plan`` chooses.
:mod:`ncap.bench.build` runs a plan; a plan's runs must never change once a benchmark was built
from it (a resumed build checks the plan's identity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ncap.capacitance.variants import VARIANTS
from ncap.data.dataset import ImageDataset
from ncap.data.registry import load_dataset
from ncap.data.shifts import apply_shift
from ncap.exceptions import ConfigError
from ncap.models.pretrain import PretrainSpec
from ncap.storage import to_jsonable
from ncap.training.config import FinetuneConfig

__all__ = [
    "BENCH_MODELS",
    "BenchPlan",
    "FULL_PLAN",
    "NAS_PLAN",
    "NAS_SMOKE_PLAN",
    "SMOKE_PLAN",
    "Target",
    "V2_MODELS",
    "V2_PLAN",
    "V2_SMOKE_PLAN",
    "load_target",
    "plan_for",
]


@dataclass(frozen=True)
class Target:
    """A target task: a dataset, its sizes (n_train a multiple of the batch/4) and a shift.

    ``shift`` (see :mod:`ncap.data.shifts`) derives a new task from the dataset: a rotation, an
    intensity inversion or label noise on the training split.
    """

    key: str
    dataset: str
    n_train: int | None
    n_val: int | None
    image_size: int | None = None
    shift: str | None = None


@dataclass(frozen=True)
class BenchPlan:
    """What the builder runs."""

    models: tuple[str, ...]
    targets: tuple[Target, ...]
    seeds: tuple[int, ...] = (0, 1)
    epochs: float = 40.0
    evals_per_epoch: int = 4
    # the fine-tuning settings a plan varies; their defaults are FinetuneConfig's
    batch_size: int = FinetuneConfig.batch_size
    lr: float = FinetuneConfig.lr
    optimizer: str = FinetuneConfig.optimizer
    probe_hidden: tuple[int, ...] = FinetuneConfig.probe_hidden
    pretrain_data: dict[str, Any] | None = None  # None: the zoo's default source task
    name: str = "full"
    kind: str = "zoo"  # "zoo": pretrained models, LogME; "nas": nb201 architectures, proxies
    ceiling_models: int | None = None  # only the first k models get seeds[1:] (None: all)
    nas_width: int = 8
    nas_cells: int = 1
    # evaluation schedule: evals_per_epoch throughout (None), or only up to this fraction of the
    # epochs and in the last epoch, once per epoch in between (bench-v2)
    dense_until: float | None = None
    # beta_eff also measured on a fixed batch of this many training images at every evaluation
    probe_batch: int | None = None

    def config(self, n_train: int, seed: int) -> FinetuneConfig:
        steps_per_epoch = -(-n_train // self.batch_size)
        if steps_per_epoch % self.evals_per_epoch:
            raise ConfigError(
                f"{n_train} training images make {steps_per_epoch} steps per epoch, not divisible "
                f"into {self.evals_per_epoch} evaluations; choose n_train accordingly."
            )
        return FinetuneConfig(
            epochs=self.epochs,
            eval_every=steps_per_epoch // self.evals_per_epoch
            if self.dense_until is None
            else steps_per_epoch,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            probe_hidden=self.probe_hidden,
            seed=seed,
            # pinned to ncap 0.2's defaults, so the plans' runs (and a resumed build) stay as
            # they were: every variant per step, every evaluation on the whole validation split
            variants=VARIANTS,
            val_share=None,
        )

    def extra_eval_steps(self, n_train: int) -> tuple[int, ...]:
        """Evaluation steps besides once per ``eval_every``: the dense part of the schedule."""
        if self.dense_until is None:
            return ()
        steps_per_epoch = -(-n_train // self.batch_size)
        every = steps_per_epoch // self.evals_per_epoch
        total = int(round(self.epochs * steps_per_epoch))
        dense_end = int(round(self.dense_until * total))
        last_epoch = total - steps_per_epoch
        return tuple(s for s in range(every, total + 1, every) if s <= dense_end or s > last_epoch)

    def seeds_for(self, model_index: int) -> tuple[int, ...]:
        """Seeds run for the model at this position of ``models``."""
        if self.ceiling_models is None or model_index < self.ceiling_models:
            return self.seeds
        return self.seeds[:1]

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, plan: dict[str, Any]) -> BenchPlan:
        """The plan recorded in a results file (fields it lacks take their defaults)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in plan.items() if k in known}
        for key in ("models", "seeds", "probe_hidden"):
            if key in values:
                values[key] = tuple(values[key])
        values["targets"] = tuple(Target(**t) for t in plan["targets"])
        return cls(**values)

    def model_options(self) -> dict[str, Any]:
        """Options of every ``create_backbone`` call: the NAS space, or the zoo's pretraining data."""
        if self.kind == "nas":
            channels = load_target(self.targets[0]).input_shape[0]
            return {"width": self.nas_width, "cells": self.nas_cells, "in_channels": channels}
        if self.pretrain_data is not None:  # the smoke plan pretrains on tiny data
            return {"pretrain": PretrainSpec(**self.pretrain_data)}
        return {}


BENCH_MODELS = (
    "mlp-xs", "mlp-s", "lenet", "lenet-short", "cnn-xs", "cnn-s", "cnn-m",
    "vgg-s", "vgg-m", "resnet-s", "resnet-s-short", "resnet-m", "mobilenet-s", "mobilenet-m",
)  # fmt: skip

FULL_PLAN = BenchPlan(
    models=BENCH_MODELS,
    targets=(
        Target("fm59", "fashion-mnist-5-9", 1024, 1000),
        Target("digits", "digits", 1280, 450),
        Target("fm59-500", "fashion-mnist-5-9-500", 500, 1000),
    ),
)

SMOKE_PLAN = BenchPlan(
    models=("mlp-xs", "lenet-short", "cnn-xs"),
    targets=(Target("digits", "digits", 256, 128),),
    seeds=(0, 1),
    epochs=3.0,
    pretrain_data={"dataset": "digits", "n_train": 256, "n_val": 128, "seed": 0},
    name="smoke",
)


_TARGET_CACHE: dict[Target, ImageDataset] = {}


def load_target(target: Target) -> ImageDataset:
    if target not in _TARGET_CACHE:
        _TARGET_CACHE.clear()
        dataset = load_dataset(target.dataset, n_train=target.n_train, n_val=target.n_val)
        _TARGET_CACHE[target] = apply_shift(dataset, target.shift) if target.shift else dataset
    return _TARGET_CACHE[target]


def _nas_models(n: int, seed: int = 0) -> tuple[str, ...]:
    from ncap.models.nb201 import sample_archs

    return tuple(f"nb201:{a}" for a in sample_archs(n, seed=seed))


NAS_PLAN = BenchPlan(
    models=_nas_models(60),
    targets=(Target("fm10-14px", "fashion-mnist", 512, 500, image_size=14),),
    seeds=(0, 1),
    epochs=20.0,
    name="nas",
    kind="nas",
    ceiling_models=20,
)

NAS_SMOKE_PLAN = BenchPlan(
    models=_nas_models(4),
    targets=(Target("digits-14px", "digits", 256, 128, image_size=14),),
    seeds=(0, 1),
    epochs=3.0,
    name="nas-smoke",
    kind="nas",
    ceiling_models=2,
)


V2_MODELS = BENCH_MODELS + (
    "mlp-m", "mlp-xs-short", "mlp-s-short", "lenet-w", "lenet-long", "cnn-s-short", "cnn-s3",
    "vgg-xs", "vgg-s-short", "resnet-xs", "resnet-s-long",
    "mobilenet-xs", "mobilenet-s-short", "mobilenet-s-long",
    "timm-resnet", "timm-resnet-short", "timm-resnet10t-n",
    "timm-effnet", "timm-effnet-gn", "timm-effnet-short",
    "timm-vit-p7", "timm-vit-p7-short", "timm-vit-p4",
    "timm-mambaout", "timm-mambaout-short", "timm-mambaout-long",
)  # fmt: skip

# bench-v2 (docs/benchmark.md): 40 models of 10 families x 9 targets x 2 seeds; every target comes
# from Fashion-MNIST's training split or from digits (the Fashion-MNIST test split stays unused)
V2_PLAN = BenchPlan(
    models=V2_MODELS,
    targets=(
        Target("fm59", "fashion-mnist-5-9", 1024, 500),
        Target("digits", "digits", 512, 450),
        Target("fm59-500", "fashion-mnist-5-9-500", 500, 500),
        Target("fm10", "fashion-mnist", 768, 500),
        Target("footwear", "fashion-mnist-footwear", 512, 500),
        Target("fm59-rot90", "fashion-mnist-5-9", 512, 500, shift="rot90"),
        Target("fm59-invert", "fashion-mnist-5-9", 512, 500, shift="invert"),
        Target("fm59-noise40", "fashion-mnist-5-9", 512, 500, shift="label-noise-0.4"),
        Target("digits-256", "digits", 256, 450),
    ),
    seeds=(0, 1),
    epochs=40.0,
    dense_until=0.2,
    probe_batch=128,
    name="v2",
)

V2_SMOKE_PLAN = BenchPlan(
    models=("mlp-xs", "cnn-xs", "timm-vit-p7-short"),
    targets=(
        Target("digits", "digits", 256, 128),
        Target("digits-invert", "digits", 256, 128, shift="invert"),
    ),
    seeds=(0, 1),
    epochs=4.0,
    dense_until=0.25,
    probe_batch=32,
    pretrain_data={"dataset": "digits", "n_train": 256, "n_val": 128, "seed": 0},
    name="v2-smoke",
)


def plan_for(name: str, *, models: Sequence[str] | None = None) -> BenchPlan:
    plans = {"full": FULL_PLAN, "smoke": SMOKE_PLAN, "nas": NAS_PLAN, "nas-smoke": NAS_SMOKE_PLAN}
    plans |= {"v2": V2_PLAN, "v2-smoke": V2_SMOKE_PLAN}
    if name not in plans:
        raise ConfigError(f"unknown benchmark plan {name!r}; choose one of {sorted(plans)}.")
    plan = plans[name]
    if models:
        plan = BenchPlan(**(plan.__dict__ | {"models": tuple(models)}))
    return plan
