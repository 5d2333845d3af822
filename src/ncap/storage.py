"""Atomic file writes (a finished unit of work is either wholly on disk or not at all), strict JSON
reads that name the file and the problem, and the lock of an output directory."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ncap.exceptions import ConfigError, MissingFile, RunDirectoryBusy, StorageError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_torch",
    "directory_lock",
    "read_json",
    "to_jsonable",
]


def _os_problem(err: OSError) -> str:
    """``No space left on device`` (the strerror without the errno and the path)."""
    return err.strerror or str(err) or type(err).__name__


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    An operating-system error (a full disk, no permission, a file where a folder should be) leaves
    the earlier file untouched and raises :class:`~ncap.exceptions.StorageError` naming ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                Path(tmp).unlink(missing_ok=True)
        raise StorageError(
            f"cannot write {path}: {_os_problem(err)}"
            + (" (free some space, then rerun with --resume)" if err.errno == errno.ENOSPC else "")
        ) from err
    except BaseException:
        if tmp is not None:
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
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return atomic_write_bytes(buffer.getvalue(), path)


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """The JSON content of ``path``; a missing, unreadable or malformed file raises an
    :class:`~ncap.exceptions.NcapError` naming the file and the problem (line and column)."""
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"{what} {path} does not exist.")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a JSON file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {err.start}); not a JSON file."
        ) from None
    except OSError as err:
        raise StorageError(f"cannot read {what} {path}: {_os_problem(err)}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{what} {path} is not valid JSON ({err.msg} at line {err.lineno}, column "
            f"{err.colno}); it may be truncated or hand-edited."
        ) from None


LOCK_NAME = ".ncap.lock"


def _open_lock(lock: Path) -> int:
    """Open ``lock`` for reading and writing, refusing anything but a plain file of its own.

    The lock is truncated and written, so a symbolic link, a hard link (a second name of another
    file), a FIFO or a device planted at its name would have another file overwritten or the run
    hang: ``O_NOFOLLOW`` refuses a link at the last component, ``O_NONBLOCK`` keeps a FIFO from
    blocking, and ``fstat`` of the opened file checks what was opened (no race with ``lstat``).
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fix = f"remove {lock} (ncap creates it anew) or choose another output directory."
    try:
        fd = os.open(lock, flags, 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP or lock.is_symlink():
            raise StorageError(
                f"the lock file {lock} is a symbolic link, which ncap never writes through; {fix}"
            ) from None
        raise
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif info.st_nlink != 1:
        problem = f"has {info.st_nlink} hard links (it would overwrite another file)"
    if problem is not None:
        os.close(fd)
        raise StorageError(f"the lock file {lock} {problem}; {fix}")
    return fd


@contextlib.contextmanager
def directory_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if needed) while the block runs.

    The lock is an advisory ``flock`` on ``folder/.ncap.lock``: the operating system releases it
    when the process ends, however it ends (kill -9 included), so a stale lock never blocks a
    rerun. A second holder gets :class:`~ncap.exceptions.RunDirectoryBusy` at once. A lock path
    that is a link or not a plain file is refused (:func:`_open_lock`) and left untouched.
    """
    import fcntl  # optional: fcntl, POSIX only (the run lock)

    folder = Path(folder)
    lock = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _open_lock(lock)
    except StorageError:
        raise
    except OSError as err:
        raise StorageError(
            f"cannot write to the output directory {folder}: {_os_problem(err)}"
        ) from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirectoryBusy(
                f"another ncap process (pid {other}) is writing to {folder}; wait for it to end, "
                "or choose another output directory."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield lock
    finally:
        os.close(fd)  # (closing releases the flock)
