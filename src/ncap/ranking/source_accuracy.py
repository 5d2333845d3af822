"""Source accuracies a user gives: each candidate's accuracy on its pretraining task (e.g. ImageNet
top-1), parsed once at the door into a checked mapping ``{candidate name: fraction in (0, 1]}``.

ncap's own zoo records its source accuracy when it pretrains; a timm, torchvision, ``py:`` or
Python-object candidate has none, so a score that reads it (``fit/base``'s ``logit_source``, the
``source-accuracy`` baseline) leaves the feature out or fails. A value given here fills it, or
replaces the recorded one (:func:`ncap.ranking.scoring.score_candidates`). It is read only by the
scores that already read a source accuracy; whether it stays a feature of the default is for the
bench-v3 study to decide (docs/benchmark-v3-protocol.md).

Three ways in, one check (:func:`check_source_accuracy`): ``NAME=VALUE`` items
(:func:`parse_pairs`, the command line's ``--source-accuracy``), a file (:func:`read_file`: CSV with
the columns ``candidate`` and ``source_accuracy``, or a JSON object) and a mapping from Python
(``ncap.rank(..., source_accuracy={...})``).

>>> parse_pairs(["timm:resnet50=0.761,tv:densenet121=0.744"])
{'timm:resnet50': 0.761, 'tv:densenet121': 0.744}
>>> check_source_accuracy({"lenet": 1}, ["lenet", "mlp-s"])
{'lenet': 1.0}
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

from ncap.exceptions import ConfigError, MissingFile

__all__ = [
    "CSV_COLUMNS",
    "check_source_accuracy",
    "from_sources",
    "parse_pairs",
    "read_file",
    "require_reader",
    "source_accuracy_summary",
]

CSV_COLUMNS = ("candidate", "source_accuracy")
_EXAMPLE = "e.g. timm:resnet50=0.761 for an ImageNet top-1 accuracy of 76.1%"
_JSON_SHAPE = 'a source-accuracy JSON file is one object {"candidate name": fraction, ...}'


def _fraction(name: str, value: Any, where: str) -> float:
    """``value`` as a source accuracy in (0, 1], or a ConfigError naming ``name`` and ``where``."""
    number = float(value) if isinstance(value, Real) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number):
        raise ConfigError(
            f"the source accuracy of {name!r} ({where}) is not a finite number: {value!r}; give "
            f"a fraction in (0, 1], {_EXAMPLE}."
        )
    if 1.0 < number <= 100.0:
        raise ConfigError(
            f"the source accuracy of {name!r} ({where}) is {number:g}, above 1: it looks like a "
            f"percentage; divide it by 100 ({number:g} -> {number / 100:g}). ncap takes a "
            "fraction in (0, 1]."
        )
    if not 0.0 < number <= 1.0:
        raise ConfigError(
            f"the source accuracy of {name!r} ({where}) is {number:g}, outside (0, 1]; give a "
            f"fraction, {_EXAMPLE}."
        )
    return number


def _text(value: str) -> Any:
    """A number written as text (the command line, a CSV cell), else the text itself."""
    try:
        return float(value)
    except ValueError:
        return value


def _add(out: dict[str, float], name: str, value: Any, where: str) -> None:
    name = name.strip()
    if not name:
        raise ConfigError(f"a source accuracy without a candidate name ({where}); {_EXAMPLE}.")
    if name in out:
        raise ConfigError(
            f"the source accuracy of {name!r} is given twice ({where}); give each candidate's once."
        )
    out[name] = _fraction(name, value, where)


def parse_pairs(items: Iterable[str]) -> dict[str, float]:
    """``NAME=VALUE`` items, each possibly comma-separated (``a=0.7,b=0.8``), as a mapping; the
    name is what precedes the last ``=``. A malformed item, a bad value or a name given twice is
    a ConfigError."""
    out: dict[str, float] = {}
    for item in items:
        for pair in item.split(","):
            if not pair.strip():
                continue
            name, sep, value = pair.rpartition("=")
            if not sep:
                raise ConfigError(
                    f"--source-accuracy {pair.strip()!r} is not NAME=VALUE; {_EXAMPLE}."
                )
            _add(out, name, _text(value.strip()), f"--source-accuracy {pair.strip()}")
    return out


def _read_csv(path: Path, text: str) -> dict[str, float]:
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in reader.fieldnames or ()]
    missing = [c for c in CSV_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            f"{path} has no column(s) {', '.join(missing)} (it has {', '.join(columns) or 'none'}); "
            f"a source-accuracy CSV needs a header with {','.join(CSV_COLUMNS)} (other columns are "
            "ignored)."
        )
    reader.fieldnames = columns
    out: dict[str, float] = {}
    for line, row in enumerate(reader, start=2):
        name, value = (row.get(c) for c in CSV_COLUMNS)
        if not (name or "").strip() and not (value or "").strip():
            continue  # an empty line
        if not (value or "").strip():  # a candidate whose source accuracy is unknown
            continue
        _add(out, name or "", _text(value.strip()), f"{path}, line {line}")
    return out


def _read_json(path: Path, text: str) -> dict[str, float]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise ConfigError(
                    f"the source accuracy of {key!r} is given twice ({path}); give each "
                    "candidate's once."
                )
            seen[key] = value
        return seen

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); {_JSON_SHAPE}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}; {_JSON_SHAPE}.")
    out: dict[str, float] = {}
    for name, value in data.items():
        _add(out, name, value, str(path))
    return out


def read_file(path: str | Path) -> dict[str, float]:
    """The source accuracies in ``path``: a CSV (``.csv``; header with the columns ``candidate``
    and ``source_accuracy``, other columns ignored, an empty value skipped) or a JSON object
    (``.json``; ``{"candidate name": fraction}``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(
            f"source-accuracy file {path} does not exist (or is not a file); give a CSV with the "
            f"columns {','.join(CSV_COLUMNS)} or a JSON object {{name: fraction}}."
        )
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ConfigError(
            f"source-accuracy file {path}: name it .csv (columns {','.join(CSV_COLUMNS)}) or "
            ".json (an object {name: fraction}); ncap reads the format from the suffix."
        )
    try:
        text = path.read_text(encoding="utf-8-sig")  # (a spreadsheet's CSV may start with a BOM)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text ({err}).") from None
    return _read_csv(path, text) if suffix == ".csv" else _read_json(path, text)


def from_sources(pairs: Iterable[str] = (), file: str | Path | None = None) -> dict[str, float]:
    """The command line's ``--source-accuracy`` items and ``--source-accuracy-file`` together; a
    candidate given in both is a ConfigError."""
    given = parse_pairs(pairs)
    if file is None:
        return given
    for name, value in read_file(file).items():
        if name in given:
            raise ConfigError(
                f"the source accuracy of {name!r} is given twice (--source-accuracy and {file}); "
                "give each candidate's once."
            )
        given[name] = value
    return given


def check_source_accuracy(
    values: Mapping[str, Any] | None, candidates: Sequence[str]
) -> dict[str, float]:
    """``values`` checked: every name a candidate of the run, every value a fraction in (0, 1].
    Returns a new ``{name: float}`` in the candidates' order (empty for None)."""
    if not values:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"source_accuracy must map candidate names to fractions, got {type(values).__name__}."
        )
    unknown = [str(n) for n in values if n not in candidates]
    if unknown:
        raise ConfigError(
            f"source accuracy given for {', '.join(map(repr, unknown))}, not candidate(s) of this "
            f"run; the candidates are: {', '.join(candidates)}."
        )
    return {n: _fraction(n, values[n], "source_accuracy") for n in candidates if n in values}


