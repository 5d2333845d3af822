"""Rank untrained NAS-Bench-201 architectures by neural capacitance from their early training.

Architectures enter the model registry under the ``nb201:`` prefix (``nb201:|nor_conv_3x3~0|+...``),
randomly initialised from the run's seed, so :func:`search` is :func:`ncap.ranking.rank` with the
same outputs, resume behaviour and failure handling.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ncap.datasets import MEAN, STD, ImageDataset, load_dataset
from ncap.executors import Executor
from ncap.finetune import FinetuneConfig
from ncap.inputs import InputSpec
from ncap.nas.space import NB201Network, arch_to_str, parse_arch
from ncap.ranking import PredictorSettings, RankResult, rank
from ncap.runtime import Runtime
from ncap.zoo import Backbone, parameter_count, register_source

__all__ = ["NATS_HELP", "nats_accuracies", "register_nb201", "search"]

PREFIX = "nb201"


def register_nb201(*, width: int = 8, cells: int = 1, in_channels: int = 1, seed: int = 0) -> None:
    """(Re)register the ``nb201:`` model source with these macro settings and init seed."""

    def factory(arch: str) -> Backbone:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = NB201Network(arch, width=width, cells=cells, in_channels=in_channels)
        info = {
            "family": "nb201",
            "arch": net.arch,
            "parameters": parameter_count(net),
            "width": width,
            "cells": cells,
            "init_seed": seed,
        }
        return Backbone(
            name=f"{PREFIX}:{net.arch}",
            module=net,
            num_features=net.num_features,
            info=info,
            input_spec=InputSpec(
                channels=in_channels, size=None, mean=(MEAN,), std=(STD,), source="ncap nb201"
            ),
        )

    register_source(PREFIX, factory)


register_nb201()


def search(
    archs: Sequence[str],
    data: str | ImageDataset,
    *,
    out_dir: str | Path,
    width: int = 8,
    cells: int = 1,
    config: FinetuneConfig | None = None,
    predictor: PredictorSettings | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    full_epochs: float | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    runtime: Runtime | None = None,
    executor: str | Executor = "local",
) -> RankResult:
    """Train each architecture from scratch for the budget under the probe and rank them.

    Parameters are those of :func:`ncap.ranking.rank`, plus the macro ``width`` and ``cells``.
    Architecture strings are validated (and normalised) before anything runs.
    """
    config = config or FinetuneConfig()
    names = [f"{PREFIX}:{arch_to_str(parse_arch(a))}" for a in archs]
    dataset = (
        data
        if isinstance(data, ImageDataset)
        else load_dataset(data, n_train=n_train, n_val=n_val, seed=config.seed)
    )
    space = {"width": width, "cells": cells, "in_channels": dataset.channels, "seed": config.seed}
    register_nb201(**space)
    return rank(
        names,
        dataset,
        out_dir=out_dir,
        config=config,
        predictor=predictor,
        full_epochs=full_epochs,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        log=log,
        extra_settings={"search_space": {"name": "nas-bench-201", "width": width, "cells": cells}},
        runtime=runtime,
        executor=executor,
        worker_setup=(register_nb201, space),  # Ray workers register the same space
    )


NATS_HELP = (
    "NATS-Bench topology-space files are needed to look up published accuracies: "
    "`pip install nats_bench`, download NATS-tss-v1_0-3ffb9-simple.tar from "
    "https://github.com/D-X-Y/NATS-Bench (its README links the archive), extract it into "
    "$TORCH_HOME (default ~/.torch) and pass that folder's path (or set TORCH_HOME)."
)


def nats_accuracies(
    archs: Sequence[str],
    path: str | os.PathLike | None = None,
    *,
    dataset: str = "cifar10",
    hp: str = "200",
    api: Any = None,
) -> dict[str, float]:
    """Published final test accuracies (in [0, 1]) of NAS-Bench-201 architectures from NATS-Bench.

    Uses ``nats_bench.create(path, "tss", fast_mode=True)``; ``api`` may be given instead (anything
    with ``query_index_by_arch`` and ``get_more_info``). Raises ``FileNotFoundError`` saying what to
    download and where when the package or the files are missing.
    """
    if api is None:
        try:
            from nats_bench import create
        except ImportError as err:
            raise FileNotFoundError(NATS_HELP) from err
        root = Path(path) if path else Path(os.environ.get("TORCH_HOME", Path.home() / ".torch"))
        candidates = [root, root / "NATS-tss-v1_0-3ffb9-simple"]
        found = next((p for p in candidates if p.name.startswith("NATS-tss") and p.exists()), None)
        if found is None:
            raise FileNotFoundError(
                f"no NATS-tss-v1_0-3ffb9-simple folder under {root}. {NATS_HELP}"
            )
        api = create(str(found), "tss", fast_mode=True, verbose=False)
    out = {}
    for arch in archs:
        normalised = arch_to_str(parse_arch(arch))
        index = api.query_index_by_arch(normalised)
        if index is None or index < 0:
            raise ValueError(f"architecture {normalised} is not in the NATS-Bench topology space.")
        info = api.get_more_info(index, dataset, hp=hp, is_random=False)
        out[normalised] = float(info["test-accuracy"]) / 100.0
    return out
