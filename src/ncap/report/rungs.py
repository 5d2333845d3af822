"""The plot of a successive-halving run: each candidate's rung score against the budget it had."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ncap.report.plots import _save

__all__ = ["plot_rungs"]


def plot_rungs(rungs: Sequence[dict[str, Any]], names: Sequence[str], path: Path) -> Path:
    """One line per candidate: the score each rung ranked it by against the rung's budget
    (epochs), with the 95% interval the cut saw where the score has one; a cross where it was
    dropped, a star for the survivors of the last rung, a hollow marker where it was flagged (at
    chance, too few points, outside the fitted range). Lines are offset a little along x so that
    equal budgets do not hide each other."""
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.subplots()
    count = max(len(names), 1)
    scored = 0
    for k, name in enumerate(names):
        offset = 1 + 0.03 * (k - (count - 1) / 2)  # multiplicative: the x axis is log
        reached = [r for r in rungs if name in r["ranked"] and r["scores"].get(name) is not None]
        if not reached:
            continue
        xs = [r["budget_epochs"] * offset for r in reached]
        ys = [r["scores"][name] for r in reached]
        (line,) = ax.plot(xs, ys, marker="o", ms=4, label=name)
        color = line.get_color()
        for x, y, r in zip(xs, ys, reached, strict=True):
            interval = (r.get("intervals") or {}).get(name)
            if interval:
                ax.plot([x, x], interval, color=color, lw=1, alpha=0.6)
            if (r.get("flags") or {}).get(name):
                ax.plot([x], [y], marker="o", ms=9, mfc="white", color=color, ls="none")
        dropped = any(name in r["dropped"] for r in rungs)
        ax.plot(xs[-1], ys[-1], marker="x" if dropped else "*", ms=11, color=color, ls="none")
        scored += 1
    ax.set_xscale("log")
    budgets = sorted({r["budget_epochs"] for r in rungs})
    if budgets:
        ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
        ax.minorticks_off()
    ax.set_xlabel("rung budget (epochs; candidates offset slightly)")
    score = rungs[0]["score"] if rungs else "score"
    ax.set_ylabel(f"rung score ({score})")
    ax.set_title("successive halving: the score each cut used (|: 95% interval, x: dropped, "
                 "*: kept, hollow: flagged)", fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3)
    if scored:
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.text(0.5, 0.5, "no candidate was scored", ha="center", transform=ax.transAxes)
    return _save(fig, path)
