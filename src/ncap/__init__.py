"""ncap: neural capacitance (beta_eff) predicts a network's final accuracy from early training.

The maths: :func:`beta_eff` (any weighted graph), :func:`probe_beta_eff` (an MLP block's line graph,
closed form), :class:`NeuralCapacitanceProbe` (the stateful wrapper), :func:`line_graph`.

The pipeline: :func:`load_dataset` -> :func:`create_backbone` -> :func:`finetune` under a
:class:`FinetuneConfig` -> :class:`CapacitancePredictor`; :func:`rank` runs it for many candidates
(a :class:`Horizon`, a strategy such as :class:`Halving`, an :class:`Execution`), and
:func:`load_results` reads a run back.

Everything loads on first use (module ``__getattr__``), so ``import ncap`` imports no torch.

>>> import ncap
>>> ncap.VARIANTS
('signed', 'mean-abs', 'abs-mean')
"""

from __future__ import annotations

import importlib
from typing import Any

from ncap._version import __version__
from ncap.exceptions import NcapError

# public name -> the module that defines it
_LAZY = {
    # the maths
    "VARIANTS": "ncap.capacitance.variants",
    "EdgeStatistics": "ncap.capacitance.statistics",
    "probe_beta_eff": "ncap.capacitance.statistics",
    "beta_eff": "ncap.capacitance.graph",
    "line_graph": "ncap.capacitance.line_graph",
    "NeuralCapacitanceProbe": "ncap.capacitance.probe",
    # the pipeline
    "ImageDataset": "ncap.data.dataset",
    "load_dataset": "ncap.data.registry",
    "list_datasets": "ncap.data.registry",
    "dataset_from_arrays": "ncap.data.folders",
    "load_image_folder": "ncap.data.folders",
    "Backbone": "ncap.models.backbone",
    "create_backbone": "ncap.models.registry",
    "register_source": "ncap.models.registry",
    "list_models": "ncap.models.builtin",
    "PretrainSpec": "ncap.models.pretrain",
    "FinetuneConfig": "ncap.training.config",
    "Runtime": "ncap.training.runtime",
    "finetune": "ncap.training.loop",
    "CapacitancePredictor": "ncap.predict.capacitance",
    "PredictorSettings": "ncap.predict.capacitance",
    "Trajectory": "ncap.results",
    "TrajectoryPoint": "ncap.results",
    "CandidateRecord": "ncap.results",
    "RankResult": "ncap.results",
    "load_results": "ncap.results",
    "rank": "ncap.ranking.rank",
    "run_ranking": "ncap.ranking.rank",
    "RunSpec": "ncap.ranking.spec",
    "Execution": "ncap.ranking.spec",
    "Horizon": "ncap.ranking.spec",
    "Fixed": "ncap.ranking.strategies",
    "Halving": "ncap.ranking.strategies",
    "parse_score": "ncap.predict.recommended",
    "HalvingSettings": "ncap.ranking.halving",
    "CandidateJob": "ncap.ranking.jobs",
    "run_candidate": "ncap.ranking.candidate",
    "search": "ncap.nas.search",
    "load_recipe": "ncap.recipe.schema",
    "run_recipe": "ncap.recipe.run",
    "ranking_metrics": "ncap.metrics",
}

__all__ = ["NcapError", "__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ncap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    """The public names only (``__all__``): not this module's own imports."""
    return sorted(__all__)
