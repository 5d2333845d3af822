"""Rank candidate models by the final accuracy neural capacitance predicts from early fine-tuning.

For each candidate: build the (pretrained) backbone from the registry, fine-tune it briefly under a
frozen random probe, fit :class:`~ncap.predictor.CapacitancePredictor` on the early
``(beta_eff, validation accuracy)`` points and read the prediction at ``beta_eff = 0``. Each finished
candidate is written to ``OUT/candidates/<name>.json`` atomically the moment it finishes, so an
interrupted run loses nothing finished and ``resume=True`` skips what is done.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import platform
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ncap.datasets import ImageDataset, load_dataset
from ncap.edge_stats import check_variants
from ncap.executors import CandidateJob, Executor, make_executor
from ncap.finetune import CandidateError, FinetuneConfig, finetune, trajectory_arrays
from ncap.predictor import FEATURE_MAPS, LINKS, CapacitancePredictor
from ncap.runtime import Runtime
from ncap.storage import atomic_write_json, atomic_write_text, to_jsonable
from ncap.zoo import create_backbone

__all__ = ["PredictorSettings", "RankResult", "rank", "load_results"]

RESULTS_VERSION = 1


@dataclass(frozen=True)
class PredictorSettings:
    """Which beta_eff variant and regression turn a trajectory into a prediction."""

    # the setting ncap's benchmark selected on its selection half (docs/benchmark.md); a test
    # checks that it matches benchmarks/results/bench-v1-evaluation/evaluation.json
    variant: str = "abs-mean"
    features: str = "quadratic"
    burn_in: int = 0
    link: str = "logit"
    min_points: int = 3

    def __post_init__(self) -> None:
        check_variants(self.variant)
        if self.features not in FEATURE_MAPS:
            raise ValueError(
                f"unknown feature map {self.features!r}; choose one of {FEATURE_MAPS}."
            )
        if self.burn_in < 0:
            raise ValueError(f"burn_in must be >= 0, got {self.burn_in}.")
        if self.link not in LINKS:
            raise ValueError(f"unknown link {self.link!r}; choose one of {LINKS}.")

    def make(self) -> CapacitancePredictor:
        return CapacitancePredictor(
            features=self.features,
            burn_in=self.burn_in,
            link=self.link,
            variant=self.variant,
            min_points=self.min_points,
        )


@dataclass
class RankResult:
    """The outcome of :func:`rank`: candidate records (JSON contract) and where files went."""

    candidates: list[dict[str, Any]]
    settings: dict[str, Any]
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def ranking(self) -> list[str]:
        """Names of the successful candidates, best predicted first."""
        return rank_order(self.candidates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RESULTS_VERSION,
            "candidates": self.candidates,
            "ranking": self.ranking,
            "settings": self.settings,
        }


def rank_order(candidates: Sequence[dict[str, Any]]) -> list[str]:
    ok = [c for c in candidates if c["status"] == "ok"]
    return [c["name"] for c in sorted(ok, key=lambda c: (-c["predicted_accuracy"], c["name"]))]


def slug(name: str) -> str:
    """File-system-safe form of a candidate name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "candidate"


def _settings(
    dataset: ImageDataset,
    config: FinetuneConfig,
    predictor: PredictorSettings,
    full_epochs: float | None,
) -> dict[str, Any]:
    return {
        "dataset": dataset.summary(),
        "finetune": config.to_dict(),
        "budget_epochs": config.epochs,
        "budget_steps": config.total_steps(len(dataset.y_train)),
        "full_epochs": full_epochs,
        "predictor": asdict(predictor),
    }


