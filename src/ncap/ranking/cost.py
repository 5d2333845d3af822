"""What a ranking cost, against training every candidate to the full budget.

Each candidate record carries ``steps`` (training steps spent on the ranking) and their seconds,
``seconds`` or else ``cost_seconds`` (fine-tuning and evaluation time, not building the backbone). The cost of training everything
is estimated per candidate from its own measured seconds per step times the full budget's steps,
so a slow model weighs as much as it would in reality. The training-free scores computed for the
ranking (LogME: ``backbone["logme_seconds"]``) count in what was spent (``training_free_seconds``,
included in ``seconds``), not in the estimate. Candidates that failed before their first
step are counted in what was spent but cannot be extrapolated (``unmeasured``).

>>> c = run_cost([{"name": "a", "steps": 10, "seconds": 2.0}, {"name": "b", "steps": 40, "seconds": 4.0}],
...              full_steps=40, full_epochs=4.0)
>>> c["estimated_full_seconds"], round(c["fraction"], 3), c["fraction_steps"]
(12.0, 0.5, 0.625)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["run_cost", "spent_steps"]


def spent_steps(record: dict[str, Any], budget_steps: int) -> int:
    """Steps a candidate trained for the ranking (for records written before ``steps`` existed:
    the budget when it finished, else its last recorded point within the budget)."""
    if record.get("steps") is not None:
        return int(record["steps"])
    if record.get("status") == "ok":
        return budget_steps
    points = [p["step"] for p in record.get("trajectory") or [] if p["step"] <= budget_steps]
    return max(points, default=0)


def _seconds(record: dict[str, Any]) -> float:
    value = record.get("seconds", record.get("cost_seconds"))
    return float(value or 0.0)


def run_cost(
    records: Sequence[dict[str, Any]], *, full_steps: int | None, full_epochs: float | None
) -> dict[str, Any]:
    """Totals of ``steps``/``seconds`` and, with a full budget, the estimated cost of training
    every candidate to it and the fraction spent (in seconds, and in steps)."""
    steps = sum(int(r.get("steps") or 0) for r in records)
    free = sum(float((r.get("backbone") or {}).get("logme_seconds") or 0.0) for r in records)
    seconds = sum(_seconds(r) for r in records) + free
    out: dict[str, Any] = {
        "steps": steps,
        "seconds": seconds,
        "training_free_seconds": free,
        "full_epochs": full_epochs,
        "full_steps": full_steps,
        "estimated_full_seconds": None,
        "fraction": None,
        "fraction_steps": None,
        "unmeasured": [r["name"] for r in records if not r.get("steps")],
    }
    if not full_steps:
        return out
    measured = [r for r in records if r.get("steps")]
    estimate = sum(_seconds(r) / int(r["steps"]) * full_steps for r in measured)
    out["estimated_full_seconds"] = estimate
    out["fraction"] = seconds / estimate if estimate > 0 else None
    out["fraction_steps"] = steps / (full_steps * len(records)) if records else None
    return out
