"""When a prediction cannot be trusted, and when candidates cannot be told apart.

Three flags mark a candidate whose predicted final accuracy is not worth its interval:

- ``at-chance``: its last observed validation accuracy is at or below chance (``1 / classes``)
  plus two binomial standard errors of that many validation images, i.e. indistinguishable from
  guessing; nothing it has learnt yet says where it will end;
- ``few-points``: fewer than :data:`MIN_POINTS` evaluation points within the budget (the early
  slope, a feature of the recommended score, is then undefined, and an extrapolation has nothing
  to fit);
- ``outside-fit``: a feature lies outside the range the shipped score was fitted on, so its
  prediction is an extrapolation its recalibration never saw.

A flagged prediction keeps its point value but loses its interval (``68``/``95``: None) and is
never ``calibrated`` (:func:`apply_flags`). :func:`separation` says which of the top candidates
cannot be told apart: those whose 95% interval overlaps the leader's, and every flagged one.

>>> at_chance(0.121, classes=10, images=256), at_chance(0.18, classes=10, images=256)
(True, False)
>>> apply_flags({"accuracy": 0.99, "calibrated": True, "95": [0.96, 0.999]}, ["at-chance"])
{'accuracy': 0.99, 'calibrated': False, '95': None, 'flags': ['at-chance'], '68': None}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "FLAGS",
    "MIN_POINTS",
    "apply_flags",
    "at_chance",
    "candidate_flags",
    "chance_margin",
    "demote_at_chance",
    "separation",
]

MIN_POINTS = 2  # the early slope (lo_slope) of the recommended score needs two points

FLAGS = {
    "at-chance": "observed accuracy at or below chance",
    "few-points": f"fewer than {MIN_POINTS} evaluation points within the budget",
    "outside-fit": "outside the range the score was fitted on",
}


def chance_margin(classes: int, images: int | None) -> float:
    """Chance accuracy plus two binomial standard errors on ``images`` validation images."""
    p = 1.0 / max(int(classes), 1)
    if not images:
        return p
    return p + 2.0 * math.sqrt(p * (1.0 - p) / images)


def at_chance(accuracy: float | None, *, classes: int | None, images: int | None) -> bool:
    """Whether an observed accuracy is indistinguishable from guessing (False when unknown)."""
    if accuracy is None or not classes or not math.isfinite(accuracy):
        return False
    return accuracy <= chance_margin(classes, images)


def candidate_flags(
    record: Mapping[str, Any], *, classes: int | None, budget_steps: int | None
) -> dict[str, str]:
    """The flags of one successful candidate record, each with a one-line reason."""
    points = [
        p
        for p in record.get("trajectory") or []
        if budget_steps is None or p["step"] <= budget_steps
    ]
    flags: dict[str, str] = {}
    observed = points[-1]["val_accuracy"] if points else record.get("observed_accuracy")
    images = points[-1].get("val_images") if points else None
    if at_chance(observed, classes=classes, images=images):
        flags["at-chance"] = (
            f"observed {100 * observed:.1f}% <= chance {100 / classes:.1f}% + 2 s.e. "
            f"({100 * chance_margin(classes, images):.1f}% on {images or '?'} images)"
        )
    if len(points) < MIN_POINTS:
        flags["few-points"] = f"{len(points)} evaluation point(s) within the budget"
    outside = (record.get("score") or {}).get("outside") or []
    if outside:
        flags["outside-fit"] = f"{', '.join(outside)} outside the fitted range"
    return flags


def apply_flags(prediction: dict[str, Any], flags: Sequence[str]) -> dict[str, Any]:
    """The prediction with its interval withheld and ``calibrated`` False when flagged."""
    if not flags:
        return prediction
    return prediction | {"calibrated": False, "95": None, "flags": list(flags), "68": None}


def demote_at_chance(order: Sequence[str], records: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``order`` with the candidates flagged ``at-chance`` moved after the others (among
    themselves by observed accuracy, best first): a score read off a model that has learnt
    nothing is no evidence (the rule successive halving's cuts follow too).

    >>> recs = {"a": {"flags": {"at-chance": ""}, "observed_accuracy": 0.1},
    ...         "b": {"flags": {}}, "c": {"flags": {"at-chance": ""}, "observed_accuracy": 0.12}}
    >>> demote_at_chance(["a", "b", "c"], recs)
    ['b', 'c', 'a']
    """
    chance = [n for n in order if "at-chance" in (records[n].get("flags") or {})]
    rest = [n for n in order if n not in chance]
    return rest + sorted(chance, key=lambda n: -(records[n].get("observed_accuracy") or 0.0))


def separation(ranked: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Which of ``ranked`` (successful records, best first, each with its ``prediction``) cannot be
    told apart from the leader: every candidate whose 95% interval overlaps the leader's, and every
    flagged one or one without an interval (its position carries no evidence either way).

    Returns ``{"tied": [names, leader first], "separated": bool, "statement": str}``.
    """
    if len(ranked) < 2:
        return {"tied": [r["name"] for r in ranked], "separated": True, "statement": None}
    leader = ranked[0]
    lead = (leader.get("prediction") or {}).get("95")
    tied = [leader["name"]]
    for r in ranked[1:]:
        interval = (r.get("prediction") or {}).get("95")
        if lead is None or interval is None or interval[1] >= lead[0]:
            tied.append(r["name"])
    separated = len(tied) == 1
    if separated:
        statement = (
            f"{leader['name']} is ahead: its 95% interval lies above every other candidate's"
        )
    elif lead is None:
        statement = (
            f"the ranking cannot be trusted at this budget: the leader {leader['name']} has no "
            f"interval ({', '.join(((leader.get('prediction') or {}).get('flags')) or ['none'])}); "
            f"{len(tied)} candidates cannot be told apart"
        )
        with_interval = [r for r in ranked if (r.get("prediction") or {}).get("95")]
        if len(with_interval) >= 2:
            inner = separation(with_interval)
            statement += (
                f"; among those with an interval, {with_interval[0]['name']} leads and "
                + (
                    "its 95% interval lies above the others'"
                    if inner["separated"]
                    else f"cannot be told apart from {', '.join(inner['tied'][1:6])}"
                    + (" ..." if len(inner["tied"]) > 6 else "")
                )
            )
    else:
        statement = (
            f"{len(tied)} candidates cannot be told apart at this budget ({', '.join(tied[:6])}"
            f"{' ...' if len(tied) > 6 else ''}): their 95% intervals overlap the leader's or "
            "are withheld"
        )
    return {"tied": tied, "separated": separated, "statement": statement}
