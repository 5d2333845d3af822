"""Atomic file writes: a finished unit of work is either wholly on disk or not at all."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_torch",
    "to_jsonable",
]


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write_bytes(text.encode("utf-8"), path)


def to_jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays, tuples and non-finite floats to strict JSON values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.tolist())
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar / 0-d array
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(obj: Any, path: str | os.PathLike, *, indent: int | None = 2) -> Path:
    """Strict JSON (non-finite floats become null), written atomically."""
    separators = None if indent is not None else (",", ":")
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, separators=separators)
    return atomic_write_text(text + "\n", path)


def atomic_write_torch(state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Save a state dict (tensors only, loadable with ``torch.load(..., weights_only=True)``)."""
    import io

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return atomic_write_bytes(buffer.getvalue(), path)
