"""What a ranking run is, built once: :class:`RunSpec` (candidates, data, fine-tuning, prediction,
budget, score), and how it runs: :class:`Execution` (device, executor, output mode, progress: what
the user sets) resolved into a :class:`RunContext` (with the output folder and the executor object)
for the strategy. :class:`Horizon` is the full training the ranking is about (``target_epochs`` T,
``full_epochs``).

The command line, a recipe and Python build a :class:`RunSpec` from a loaded dataset
(:func:`ncap.data.registry.load_dataset` is called first; :func:`ncap.ranking.rank.rank` loads a
name with the defaults); a strategy (:mod:`ncap.ranking.strategies`) runs it. ``settings()`` is what
a candidate file stores and what ``--resume`` compares.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ncap.data.dataset import ImageDataset
from ncap.exceptions import ConfigError
from ncap.predict.settings import PredictorSettings
from ncap.ranking.executors import Executor, make_executor
from ncap.ranking.source_accuracy import check_source_accuracy
from ncap.training.config import FinetuneConfig
from ncap.training.runtime import Runtime

__all__ = ["MODES", "Execution", "Horizon", "RunContext", "RunSpec", "check_models"]

# what a run does with an output folder that holds earlier results
MODES = ("new", "resume", "overwrite")


def check_models(models: Sequence[str]) -> None:
    """Raise unless ``models`` names at least one candidate, each once."""
    if not models:
        raise ConfigError("no candidate models given; name at least one (see `ncap zoo`).")
    if len(set(models)) != len(models):
        raise ConfigError(f"duplicate candidate names in {list(models)}; name each model once.")


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
        check_models(self.models)
        checked = check_source_accuracy(self.source_accuracy, self.models)
        object.__setattr__(self, "source_accuracy", checked)

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


def _positive_epochs(value: Any) -> bool:
    if value is None:
        return True
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class Horizon:
    """The full training a ranking is about.

    Parameters
    ----------
    target_epochs : float, optional
        The full budget T the chosen model would be trained for (default: ``full_epochs``). The
        prediction is for T (a fitted score uses the budget's share of T), and the cost figure
        compares with training every candidate to T. Nothing is trained beyond the budget for it.
    full_epochs : float, optional
        Also fine-tune every candidate to this many epochs and record ``final_accuracy`` (a check of
        the prediction, which still uses only the points within the budget). With the halving
        strategy it is only the reference of the cost figure (as ``target_epochs``).

    >>> Horizon(full_epochs=10).reference_epochs
    10
    >>> Horizon(target_epochs=20, full_epochs=10).reference_epochs
    20
    """

    target_epochs: float | None = None
    full_epochs: float | None = None

    def __post_init__(self) -> None:
        for name in ("target_epochs", "full_epochs"):
            value = getattr(self, name)
            if not _positive_epochs(value):
                raise ConfigError(
                    f"{name} must be a positive number of epochs (or None); got {value!r}."
                )

    @property
    def reference_epochs(self) -> float | None:
        """T: ``target_epochs``, else ``full_epochs``."""
        return self.target_epochs if self.target_epochs is not None else self.full_epochs


@dataclass(frozen=True)
class Execution:
    """How a run executes; none of it changes the results.

    Parameters
    ----------
    runtime : Runtime, optional
        Device (``auto``/``cpu``/``cuda[:i]``), mixed precision and loader workers (default: CPU).
        Recorded with each candidate; not part of the resume check.
    executor : "local", "ray" or an executor object
        Where candidates run (:mod:`ncap.ranking.executors`); the outputs are the same.
    mode : "new", "resume" or "overwrite"
        What to do with earlier results in the output folder: "new" refuses to replace them,
        "resume" reuses the finished candidates run with the same settings and runs the rest,
        "overwrite" discards them.
    progress : bool
        Show progress bars (candidate and step) on stderr.
    log : callable, optional
        Called with each ``[ncap]`` message (notes, failures).

    >>> Execution(mode="resume").resume
    True
    >>> Execution(mode="again")
    Traceback (most recent call last):
    ...
    ncap.exceptions.ConfigError: unknown mode 'again'; choose one of ('new', 'resume', 'overwrite').
    """

    runtime: Runtime | None = None
    executor: str | Executor = "local"
    mode: str = "new"
    progress: bool = False
    log: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of {MODES}.")
        if self.runtime is not None and not isinstance(self.runtime, Runtime):
            raise ConfigError(
                f"runtime must be an ncap.Runtime (device, amp, workers); got {self.runtime!r}."
            )

    @classmethod
    def from_flags(
        cls, *, resume: bool = False, overwrite: bool = False, **fields: Any
    ) -> Execution:
        """An execution from the ``--resume`` / ``--overwrite`` flags (which contradict each
        other)."""
        if resume and overwrite:
            raise ConfigError(
                "--resume keeps the finished candidates in the output directory and --overwrite "
                "discards them; pass one of the two."
            )
        mode = "resume" if resume else ("overwrite" if overwrite else "new")
        return cls(mode=mode, **fields)

    @property
    def resume(self) -> bool:
        return self.mode == "resume"

    @property
    def overwrite(self) -> bool:
        return self.mode == "overwrite"

    def context(self, out_dir: str | Path) -> RunContext:
        """The resolved form a strategy reads: the executor built (an unknown name fails here),
        the runtime defaulted."""
        executor = make_executor(self.executor) if isinstance(self.executor, str) else self.executor
        return RunContext(
            Path(out_dir),
            self.runtime or Runtime(),
            executor,
            self.resume,
            self.overwrite,
            self.progress,
            self.log,
        )


@dataclass
class RunContext:
    """Where and how a run executes (none of it changes the results): an :class:`Execution`
    resolved for one output folder."""

    out_dir: Path
    runtime: Runtime
    executor: Executor
    resume: bool = False
    overwrite: bool = False
    progress: bool = False
    log: Callable[[str], None] | None = None
