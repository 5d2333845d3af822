"""The typed hand-offs between stages and their JSON form (version 1, unchanged).

- :class:`TrajectoryPoint`: one evaluation of a fine-tuning run (a JSON object in every file);
- :class:`Trajectory`: what one run recorded (its points and how it ran);
- :class:`CandidateRecord`: one candidate of a ranking (``candidates/<slug>.json``'s ``record``);
- :class:`RankResult`: a whole ranking (``results.json``).

The points and records stay plain dicts at run time (typed here as ``TypedDict``), so bench-v1.json,
existing ``results.json`` files and the candidate files of a run directory are read as they are.

>>> rank_order([{"name": "a", "status": "ok", "predicted_accuracy": 0.5},
...             {"name": "b", "status": "ok", "predicted_accuracy": 0.7},
...             {"name": "c", "status": "failed", "predicted_accuracy": None}])
['b', 'a']
>>> slug("timm:resnet50@random")
'timm_resnet50_random'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from ncap.exceptions import ConfigError, MissingDependency, MissingFile

__all__ = [
    "RESULTS_VERSION",
    "CandidateRecord",
    "RankResult",
    "Trajectory",
    "TrajectoryPoint",
    "failed_record",
    "load_results",
    "rank_order",
    "slug",
    "MEASUREMENTS",
    "trajectory_arrays",
]

RESULTS_VERSION = 1


class TrajectoryPoint(TypedDict):
    """One evaluation of a fine-tuning run: beta_eff of the interval since the last one, losses."""

    step: int
    epoch: float
    beta_eff: dict[str, float | None]  # per variant; None where undefined
    train_loss: float
    val_loss: float
    val_accuracy: float
    wall_time: float  # seconds since the run started
    # beta_eff on a fixed batch at this point (ncap.training.fixed_batch; bench-v2 records it)
    beta_eff_fixed: NotRequired[dict[str, float | None]]
    # validation images of this evaluation (FinetuneConfig.val_share; absent: the whole split)
    val_images: NotRequired[int]


class CandidateRecord(TypedDict, total=False):
    """One candidate of a ranking (the keys of :func:`failed_record` plus those of a finished run)."""

    name: str
    status: str  # "ok" or "failed"
    reason: str | None
    predicted_accuracy: float | None
    predicted_std: float | None
    observed_accuracy: float | None
    final_accuracy: float | None
    test_accuracy: float | None
    beta_eff_end: dict[str, float | None] | None
    cost_seconds: float | None
    trajectory: list[TrajectoryPoint]
    backbone: dict[str, Any]
    runtime: dict[str, Any]
    test: dict[str, Any]
    full_seconds: float
    fit: dict[str, Any]
    steps: int  # training steps spent on the ranking (cost accounting)
    seconds: float  # their wall time (= cost_seconds)
    halving: dict[str, Any]  # successive halving: rungs reached, scores, why it was dropped


@dataclass
class Trajectory:
    """What one fine-tuning run recorded."""

    points: list[TrajectoryPoint] = field(default_factory=list)
    steps_per_epoch: int = 0
    total_steps: int = 0
    seconds: float = 0.0
    num_features: int | None = None
    runtime: dict[str, Any] = field(default_factory=dict)  # device, precision, input convention
    test: dict[str, Any] | None = None  # loss/accuracy on the test split at the end of the run
    first_step: int = 0  # the step this call continued from (a checkpoint's; 0: from the start)
    last_step: int = 0  # the step it stopped after (total_steps unless it stopped early)


MEASUREMENTS = {"interval": "beta_eff", "fixed": "beta_eff_fixed"}
"""beta_eff's two measurements and the point field holding each: ``interval`` (statistics accumulated
over the training steps since the previous evaluation) and ``fixed`` (the instantaneous value on a
fixed probe batch at the evaluation point; bench-v2 records it)."""


def trajectory_arrays(
    points: Sequence[dict[str, Any]],
    variant: str,
    *,
    max_step: int | None = None,
    measurement: str = "interval",
) -> tuple[list[float], list[float]]:
    """``(beta_eff, val_accuracy)`` lists of the points up to ``max_step`` with a defined beta.

    ``measurement`` picks the field (:data:`MEASUREMENTS`); a point without it has no defined beta.
    A variant that was not tracked per step (absent from ``beta_eff``) is read from
    ``beta_eff_fixed`` when the run measured it there (``FinetuneConfig.fixed_batch``).
    """
    field = MEASUREMENTS[measurement]
    beta, acc = [], []
    for p in points:
        if max_step is not None and p["step"] > max_step:
            break
        values = p.get(field) or {}
        value = values.get(variant)
        if measurement == "interval" and variant not in values:
            value = (p.get("beta_eff_fixed") or {}).get(variant)
        if value is not None and math.isfinite(value):
            beta.append(value)
            acc.append(p["val_accuracy"])
    return beta, acc


def failed_record(name: str, reason: str | None = None) -> CandidateRecord:
    """A candidate record before (or without) a successful run."""
    return {
        "name": name,
        "status": "failed",
        "reason": reason,
        "predicted_accuracy": None,
        "predicted_std": None,
        "observed_accuracy": None,
        "final_accuracy": None,
        "test_accuracy": None,
        "beta_eff_end": None,
        "cost_seconds": None,
        "trajectory": [],
    }


@dataclass
class RankResult:
    """The outcome of :func:`rank`: candidate records (JSON contract) and where files went."""

    candidates: list[CandidateRecord]
    settings: dict[str, Any]
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    cost: dict[str, Any] | None = None  # ncap.ranking.cost.run_cost
    order: list[str] | None = None  # a strategy's own order (successive halving), else predicted
    rungs: list[dict[str, Any]] | None = None  # successive halving's rung decisions

    @property
    def ranking(self) -> list[str]:
        """Names of the successful candidates, best first (best predicted, unless a strategy such
        as successive halving set its own ``order``)."""
        return list(self.order) if self.order is not None else rank_order(self.candidates)

    @property
    def best(self) -> str | None:
        """The name of the best candidate (the first of :attr:`ranking`; None if none succeeded)."""
        ranking = self.ranking
        return ranking[0] if ranking else None

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per candidate in ranking order (failed ones last): the table's columns
        (``rank``, ``name``, ``status``, ``score``, ``predicted_accuracy`` with ``low95``/``high95``
        and ``calibrated``, ``flags``, ``observed_accuracy``, ``cost_seconds``, ``reason``).
        ``predicted_accuracy`` is the table's prediction (``prediction.accuracy``)."""
        order = {name: k + 1 for k, name in enumerate(self.ranking)}
        rows = []
        for c in sorted(self.candidates, key=lambda c: order.get(c["name"], math.inf)):
            prediction = c.get("prediction") or {}
            interval = prediction.get("95") or (None, None)
            rows.append(
                {
                    "rank": order.get(c["name"]),
                    "name": c["name"],
                    "status": c["status"],
                    "score": (c.get("score") or {}).get("value"),
                    "predicted_accuracy": prediction.get("accuracy"),
                    "low95": interval[0],
                    "high95": interval[1],
                    "calibrated": prediction.get("calibrated"),
                    "flags": ",".join(c.get("flags") or {}),
                    "observed_accuracy": c.get("observed_accuracy"),
                    "final_accuracy": c.get("final_accuracy"),
                    "cost_seconds": c.get("cost_seconds"),
                    "reason": c.get("reason"),
                }
            )
        return rows

    def to_pandas(self):
        """:meth:`to_records` as a pandas DataFrame indexed by name (pandas is optional)."""
        try:
            import pandas as pd  # optional: pandas (not a dependency)
        except ImportError:
            raise MissingDependency(
                "to_pandas() needs pandas (pip install pandas); to_records() gives the same "
                "rows as plain dicts."
            ) from None
        return pd.DataFrame.from_records(self.to_records()).set_index("name")

    def plot(self, which: str = "learning_plot"):
        """Show one of the plots the run wrote (``learning_plot``, ``fit_plot``, ``beta_plot``,
        ``rungs_plot``) in a matplotlib figure (shown inline in a notebook) and return it."""
        if which not in self.files:
            plots = [k for k in self.files if k.endswith("_plot")]
            raise ConfigError(f"this run wrote no {which!r}; it has {', '.join(plots)}.")
        import matplotlib.image  # lazy: matplotlib, only to draw a plot
        import matplotlib.pyplot as plt  # lazy: matplotlib, only to draw a plot

        image = matplotlib.image.imread(self.files[which])
        fig, ax = plt.subplots(figsize=(image.shape[1] / 110, image.shape[0] / 110))
        ax.imshow(image)
        ax.set_axis_off()
        fig.tight_layout(pad=0)
        return fig

    def to_dict(self) -> dict[str, Any]:
        out = {
            "version": RESULTS_VERSION,
            "candidates": self.candidates,
            "ranking": self.ranking,
            "settings": self.settings,
        }
        if self.cost is not None:
            out["cost"] = self.cost
        if self.rungs is not None:
            out["rungs"] = self.rungs
        return out


