"""Rank untrained NAS-Bench-201 architectures trained from scratch for a short budget.

Architectures are the ``nb201:`` model source (``nb201:|nor_conv_3x3~0|+...``, :mod:`ncap.models.nb201`),
randomly initialised from the run's seed and built with the space's options, so :func:`search` is
:func:`ncap.ranking.rank.rank` with the same outputs, resume behaviour and failure handling.

The default ranking score, :data:`DEFAULT_SCORE`, was chosen by Q4 of the bench-v3 protocol
(docs/benchmark-v3-protocol.md, section 4) on ncap's NAS benchmark
(``benchmarks/nas_default.py`` -> ``benchmarks/results/nas-v1-q4/q4.json``; docs/nas.md): the
zero-cost proxy ``fisher`` of the untrained network. A test fails if it differs from the committed
choice. The extrapolation to beta_eff = 0 (``--score paper`` or any ``nc/...``) stays available.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ncap.data.dataset import ImageDataset
from ncap.data.registry import load_dataset
from ncap.models.nb201 import PREFIX, arch_to_str, parse_arch
from ncap.predict.capacitance import PredictorSettings
from ncap.ranking.executors import Executor
from ncap.ranking.rank import rank
from ncap.results import RankResult
from ncap.training.config import FinetuneConfig
from ncap.training.runtime import Runtime

__all__ = ["DEFAULT_SCORE", "search"]

# benchmarks/results/nas-v1-q4/q4.json, "default" (tests/nas/test_nas.py checks it)
DEFAULT_SCORE = "fisher"


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
    score: str | None = None,
    target_epochs: float | None = None,
) -> RankResult:
    """Train each architecture from scratch for the budget under the probe and rank them.

    Parameters are those of :func:`ncap.ranking.rank.rank`, plus the macro ``width`` and ``cells``.
    Architecture strings are validated (and normalised) before anything runs. ``score`` defaults
    to :data:`DEFAULT_SCORE`, chosen on ncap's NAS benchmark (module docstring); the recommended
    score of ``ncap rank`` was chosen for fine-tuning pretrained models, not training from
    scratch, and is not used here. The table's predicted accuracy is still each run's own
    extrapolation (``predictor``) when the score predicts none.
    """
    config = config or FinetuneConfig()
    names = [f"{PREFIX}:{arch_to_str(parse_arch(a))}" for a in archs]
    dataset = (
        data
        if isinstance(data, ImageDataset)
        else load_dataset(data, n_train=n_train, n_val=n_val, seed=config.seed)
    )
    space = {"width": width, "cells": cells, "in_channels": dataset.channels, "seed": config.seed}
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
        model_options=space,  # travels with every candidate, to Ray workers too
        score=score or DEFAULT_SCORE,
        target_epochs=target_epochs,
    )
