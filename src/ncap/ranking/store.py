"""A run directory's finished candidates: ``candidates/<slug>.json`` holds its settings and record."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from ncap.results import slug

__all__ = ["candidate_path", "load_finished"]


def candidate_path(out_dir: Path, name: str) -> Path:
    return out_dir / "candidates" / f"{slug(name)}.json"


def load_finished(out_dir: Path) -> dict[str, dict[str, Any]]:
    finished = {}
    for path in sorted((out_dir / "candidates").glob("*.json")):
        with contextlib.suppress(json.JSONDecodeError, KeyError):
            data = json.loads(path.read_text())
            finished[data["record"]["name"]] = data
    return finished
