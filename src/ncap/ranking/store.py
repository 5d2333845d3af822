"""A run directory's finished candidates: ``candidates/<slug>.json`` holds its settings and record.

Two different candidate names never share a file: a name that is not already a safe file name
(``tv:resnet18``, ``py:m:f@ckpt.pt``) gets a short digest of the full name after its slug. Files
written by earlier versions (plain slugs) are found by the name recorded inside them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ncap.results import slug

__all__ = ["candidate_path", "file_stem", "load_finished", "malformed_problem", "stale_files"]


def file_stem(name: str) -> str:
    """``name`` when it is a safe file name, else ``<slug>-<digest of the name>`` (two names never
    share a stem: ``a/b`` and ``a_b`` differ)."""
    safe = slug(name)
    if safe != name:
        safe = f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


def candidate_path(out_dir: Path, name: str) -> Path:
    """``candidates/<name>.json`` for a safe name, else ``<slug>-<digest of the name>.json``."""
    return Path(out_dir) / "candidates" / f"{file_stem(name)}.json"


def malformed_problem(data: Any) -> str | None:
    """What is wrong with a candidate file's content (None when it has the expected shape)."""
    if not isinstance(data, dict):
        return f"expected a JSON object, found {type(data).__name__}"
    missing = [k for k in ("settings", "record") if k not in data]
    if missing:
        return f"it lacks {' and '.join(map(repr, missing))}"
    record = data["record"]
    if not isinstance(data["settings"], dict) or not isinstance(record, dict):
        return "its 'settings' and 'record' must be JSON objects"
    for key, kind in (("name", str), ("status", str)):
        if not isinstance(record.get(key), kind):
            return f"its record has no {key!r}"
    return None


def _read(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"it is not valid JSON: {err.msg}, line {err.lineno}"
    problem = malformed_problem(data)
    return (None, problem) if problem else (data, None)


def load_finished(
    out_dir: Path, *, on_malformed: Callable[[Path, str], None] | None = None
) -> dict[str, dict[str, Any]]:
    """The candidate files of ``out_dir`` by candidate name.

    A malformed file (truncated, hand-edited, of another shape) is left out, so its candidate runs
    again, and reported to ``on_malformed(path, problem)``.
    """
    finished = {}
    for path in sorted((Path(out_dir) / "candidates").glob("*.json")):
        data, problem = _read(path)
        if data is None:
            if on_malformed is not None:
                on_malformed(path, problem)
            continue
        name = data["record"]["name"]
        # two files for one name (an earlier version's plain slug): the current path wins
        if name not in finished or path == candidate_path(out_dir, name):
            finished[name] = data
    return finished


def stale_files(out_dir: Path, name: str) -> list[Path]:
    """Other files than :func:`candidate_path` that hold ``name`` (an earlier layout's), to remove
    when ``name`` is written anew."""
    own = candidate_path(out_dir, name)
    stale = []
    for path in (Path(out_dir) / "candidates").glob("*.json"):
        if path == own:
            continue
        data, _ = _read(path)
        if data is not None and data["record"]["name"] == name:
            stale.append(path)
    return stale
