"""Rank untrained NAS-Bench-201 architectures trained from scratch for a short budget.

Architectures are the ``nb201:`` model source (``nb201:|nor_conv_3x3~0|+...``, :mod:`ncap.models.nb201`),
randomly initialised from the run's seed and built with the space's options, so :func:`search` is
:func:`ncap.ranking.rank.run_ranking` (the path that takes a search space's ``model_options``), with
the outputs, resume behaviour and failure handling of :func:`ncap.ranking.rank.rank`.

The default ranking score, :data:`DEFAULT_SCORE`, was chosen by Q4 of the bench-v3 protocol
(docs/benchmark-v3-protocol.md, section 4) on ncap's NAS benchmark
(``benchmarks/nas_default.py`` -> ``benchmarks/results/nas-v1-q4/q4.json``; docs/nas.md): the
zero-cost proxy ``fisher`` of the untrained network. A test fails if it differs from the committed
choice. The extrapolation to beta_eff = 0 (``--score paper`` or any ``nc/...``) stays available.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ncap.data.dataset import ImageDataset
from ncap.data.registry import load_dataset
from ncap.models.nb201 import PREFIX, arch_to_str, parse_arch
from ncap.predict.capacitance import PredictorSettings
from ncap.ranking.rank import check_parameters, run_ranking
from ncap.ranking.spec import Execution, Horizon, RunSpec
from ncap.results import RankResult
from ncap.training.config import FinetuneConfig

__all__ = ["DEFAULT_SCORE", "search"]

# benchmarks/results/nas-v1-q4/q4.json, "default" (tests/nas/test_nas.py checks it)
DEFAULT_SCORE = "fisher"


def search(
    archs: Sequence[str],
    data: str | Path | ImageDataset,
    *,
    out_dir: str | Path,
    width: int = 8,
    cells: int = 1,
    config: FinetuneConfig | None = None,
    predictor: PredictorSettings | None = None,
    score: str | None = None,
    horizon: Horizon | None = None,
    execution: Execution | None = None,
) -> RankResult:
    """Train each architecture from scratch for the budget under the probe and rank them.

    Parameters are those of :func:`ncap.ranking.rank.rank` (``data`` loaded by
    :func:`ncap.load_dataset` first, or a name loaded with the defaults), plus the macro ``width``
    and ``cells``; the strategy is fixed. Architecture strings are validated (and normalised)
    before anything runs. ``score`` defaults to :data:`DEFAULT_SCORE`, chosen on ncap's NAS
    benchmark (module docstring); the recommended score of ``ncap rank`` was chosen for fine-tuning
    pretrained models, not training from scratch, and is not used here. The table's predicted
    accuracy is still each run's own extrapolation (``predictor``) when the score predicts none.
    """
    check_parameters(
        data=data,
        out_dir=out_dir,
        config=config,
        predictor=predictor,
        score=score,
        horizon=horizon,
        execution=execution,
    )
    config, horizon = config or FinetuneConfig(), horizon or Horizon()
    names = [f"{PREFIX}:{arch_to_str(parse_arch(a))}" for a in archs]
    dataset = data if isinstance(data, ImageDataset) else load_dataset(str(data), seed=config.seed)
    space = {"width": width, "cells": cells, "in_channels": dataset.channels, "seed": config.seed}
    spec = RunSpec(
        tuple(names),
        dataset,
        config=config,
        predictor=predictor or PredictorSettings(),
        full_epochs=horizon.full_epochs,
        target_epochs=horizon.target_epochs,
        score=score or DEFAULT_SCORE,
        model_options=space,  # travels with every candidate, to Ray workers too
        extra_settings={"search_space": {"name": "nas-bench-201", "width": width, "cells": cells}},
    )
    return run_ranking(spec, "fixed", out_dir=out_dir, execution=execution)
