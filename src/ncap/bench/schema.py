"""The shape of a benchmark results file, checked when it is read: a file of another shape is
named with its first problem instead of failing deep inside the evaluation with a KeyError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ncap.exceptions import ConfigError
from ncap.storage import read_json

__all__ = ["load_results_file", "results_file_problem"]

_RUN_KEYS = ("target", "model", "seed", "steps_per_epoch", "points")
_POINT_KEYS = ("step", "epoch", "beta_eff", "val_accuracy")


def results_file_problem(results: Any) -> str | None:
    """The first thing wrong with a results file's content, or None."""
    if not isinstance(results, dict):
        return f"expected a JSON object, found {type(results).__name__}"
    plan = results.get("plan")
    if not isinstance(plan, dict):
        return "it has no 'plan' object"
    for key, kind in (
        ("models", list),
        ("targets", list),
        ("seeds", list),
        ("epochs", (int, float)),
    ):
        if not isinstance(plan.get(key), kind):
            return f"plan.{key} is missing or of the wrong type"
    targets = set()
    for k, t in enumerate(plan["targets"]):
        if not isinstance(t, dict) or not isinstance(t.get("key"), str):
            return f"plan.targets[{k}] has no 'key'"
        targets.add(t["key"])
    if not isinstance(results.get("runs"), list):
        return "it has no 'runs' list"
    if not isinstance(results.get("training_free"), dict):
        return "it has no 'training_free' object"
    for k, run in enumerate(results["runs"]):
        if not isinstance(run, dict):
            return f"runs[{k}] is not an object"
        missing = [key for key in _RUN_KEYS if key not in run]
        if missing:
            return f"runs[{k}] lacks {', '.join(missing)}"
        if run["target"] not in targets or run["model"] not in plan["models"]:
            return f"runs[{k}] ({run['target']}, {run['model']}) is not in the plan"
        points = run["points"]
        if not isinstance(points, list) or not points:
            return f"runs[{k}] has no points"
        for j, p in enumerate(points):
            if not isinstance(p, dict) or any(key not in p for key in _POINT_KEYS):
                return f"runs[{k}].points[{j}] lacks one of {', '.join(_POINT_KEYS)}"
        free = results["training_free"].get(run["target"])
        if not isinstance(free, dict) or not isinstance(free.get(run["model"]), dict):
            return f"training_free has no entry for ({run['target']}, {run['model']})"
    return None


def load_results_file(path: str | Path) -> dict[str, Any]:
    """A benchmark results file (``ncap bench build``), its shape checked."""
    results = read_json(path, "benchmark results file")
    problem = results_file_problem(results)
    if problem:
        raise ConfigError(
            f"benchmark results file {path}: {problem}; it must be a file written by "
            "`ncap bench build`."
        )
    return results
