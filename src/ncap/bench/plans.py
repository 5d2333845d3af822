"""The benchmark's plans: what ``ncap bench build`` runs (targets, models, seeds, schedule).

A :class:`BenchPlan` fixes every run of a benchmark; the named plans (``FULL_PLAN`` = bench-v1,
``V2_PLAN`` = bench-v2, their smoke versions and the NAS plans) are what ``--plan`` chooses.
:mod:`ncap.bench.build` runs a plan; a plan's runs must never change once a benchmark was built
from it (a resumed build checks the plan's identity).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ncap.capacitance.variants import VARIANTS
from ncap.data.dataset import ImageDataset, to_grey
from ncap.data.registry import load_dataset
from ncap.data.shifts import apply_shift
from ncap.exceptions import ConfigError
from ncap.models.builtin import SECOND_SOURCE_MODELS, SECOND_SOURCE_SUFFIX, model_spec
from ncap.models.nb201 import sample_archs
from ncap.models.pretrain import PretrainSpec, default_pretrain
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
    "V3_PLAN",
    "V3_SMOKE_PLAN",
    "load_target",
    "plan_for",
]


@dataclass(frozen=True)
class Target:
    """A target task: a dataset, its sizes (n_train a multiple of the batch/4) and a shift.

    ``shift`` (see :mod:`ncap.data.shifts`) derives a new task from the dataset: a rotation, an
    intensity inversion or label noise on the training split. ``family`` names the dataset family
    (bench-v3's study holds out whole families); it does not change the runs.
    """

    key: str
    dataset: str
    n_train: int | None
    n_val: int | None
    image_size: int | None = None
    shift: str | None = None
    family: str | None = None


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
    # (model, input size): models fed at another size than their own convention's (ImageNet
    # checkpoints at 32-64 px instead of 224); the others keep theirs
    input_sizes: tuple[tuple[str, int], ...] = ()
    # (model, architecture family, source task) of the models outside the built-in zoo
    model_sources: tuple[tuple[str, str, str], ...] = ()
    # the results file (in the output's folder) of an earlier build whose runs this plan shares:
    # its parts seed this build's when the settings match (bench-v3 reuses bench-v2's 720 runs)
    reuse: str | None = None
    # (model, target keys): models run on those targets only (the others run on every target)
    only_on: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def runs_on(self, model: str, target: str) -> bool:
        """Whether the plan runs ``model`` on the target keyed ``target``."""
        limited = dict(self.only_on)
        return model not in limited or target in limited[model]

    def config_for(self, model: str, n_train: int, seed: int) -> FinetuneConfig:
        """:meth:`config`, at the model's input size of ``input_sizes`` when it has one."""
        config = self.config(n_train, seed)
        size = dict(self.input_sizes).get(model)
        return config if size is None else dataclasses.replace(config, input_size=size)

    def model_family(self, model: str) -> str | None:
        """The architecture family of ``model`` (the zoo's, or ``model_sources``')."""
        if model in (external := {m: (f, s) for m, f, s in self.model_sources}):
            return external[model][0]
        if ":" in model:
            return None
        return model_spec(model).family

    def source_task(self, model: str) -> str | None:
        """The dataset ``model`` was pretrained on (its own, the plan's or the zoo's default)."""
        if model in (external := {m: (f, s) for m, f, s in self.model_sources}):
            return external[model][1]
        if ":" in model:
            return None
        if model_spec(model).source is not None:
            return model_spec(model).source
        if self.pretrain_data is not None:
            return self.pretrain_data["dataset"]
        return default_pretrain().dataset

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
        for key in ("input_sizes", "model_sources"):
            if key in values:
                values[key] = tuple(tuple(row) for row in values[key])
        if "only_on" in values:
            values["only_on"] = tuple((m, tuple(keys)) for m, keys in values["only_on"])
        values["targets"] = tuple(Target(**t) for t in plan["targets"])
        return cls(**values)

    def model_options(self, model: str | None = None) -> dict[str, Any]:
        """Options of the ``create_backbone`` call of ``model``: the NAS space, or the zoo's
        pretraining data (built-in models only; timm:/tv: models come pretrained)."""
        if self.kind == "nas":
            channels = load_target(self.targets[0]).input_shape[0]
            return {"width": self.nas_width, "cells": self.nas_cells, "in_channels": channels}
        if model is not None and ":" in model:
            return {}
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


_TARGET_CACHE: dict[tuple[Target, bool], ImageDataset] = {}


def load_target(target: Target, *, grey: bool = False) -> ImageDataset:
    """The target's dataset (shifted), converted to grey for a one-channel model when ``grey``."""
    if (target, grey) not in _TARGET_CACHE:
        if not any(t == target for t, _ in _TARGET_CACHE):
            _TARGET_CACHE.clear()
        if grey:
            dataset = to_grey(load_target(target))
        else:
            dataset = load_dataset(target.dataset, n_train=target.n_train, n_val=target.n_val)
            dataset = apply_shift(dataset, target.shift) if target.shift else dataset
        _TARGET_CACHE[(target, grey)] = dataset
    return _TARGET_CACHE[(target, grey)]


def _nas_models(n: int, seed: int = 0) -> tuple[str, ...]:
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


# bench-v3 (docs/benchmark.md, "bench-v3"): bench-v2's 40 models and 9 targets, whose 720 runs are
# reused; six targets of three generated families; eight zoo architectures pretrained on a second
# source task (rendered letters K-T); four ImageNet checkpoints (at 32 px) and their architectures
# pretrained by the zoo on the usual source task
IMAGENET_MODELS = (
    "tv:mobilenet_v2@IMAGENET1K_V1",
    "timm:tf_efficientnet_lite0",
    "timm:tf_efficientnet_lite1",
    "timm:tf_efficientnet_lite2",
)
IMAGENET_TWINS = ("mobilenet-v2", "effnet-lite0", "effnet-lite1", "effnet-lite2")
IMAGENET_SOURCES = tuple(
    (m, "mobilenet-v2" if "mobilenet" in m else "efficientnet-lite", "imagenet-1k")
    for m in IMAGENET_MODELS
)
SECOND_SOURCE_ZOO = tuple(f"{m}-{SECOND_SOURCE_SUFFIX}" for m in SECOND_SOURCE_MODELS)
V3_MODELS = V2_MODELS + SECOND_SOURCE_ZOO + IMAGENET_TWINS + IMAGENET_MODELS

_V2_FAMILIES = {"digits": "digits", "digits-256": "digits"}
V3_TARGETS = tuple(
    dataclasses.replace(t, family=_V2_FAMILIES.get(t.key, "fashion-mnist")) for t in V2_PLAN.targets
) + (
    Target("glyph-letters", "glyphs-letters", 256, 500, family="glyphs"),
    Target("glyph-digits", "glyphs-digits", 256, 500, family="glyphs"),
    Target("shapes", "shapes", 256, 500, family="shapes"),
    Target("shapes-noise40", "shapes", 256, 500, shift="label-noise-0.4", family="shapes"),
    Target("textures", "textures", 256, 500, family="textures"),
    Target("textures-stripes", "textures-stripes", 256, 500, family="textures"),
)
# the eight large models (the ImageNet checkpoints at 32 px and their twins, 2.2-4.8 M parameters,
# 150-310 CPU-s per run at 256 images against bench-v2's models' 6-20 s) run on five of the
# generated targets only (not on the label-noise one, nor on bench-v2's): on every target they
# would cost ~3 times the 12 CPU-hour budget (docs/benchmark.md, "bench-v3")
V3_LARGE_TARGETS = ("glyph-letters", "glyph-digits", "shapes", "textures", "textures-stripes")

V3_PLAN = dataclasses.replace(
    V2_PLAN,
    models=V3_MODELS,
    targets=V3_TARGETS,
    name="v3",
    input_sizes=tuple((m, 32) for m in IMAGENET_MODELS),
    model_sources=IMAGENET_SOURCES,
    reuse="bench-v2.json",
    only_on=tuple((m, V3_LARGE_TARGETS) for m in IMAGENET_TWINS + IMAGENET_MODELS),
)

# v3's code paths in under a minute: a generated grey and RGB target (grey for the zoo), a model
# pretrained on the second source task and an ImageNet architecture (random weights) at 32 px
V3_SMOKE_PLAN = dataclasses.replace(
    V2_SMOKE_PLAN,
    models=("cnn-xs", "mlp-s-glyphs", "timm:mobilenetv3_small_050@random"),
    targets=(
        Target("glyph-digits", "glyphs-digits", 256, 128, family="glyphs"),
        Target("shapes", "shapes", 256, 128, family="shapes"),
    ),
    epochs=2.0,
    name="v3-smoke",
    input_sizes=(("timm:mobilenetv3_small_050@random", 32),),
    model_sources=(("timm:mobilenetv3_small_050@random", "mobilenet-v3", "random init"),),
    only_on=(("timm:mobilenetv3_small_050@random", ("shapes",)),),
)


def plan_for(name: str, *, models: Sequence[str] | None = None) -> BenchPlan:
    plans = {"full": FULL_PLAN, "smoke": SMOKE_PLAN, "nas": NAS_PLAN, "nas-smoke": NAS_SMOKE_PLAN}
    plans |= {"v2": V2_PLAN, "v2-smoke": V2_SMOKE_PLAN, "v3": V3_PLAN, "v3-smoke": V3_SMOKE_PLAN}
    if name not in plans:
        raise ConfigError(f"unknown benchmark plan {name!r}; choose one of {sorted(plans)}.")
    plan = plans[name]
    if models:
        plan = BenchPlan(**(plan.__dict__ | {"models": tuple(models)}))
    return plan
