"""Checks made before any training starts: the output directory, the flags, the model/data fit.

Each check is a plain function that raises an :class:`~ncap.exceptions.NcapError` naming the
problem and the fix (or, for the fit, returns the reason per candidate), so a run that must fail
fails in seconds instead of after minutes of pretraining and fine-tuning.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from ncap.data.dataset import ImageDataset
from ncap.exceptions import ConfigError, OutputExists, StorageError
from ncap.models.builtin import BUILTIN_SIZE, fixed_size, list_models, model_spec
from ncap.predict.settings import PredictorSettings
from ncap.training.config import FinetuneConfig
from ncap.training.schedule import eval_steps

__all__ = [
    "BUILTIN_SIZE",
    "OUTPUT_FILES",
    "builtin_fit_problems",
    "check_budget",
    "check_burn_in",
    "check_output_dir",
    "check_strategy",
    "clear_outputs",
    "existing_outputs",
]

# what a run writes besides candidates/*.json (report.write_outputs)
OUTPUT_FILES = ("results.json", "results.csv", "beta_eff.png", "fits.png")


def existing_outputs(out_dir: Path) -> list[Path]:
    """The results of an earlier run in ``out_dir``: candidate files and the report files."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = (
        sorted((out_dir / "candidates").glob("*.json")) if (out_dir / "candidates").is_dir() else []
    )
    return found + [out_dir / f for f in OUTPUT_FILES if (out_dir / f).exists()]


def check_output_dir(out_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> Path:
    """Raise unless ``out_dir`` can take this run's results (creating it if needed).

    - ``resume`` with ``overwrite`` contradict each other;
    - a file where the directory (or one of its parents) should be, or a directory that cannot be
      written, is named;
    - earlier results (candidate files, results.json/.csv, the plots) are never replaced without
      ``resume`` or ``overwrite``.
    """
    if not str(out_dir).strip():  # (Path("") is the current directory)
        raise ConfigError(
            "the output directory is empty (--out ''); name a folder, e.g. --out runs/first."
        )
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise ConfigError(
            "--resume keeps the finished candidates in the output directory and --overwrite "
            "discards them; pass one of the two."
        )
    for folder in (out_dir, *out_dir.parents):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(
                f"the output directory {out_dir} cannot be created: {folder} is a file; choose "
                "another --out."
            )
        if folder.exists():
            break
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as err:
        raise StorageError(
            f"the output directory {out_dir} is not writable ({err.strerror or err}); choose "
            "another --out or fix its permissions."
        ) from err
    found = existing_outputs(out_dir)
    if found and not (resume or overwrite):
        n = sum(p.parent.name == "candidates" for p in found)
        what = f"results for {n} candidate(s)" if n else f"earlier results ({found[0].name})"
        raise OutputExists(
            f"{out_dir} already holds {what}; pass --resume (Execution(mode='resume')) to keep "
            "them and run only the rest, or --overwrite (mode='overwrite') to start over, or choose another "
            "output directory."
        )
    return out_dir


def check_strategy(out_dir: Path, strategy: str, *, resume: bool) -> None:
    """``--resume`` continues only a run of the same strategy: a fixed run's candidate files and a
    halving run's rung records are different state, and neither strategy may replace the other's
    results under --resume."""
    out_dir = Path(out_dir)
    halving = (out_dir / "rungs.json").exists() or (out_dir / "rungs").is_dir()
    fixed = (out_dir / "candidates").is_dir() and any((out_dir / "candidates").glob("*.json"))
    other = "halving" if halving and strategy == "fixed" else None
    other = "fixed" if fixed and strategy == "halving" else other
    if resume and other is not None:
        raise ConfigError(
            f"{out_dir} holds a run of --strategy {other}; --resume continues only a run of the "
            f"same strategy: pass --strategy {other}, or choose another output directory."
        )


def check_burn_in(
    config: FinetuneConfig, predictor: PredictorSettings, n_train: int, extra: Sequence[int] = ()
) -> None:
    """Raise when ``--burn-in`` leaves out every evaluation point of the budget (the
    extrapolation of every candidate would be silently empty); ``extra``: further evaluation
    steps (a halving run's rungs)."""
    points = len(eval_steps(config, n_train, extra=extra))
    if predictor.burn_in >= points:
        raise ConfigError(
            f"--burn-in {predictor.burn_in} leaves out every one of the {points} evaluation "
            f"point(s) within the budget of {config.total_steps(n_train)} step(s); lower "
            "--burn-in or evaluate more often (--eval-every)."
        )


def clear_outputs(out_dir: Path) -> None:
    """``--overwrite``: remove the earlier run's candidate files and report files (nothing else)."""
    for path in existing_outputs(out_dir):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def builtin_fit_problems(
    models: Sequence[str], dataset: ImageDataset, *, input_size: int | None = None
) -> dict[str, str]:
    """Why each built-in zoo model cannot take ``dataset`` (the others are not listed).

    The built-in zoo takes grey images (RGB ones are converted per batch); its MLPs and LeNets are
    fed their pretraining size (:func:`ncap.models.builtin.fixed_size`: the images are resized),
    unless ``input_size`` forces another. The check builds each architecture (no pretraining) and
    runs it on two blank images of the size it would get, so a mismatch is found before the zoo is
    pretrained.
    """
    builtin = set(list_models())
    problems: dict[str, str] = {}
    fix = (
        f"the built-in MLPs and LeNets take {BUILTIN_SIZE} px images: leave --input-size unset "
        "(the images are then resized for them), or pick other models"
    )
    for name in models:
        if name not in builtin:
            continue
        if dataset.channels not in (1, 3):
            problems[name] = (
                f"channel mismatch: {name} takes grey (or RGB, converted) images, the data has "
                f"{dataset.channels} channels; convert the data with --channels 1."
            )
            continue
        fixed = fixed_size(name)
        size = (
            (input_size, input_size)
            if input_size
            else ((fixed, fixed) if fixed else dataset.image_size)
        )
        with torch.random.fork_rng():
            module, _ = model_spec(name).build()
        module.eval()
        try:
            with torch.no_grad():
                module(torch.zeros(2, 1, *size))
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            problems[name] = f"{name} cannot take {size[0]}x{size[1]} px images ({first}); {fix}."
    return problems


def check_budget(config: FinetuneConfig, predictor: PredictorSettings, n_train: int) -> None:
    """Raise unless the budget gives the predictor enough evaluation points to fit.

    The evaluations within a budget of ``T`` steps are those of its schedule
    (:func:`ncap.training.schedule.eval_steps`: by default at ``T/8, T/4, T/2, T``; with
    ``eval_every = I`` at ``I, 2I, ...`` and ``T``); every candidate would fail alike when they
    are fewer than the fit needs.
    """
    total = config.total_steps(n_train)
    points = len(eval_steps(config, n_train))
    needed = predictor.points_needed()
    if points < needed:
        where = (
            f"one every {config.eval_every} step(s)"
            if config.eval_every is not None
            else "at 1/8, 1/4, 1/2 and the end of the budget"
        )
        raise ConfigError(
            f"the budget of {total} step(s) ({n_train} training images, batch {config.batch_size}, "
            f"{config.epochs:g} epoch(s)) evaluates {points} time(s), {where}, "
            f"but the {predictor.features} fit needs {needed} points"
            + (f" ({predictor.burn_in} burn-in)" if predictor.burn_in else "")
            + "; raise --epochs, set a small --eval-every, lower --batch-size, or use more "
            "training images."
        )