def rank_order(candidates: Sequence[dict[str, Any]]) -> list[str]:
    ok = [c for c in candidates if c["status"] == "ok"]
    # (a candidate without a prediction, e.g. dropped early by successive halving, comes last)
    return [
        c["name"]
        for c in sorted(
            ok,
            key=lambda c: (
                c["predicted_accuracy"] is None,
                -(c["predicted_accuracy"] or 0.0),
                c["name"],
            ),
        )
    ]


def slug(name: str) -> str:
    """File-system-safe form of a candidate name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "candidate"


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` (or the folder holding it).

    A missing file raises :class:`~ncap.exceptions.MissingFile`; a file that is not JSON or not
    of the shape :func:`ncap.ranking.rank.rank` writes raises :class:`~ncap.exceptions.ConfigError`
    naming the file and the problem.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise MissingFile(f"results file {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"results file {path} is not valid JSON ({err}).") from None
    problem = results_problem(data)
    if problem:
        raise ConfigError(
            f"results file {path}: {problem}; it is not a results.json written by ncap rank."
        )
    return data


def results_problem(data: Any) -> str | None:
    """What is wrong with the shape of a results.json's content (None when nothing)."""
    if not isinstance(data, dict):
        return f"expected a JSON object, found {type(data).__name__}"
    for key, kind in (("candidates", list), ("ranking", list), ("settings", dict)):
        if not isinstance(data.get(key), kind):
            return f"{key!r} is missing or not a {kind.__name__}"
    for k, c in enumerate(data["candidates"]):
        if not isinstance(c, dict) or not all(
            isinstance(c.get(f), str) for f in ("name", "status")
        ):
            return f"candidates[{k}] is not a candidate record (no name/status)"
    return None