def _environment() -> dict[str, Any]:
    import ncap

    return {
        "ncap": ncap.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def predict_from_points(
    points: Sequence[dict[str, Any]], predictor: PredictorSettings, budget_steps: int
) -> dict[str, Any]:
    """Fit the predictor on the points within the budget; the prediction fields of a record."""
    beta, acc = trajectory_arrays(points, predictor.variant, max_step=budget_steps)
    model = predictor.make().fit(beta, acc)
    return {
        "predicted_accuracy": model.prediction_,
        "predicted_std": model.std_,
        "fit": {
            "n_points": model.n_points_,
            "coef": [float(c) for c in model.model_.coef_],
            "intercept": float(model.model_.intercept_),
            "scale": model.scale_,
            "link": model.link,
        },
    }


def failed_record(name: str, reason: str | None = None) -> dict[str, Any]:
    """A candidate record before (or without) a successful run."""
    return {
        "name": name,
        "status": "failed",
        "reason": reason,
        "predicted_accuracy": None,
        "predicted_std": None,
        "observed_accuracy": None,
        "final_accuracy": None,
        "test_accuracy": None,
        "beta_eff_end": None,
        "cost_seconds": None,
        "trajectory": [],
    }


def run_candidate(
    name: str,
    dataset: ImageDataset,
    config: FinetuneConfig,
    predictor: PredictorSettings,
    *,
    full_epochs: float | None = None,
    runtime: Runtime | None = None,
    on_step: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune one candidate and return its record (``status`` "failed" with a reason on error).

    The test split, when the dataset has one, is evaluated once at the end of the run and reported
    as ``test_accuracy`` (never used for the prediction).
    """
    record = failed_record(name)
    start = time.perf_counter()
    try:
        with torch.random.fork_rng():  # random initialisations are the same in every process
            torch.manual_seed(config.seed)
            backbone = create_backbone(name, log=log)
        record["backbone"] = {"num_features": backbone.num_features} | backbone.info
        n_train = len(dataset.y_train)
        budget_steps = config.total_steps(n_train)
        run_config = config
        if full_epochs is not None:  # same evaluation points, so the early run is its prefix
            run_config = FinetuneConfig(
                **(
                    config.__dict__
                    | {"epochs": full_epochs, "steps": None, "eval_every": config.interval(n_train)}
                )
            )
        traj = finetune(
            backbone.module,
            backbone.num_features,
            dataset,
            run_config,
            input_spec=backbone.input_spec,
            runtime=runtime,
            on_step=on_step,
            extra_eval_steps=(budget_steps,),
            evaluate_test=True,
        )
        record["backbone"]["num_features"] = traj.num_features
        record["runtime"] = traj.runtime
        if traj.test is not None:
            record["test_accuracy"] = traj.test["test_accuracy"]
            record["test"] = traj.test
        points = traj.points
        record["trajectory"] = points
        early = [p for p in points if p["step"] <= budget_steps]
        if not early:
            raise CandidateError("no evaluation point within the budget; lower eval_every.")
        record["observed_accuracy"] = early[-1]["val_accuracy"]
        record["beta_eff_end"] = early[-1]["beta_eff"]
        record["cost_seconds"] = early[-1]["wall_time"]
        if full_epochs is not None:
            record["final_accuracy"] = points[-1]["val_accuracy"]
            record["full_seconds"] = traj.seconds
        record |= predict_from_points(points, predictor, budget_steps)
        record["status"] = "ok"
    except (CandidateError, ValueError, FileNotFoundError, ImportError) as err:
        record["reason"] = str(err)
    except torch.OutOfMemoryError as err:
        record["reason"] = (
            f"out of memory ({str(err).splitlines()[0]}); lower --batch-size or --input-size, or "
            "give each candidate a larger GPU."
        )
    except RuntimeError as err:  # a library error inside one candidate must not stop the others
        record["reason"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if record["cost_seconds"] is None:
        record["cost_seconds"] = time.perf_counter() - start
    return record


def _candidate_path(out_dir: Path, name: str) -> Path:
    return out_dir / "candidates" / f"{slug(name)}.json"


def _load_finished(out_dir: Path) -> dict[str, dict[str, Any]]:
    finished = {}
    for path in sorted((out_dir / "candidates").glob("*.json")):
        with contextlib.suppress(json.JSONDecodeError, KeyError):
            data = json.loads(path.read_text())
            finished[data["record"]["name"]] = data
    return finished


def rank(
    models: Sequence[str],
    data: str | ImageDataset,
    *,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    predictor: PredictorSettings | None = None,
    full_epochs: float | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    data_root: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    extra_settings: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    executor: str | Executor = "local",
    worker_setup: tuple[Callable[..., Any], dict[str, Any]] | None = None,
) -> RankResult:
    """Fine-tune every candidate briefly, predict its final accuracy, and rank.

    Parameters
    ----------
    models : sequence of str
        Candidate names from the registry (:func:`ncap.zoo.list_models`, or ``prefix:name``).
    data : str or ImageDataset
        A built-in dataset name, an image-folder path, or a loaded dataset.
    out_dir : path
        Where ``candidates/*.json``, ``results.json``, ``results.csv`` and the plots go.
    config : FinetuneConfig
        Early fine-tuning settings; ``config.epochs`` is the budget.
    predictor : PredictorSettings
    full_epochs : float, optional
        Also fine-tune to this many epochs and record ``final_accuracy`` (the prediction still uses
        only the points within the budget).
    n_train, n_val : int, optional
        Training images kept and validation images held out (seeded by ``config.seed``).
    data_root : path, optional
        Where torchvision datasets are (or are downloaded to).
    resume : bool
        Reuse finished candidates in ``out_dir`` that were run with the same settings.
    overwrite : bool
        Discard earlier results in ``out_dir``. Without ``resume`` or ``overwrite``, existing results
        make this raise instead of silently replacing them.
    progress : bool
        Show progress bars (candidate and step) on stderr.
    extra_settings : dict, optional
        Further settings that define the run (e.g. a search space's width); recorded, and resume
        requires them to match.
    runtime : Runtime, optional
        Device (``auto``/``cpu``/``cuda[:i]``), mixed precision and loader workers. Recorded with
        each candidate; not part of the resume check.
    executor : "local", "ray" or an executor object
        Where candidates run (:mod:`ncap.executors`); the outputs are the same.
    worker_setup : (callable, kwargs), optional
        Called in each remote worker before its candidate (e.g. to register a model source the
        way this process did).
    """
    config = config or FinetuneConfig()
    predictor = predictor or PredictorSettings()
    runtime = runtime or Runtime()
    executor = make_executor(executor) if isinstance(executor, str) else executor
    if executor.name == "local":  # (Ray workers may have GPUs this process lacks)
        runtime.torch_device()  # an unavailable device fails now, not once per candidate
    if not models:
        raise ValueError("no candidate models given; name at least one (see `ncap zoo`).")
    if predictor.variant == "signed" and len(config.probe_hidden) < 3:
        raise ValueError(
            f"the signed beta_eff of a probe with {len(config.probe_hidden) + 1} weight layers is "
            "identically 0 under softmax cross-entropy (sum_k e_k = 0); use >= 3 hidden widths "
            "(e.g. 128,64,32) or another variant (mean-abs, abs-mean)."
        )
    if len(set(models)) != len(models):
        raise ValueError(f"duplicate candidate names in {list(models)}; name each model once.")
    dataset = (
        data
        if isinstance(data, ImageDataset)
        else load_dataset(data, n_train=n_train, n_val=n_val, seed=config.seed, root=data_root)
    )
    n_seen = len(dataset.y_train)
    if full_epochs is not None and (
        full_epochs * config.steps_per_epoch(n_seen) < config.total_steps(n_seen)
    ):
        raise ValueError(
            f"full_epochs ({full_epochs}) must cover the budget ({config.total_steps(n_seen)} "
            "steps)."
        )
    out_dir = Path(out_dir)
    settings = _settings(dataset, config, predictor, full_epochs) | (extra_settings or {})
    finished = _load_finished(out_dir)
    if finished and not (resume or overwrite):
        raise FileExistsError(
            f"{out_dir} already holds results for {len(finished)} candidate(s); pass resume=True "
            "(--resume) to keep them and run only the rest, or overwrite=True (--overwrite) to "
            "start over, or choose another output directory."
        )
    if overwrite:
        for path in (out_dir / "candidates").glob("*.json"):
            path.unlink()
        finished = {}
    # the settings as a candidate file stores them (tuples -> lists, non-finite -> null)
    stored_settings = json.loads(json.dumps(to_jsonable(settings)))
    records: dict[str, dict[str, Any]] = {}
    with _progress(progress, len(models)) as bars:
        todo = []
        for name in models:
            done = finished.get(name)
            if done is not None and done["settings"] == stored_settings:
                if done["record"]["status"] == "ok":
                    records[name] = done["record"]
                    bars.candidate_done(name, skipped=True)
                    continue
            elif done is not None:
                raise ValueError(
                    f"{_candidate_path(out_dir, name)} was produced with different settings; "
                    "resume only with the same dataset, budget and predictor settings, or use "
                    "--overwrite / another output directory."
                )
            todo.append(name)
        job = CandidateJob(dataset, config, predictor, full_epochs, runtime, worker_setup)
        for record in executor.run(
            todo, job, on_start=bars.candidate_start, on_step=bars.step, log=log
        ):
            name = record["name"]
            atomic_write_json(
                {"settings": settings, "record": record}, _candidate_path(out_dir, name)
            )
            records[name] = record
            bars.candidate_done(name)
            if log and record["status"] != "ok":
                log(f"{name} failed: {record['reason']}")
    result = RankResult(
        candidates=[records[name] for name in models],
        settings=settings
        | {"environment": _environment(), "runtime": runtime.to_dict() | executor.describe()},
        out_dir=out_dir,
    )
    result.files = write_outputs(result)
    return result


def write_outputs(result: RankResult) -> dict[str, Path]:
    """results.json, results.csv and the PNG plots of a ranking."""
    from ncap.plots import plot_beta_trajectories, plot_fits

    out = result.out_dir
    files = {
        "json": atomic_write_json(result.to_dict(), out / "results.json"),
        "csv": atomic_write_text(results_csv(result.candidates), out / "results.csv"),
    }
    predictor = PredictorSettings(**result.settings["predictor"])
    files["beta_plot"] = plot_beta_trajectories(
        result.candidates, predictor.variant, out / "beta_eff.png"
    )
    files["fit_plot"] = plot_fits(
        result.candidates, predictor, result.settings["budget_steps"], out / "fits.png"
    )
    return files


CSV_COLUMNS = (
    "rank",
    "name",
    "status",
    "predicted_accuracy",
    "predicted_std",
    "observed_accuracy",
    "final_accuracy",
    "test_accuracy",
    "beta_eff_signed",
    "beta_eff_mean_abs",
    "beta_eff_abs_mean",
    "cost_seconds",
    "reason",
)


def results_csv(candidates: Sequence[dict[str, Any]]) -> str:
    order = {name: k + 1 for k, name in enumerate(rank_order(candidates))}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for c in sorted(candidates, key=lambda c: order.get(c["name"], math.inf)):
        beta = c.get("beta_eff_end") or {}
        writer.writerow(
            {
                "rank": order.get(c["name"], ""),
                "name": c["name"],
                "status": c["status"],
                "predicted_accuracy": c["predicted_accuracy"],
                "predicted_std": c["predicted_std"],
                "observed_accuracy": c["observed_accuracy"],
                "final_accuracy": c.get("final_accuracy"),
                "test_accuracy": c.get("test_accuracy"),
                "beta_eff_signed": beta.get("signed"),
                "beta_eff_mean_abs": beta.get("mean-abs"),
                "beta_eff_abs_mean": beta.get("abs-mean"),
                "cost_seconds": c["cost_seconds"],
                "reason": c["reason"] or "",
            }
        )
    return buffer.getvalue()


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` (or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    return json.loads(path.read_text())


class _Bars:
    """Progress bars for candidates and steps (no-ops when disabled)."""

    def __init__(self, progress, n_candidates: int) -> None:
        self.progress = progress
        if progress is not None:
            self.cand = progress.add_task("candidates", total=n_candidates)
            self.steps = progress.add_task("step", total=1, visible=False)

    def candidate_start(self, name: str) -> None:
        if self.progress is not None:
            self.progress.update(self.cand, description=f"candidates ({name})")
            self.progress.reset(self.steps, total=1, visible=True, description=f"{name} steps")

    def step(self, step: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.steps, completed=step, total=total)

    def candidate_done(self, name: str, *, skipped: bool = False) -> None:
        if self.progress is not None:
            self.progress.advance(self.cand)
            if skipped:
                self.progress.console.log(f"{name}: finished earlier, reused (--resume)")


@contextlib.contextmanager
def _progress(enabled: bool, n_candidates: int) -> Iterator[_Bars]:
    if not enabled:
        yield _Bars(None, n_candidates)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        yield _Bars(progress, n_candidates)
