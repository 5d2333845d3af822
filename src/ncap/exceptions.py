"""ncap's own errors: everything ncap raises on purpose derives from :class:`NcapError`.

Each also derives from the built-in exception it refines (``ValueError``, ``FileNotFoundError``,
``RuntimeError``), so ``except ValueError`` keeps catching a bad setting. A candidate in a ranking
fails (a "failed" row with the reason) on an :class:`NcapError` and on errors raised inside the
candidate's own model code (:class:`ModelCodeError`), never on a bug inside ncap.

>>> issubclass(ConfigError, NcapError) and issubclass(ConfigError, ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "CandidateError",
    "CheckpointError",
    "ClusterUnreachable",
    "ConfigError",
    "DatasetMissing",
    "MissingDependency",
    "MissingFile",
    "ModelCodeError",
    "NcapError",
    "OutputExists",
    "PretrainedWeightsMissing",
    "RunDirectoryBusy",
    "StorageError",
    "WeightsMismatch",
]


class NcapError(Exception):
    """Base of the errors ncap raises on purpose (bad settings, missing files, failed candidates)."""


class ConfigError(NcapError, ValueError):
    """A setting, name or file content is invalid; the message says which and how to fix it."""


class CheckpointError(ConfigError):
    """A run's own checkpoint cannot continue it (unreadable, of other settings or another
    candidate, or past the step asked for); deleting it and starting over is always safe."""


class ClusterUnreachable(NcapError, ConnectionError):
    """The Ray cluster at the given address does not answer; the message names it and the fix."""


class DatasetMissing(NcapError, FileNotFoundError):
    """A dataset's files are missing and cannot be downloaded; the message says where to get them."""


class PretrainedWeightsMissing(NcapError, FileNotFoundError):
    """Pretrained weights are neither cached nor downloadable (offline)."""


class CandidateError(NcapError, RuntimeError):
    """A candidate cannot be fine-tuned (diverged, bad data, size mismatch); the reason says why."""


class ModelCodeError(CandidateError):
    """An error raised inside a candidate's own model code (its factory or its forward pass)."""


class MissingFile(NcapError, FileNotFoundError):
    """A file ncap was pointed at (a recipe, a checkpoint, a results file) does not exist."""


class MissingDependency(NcapError, ImportError):
    """An optional extra (timm, torchvision, Ray) is not installed; the message names the extra."""


class StorageError(NcapError, OSError):
    """A file could not be written or read (a full disk, no permission); the message names the path."""


class RunDirectoryBusy(NcapError, RuntimeError):
    """Another ncap process is writing to the same output directory."""


class OutputExists(NcapError, FileExistsError):
    """The output directory holds earlier results and neither resume nor overwrite was asked for."""


class WeightsMismatch(NcapError, ValueError):
    """A weights file is not the checkpoint it should be (its sha256 differs); the message names it."""
