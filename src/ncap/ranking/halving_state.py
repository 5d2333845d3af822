"""Successive halving's state in ``OUT``, written atomically and checked whenever it is read.

- ``rungs/<k>/<stem>.json``: ``{"settings", "record"}`` of one candidate at the end of rung ``k``
  (:func:`rung_file`; ``<stem>`` is :func:`ncap.ranking.store.file_stem`, so two names never
  share a file).
- ``rungs.json``: ``{"settings", "rungs"}``, the decided rungs; derived entirely from the rung
  records, so a damaged one is rewritten, never trusted.

A rung record that is not what it claims (not JSON, ``[]``, truncated, another candidate's, failed)
is reported and its candidate-rung is trained again from the same inputs (:func:`read_rung_record`);
a record or a state written with other settings stops the resume (ConfigError naming the file and
the fix), as for the fixed strategy's candidate files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ncap.exceptions import ConfigError
from ncap.ranking.store import file_stem, malformed_problem

__all__ = ["check_state", "read_rung_record", "rung_file"]

_DIFFERENT = (
    "was produced with different settings; resume only with the same dataset, budgets, eta, score "
    "and predictor, or use --overwrite."
)


def rung_file(out_dir: Path, k: int, name: str) -> Path:
    return Path(out_dir) / "rungs" / str(k) / f"{file_stem(name)}.json"


def _load(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"it is not valid JSON: {err.msg}, line {err.lineno}"


def read_rung_record(
    path: Path, name: str, settings: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a sound record of ``name`` written with ``settings`` (the settings
    as stored: JSON values); ``(None, problem)`` for one to redo; ``(None, None)`` when absent.

    Raises ConfigError when the file is a sound record of ``name`` from a run with other settings.
    """
    if not path.is_file():
        return None, None if not path.exists() else "it is not a file"
    data, problem = _load(path)
    problem = problem or malformed_problem(data)
    if problem is not None:
        return None, problem
    record = data["record"]
    if record["name"] != name:
        return None, f"it holds the record of {record['name']!r}, not of {name!r}"
    if data["settings"] != settings:
        raise ConfigError(f"{path} {_DIFFERENT}")
    for key in ("trajectory", "steps"):
        if record["status"] == "ok" and key not in record:
            return None, f"its record has no {key!r}"
    return record, None


def check_state(path: Path, settings: dict[str, Any]) -> str | None:
    """Check ``rungs.json`` before a resume: ConfigError when written with other settings; the
    problem (it is rebuilt from the rung records) when damaged; None when sound or absent."""
    if not path.exists():
        return None
    data, problem = _load(path) if path.is_file() else (None, "it is not a file")
    if problem is None and not (isinstance(data, dict) and isinstance(data.get("settings"), dict)):
        problem = "it is not an object with 'settings' and 'rungs'"
    if problem is not None:
        return problem
    if data["settings"] != settings:
        raise ConfigError(f"{path} {_DIFFERENT}")
    return None
