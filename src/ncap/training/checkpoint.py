"""Stop a fine-tuning at a step and continue it later exactly as if it had never stopped.

A checkpoint holds everything the rest of the run depends on: the weights and buffers of backbone
and probe, the optimiser's state, the probe's accumulated statistics of the open evaluation
interval, the recorder's running training loss, every callback's state, the points recorded so
far, the step reached and the random number generators (CPU, and the device's on CUDA). The batch
order needs no state: it is a function of the seed and the step (:func:`ncap.training.loop.batch_loader`).

It is a plain dict of tensors, numbers, strings and lists, written atomically
(:func:`ncap.storage.atomic_write_torch`) and read with ``torch.load(..., weights_only=True)``, so
loading a checkpoint never runs code from the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ncap.exceptions import CheckpointError, MissingFile
from ncap.storage import atomic_write_torch, to_jsonable

__all__ = [
    "CHECKPOINT_VERSION",
    "Segment",
    "check_compatible",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Segment:
    """The part of a run one :func:`ncap.training.loop.finetune` call trains (the config's budget
    still defines the run: its length, its evaluation schedule and what ``epoch`` means).

    Parameters
    ----------
    stop_at : int, optional
        Stop after this training step instead of the last one.
    resume_from : path, optional
        Continue from a checkpoint written by ``checkpoint_to`` of a run with the same settings:
        the returned points are the checkpoint's followed by the new ones, and equal those of an
        uninterrupted run bit for bit (wall times aside).
    checkpoint_to : path, optional
        Write a checkpoint at the step where the call stops.
    owner : str, optional
        Who the checkpoints belong to (a candidate's name): written into ``checkpoint_to`` and
        checked against ``resume_from``'s.

    >>> Segment(stop_at=12, checkpoint_to="ckpt.pt").resume_from is None
    True
    """

    stop_at: int | None = None
    resume_from: str | os.PathLike | None = None
    checkpoint_to: str | os.PathLike | None = None
    owner: str | None = None


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The random number generators a training step may draw from (dropout, stochastic depth)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a checkpoint (the dict :func:`ncap.training.loop.finetune` assembles) atomically."""
    return atomic_write_torch({"version": CHECKPOINT_VERSION} | state, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint on the CPU with ``weights_only=True``."""
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which and what to do
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); delete it to "
            "start that candidate over."
        ) from err
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is not an ncap checkpoint of version {CHECKPOINT_VERSION}; delete it to "
            "start that candidate over."
        )
    return state


def check_compatible(
    state: dict[str, Any], config: dict[str, Any], total_steps: int, path, owner: str | None = None
) -> None:
    """A checkpoint continues only the run it was taken from (same settings, same length, and the
    same ``owner`` when both name one: a candidate's checkpoint never continues another)."""
    stored = json.loads(json.dumps(to_jsonable(config)))
    theirs = state.get("owner")
    if owner is not None and theirs is not None and theirs != owner:
        raise CheckpointError(
            f"checkpoint {path} belongs to {theirs!r}, not to {owner!r}; delete it to start "
            f"{owner!r} over."
        )
    if state["config"] != stored or int(state["total_steps"]) != total_steps:
        raise CheckpointError(
            f"checkpoint {path} was written by a run with other settings (or another total "
            "budget); delete it, or continue with the settings it was written with."
        )
