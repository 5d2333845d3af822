"""The plot of a successive-halving run: the budget each candidate was trained to, rung by rung."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ncap.report.plots import _save

__all__ = ["plot_rungs"]


def plot_rungs(rungs: Sequence[dict[str, Any]], names: Sequence[str], path: Path) -> Path:
    """One line per candidate: its cumulative budget (epochs) after each rung it was trained in;
    a cross where it was dropped, a star for the survivors of the last rung."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for name in names:
        reached = [(r["rung"], r["budget_epochs"]) for r in rungs if name in r["ranked"]]
        if not reached:
            continue
        xs, ys = zip(*reached, strict=True)
        (line,) = ax.plot(xs, ys, marker="o", ms=3, label=name)
        dropped = any(name in r["dropped"] for r in rungs)
        ax.plot(xs[-1], ys[-1], marker="x" if dropped else "*", ms=10, color=line.get_color())
    ax.set_xlabel("rung")
    ax.set_ylabel("budget trained to (epochs)")
    ax.set_xticks([r["rung"] for r in rungs])
    ax.set_title("successive halving: budget per candidate (x: dropped, *: kept to the end)")
    if names:
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)