def require_reader(given: Mapping[str, float], score_names: Sequence[str], reads: bool) -> None:
    """A ConfigError when source accuracies are given but the score(s) the run ranks by
    (``score_names``) read none (``reads`` False): the values would change nothing."""
    if given and not reads:
        raise ConfigError(
            f"source accuracies are given (for {', '.join(given)}) but the score "
            f"{' / '.join(dict.fromkeys(score_names))} does not read a source accuracy, so they "
            "would change nothing; drop --source-accuracy (source_accuracy=), or rank by a score "
            "that reads it (fit/base, source-accuracy)."
        )


def source_accuracy_summary(
    given: Mapping[str, float], records: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], str]:
    """What ``results.json`` records of the given values (``{"given": {name: value}, "replaced":
    {name: the recorded value it replaced}}``) and the ranking's note about them."""
    recorded = {
        r["name"]: (r.get("backbone") or {}).get("source_accuracy")
        for r in records
        if r["name"] in given
    }
    replaced = {n: v for n, v in recorded.items() if v is not None}
    note = "source accuracy given by the user for " + ", ".join(
        f"{n} ({v:.4g})" for n, v in given.items()
    )
    if replaced:
        note += "; it replaces the value recorded at pretraining for " + ", ".join(
            f"{n} ({v:.4g})" for n, v in replaced.items()
        )
    return {"given": dict(given), "replaced": replaced}, note
