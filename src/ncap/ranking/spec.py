"""What a ranking run is, built once: :class:`RunSpec` (candidates, data, fine-tuning, prediction,
budget, score), and :class:`RunContext` (where and how it runs: output folder, resume, executor).

The command line, a recipe and Python build a :class:`RunSpec` (:meth:`RunSpec.load` loads the data
by name, so :func:`ncap.ranking.rank.run_ranking` never does); a strategy
(:mod:`ncap.ranking.strategies`) runs it. ``settings()`` is what a candidate file stores and what
``--resume`` compares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ncap.data.dataset import ImageDataset
from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError
from ncap.predict.settings import PredictorSettings
from ncap.ranking.executors import Executor
from ncap.ranking.source_accuracy import check_source_accuracy
from ncap.training.config import FinetuneConfig
from ncap.training.runtime import Runtime

__all__ = ["RunContext", "RunSpec"]


@dataclass(frozen=True)
class RunSpec:
    """A ranking: ``models`` on ``dataset`` fine-tuned by ``config`` (its budget), predicted by
    ``predictor`` and ranked by ``score`` (:func:`ncap.predict.recommended.resolve_score`).

    ``full_epochs``: also train to this many epochs (the hold-out check); ``target_epochs``: the
    full budget T the prediction is for (default ``full_epochs``). ``model_options`` go to every
    ``create_backbone`` call; ``extra_settings`` are recorded and must match on resume.
    ``source_accuracy``: candidates' accuracies on their pretraining task given by the user
    (:mod:`ncap.ranking.source_accuracy`; read by the scores that read one, recorded in
    ``results.json``, not part of the resume check: they change the scoring, not the training).
    """

    models: tuple[str, ...]
    dataset: ImageDataset
    config: FinetuneConfig = field(default_factory=FinetuneConfig)
    predictor: PredictorSettings = field(default_factory=PredictorSettings)
    full_epochs: float | None = None
    target_epochs: float | None = None
    score: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    extra_settings: dict[str, Any] = field(default_factory=dict)
    source_accuracy: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("no candidate models given; name at least one (see `ncap zoo`).")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(
                f"duplicate candidate names in {list(self.models)}; name each model once."
            )
        checked = check_source_accuracy(self.source_accuracy, self.models)
        object.__setattr__(self, "source_accuracy", checked)

    @classmethod
    def load(
        cls,
        models: Sequence[str],
        data: str | ImageDataset,
        *,
        n_train: int | None = None,
        n_val: int | None = None,
        data_root: str | Path | None = None,
        **fields: Any,
    ) -> RunSpec:
        """A spec whose dataset is loaded by name (a built-in name or an image folder), seeded by
        the config's seed; a loaded :class:`ImageDataset` is taken as it is."""
        config = fields.get("config") or FinetuneConfig()
        dataset = (
            data
            if isinstance(data, ImageDataset)
            else load_dataset(data, n_train=n_train, n_val=n_val, seed=config.seed, root=data_root)
        )
        fields = {k: v for k, v in fields.items() if v is not None}
        return cls(tuple(models), dataset, **fields)

    @property
    def reference_epochs(self) -> float | None:
        """T: the full budget the prediction and the cost figure refer to."""
        return self.target_epochs if self.target_epochs is not None else self.full_epochs

    def settings(self) -> dict[str, Any]:
        """The settings that define the run (stored with each candidate; resume compares them)."""
        return {
            "dataset": self.dataset.summary(),
            "finetune": self.config.to_dict(),
            "budget_epochs": self.config.epochs,
            "budget_steps": self.config.total_steps(len(self.dataset.y_train)),
            "full_epochs": self.full_epochs,
            # (the default measurement is left out, so runs of earlier versions still resume)
            "predictor": {
                k: v
                for k, v in asdict(self.predictor).items()
                if not (k == "measurement" and v == "interval")
            },
        } | self.extra_settings


@dataclass
class RunContext:
    """Where and how a run executes (none of it changes the results)."""

    out_dir: Path
    runtime: Runtime
    executor: Executor
    resume: bool = False
    overwrite: bool = False
    progress: bool = False
    log: Callable[[str], None] | None = None
