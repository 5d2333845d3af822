"""PNG plots of a ranking: beta_eff trajectories, and each candidate's accuracy-vs-beta_eff fit."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ncap.predict.capacitance import PredictorSettings, estimator
from ncap.results import trajectory_arrays
from ncap.storage import atomic_write_bytes

__all__ = ["plot_beta_trajectories", "plot_fits"]


def _save(fig, path: Path) -> Path:
    """Render to PNG in memory, then write atomically (a full disk names ``path``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(buffer.getvalue(), path)


def plot_beta_trajectories(candidates: Sequence[dict[str, Any]], variant: str, path: Path) -> Path:
    """beta_eff (one variant) against training progress in epochs, one line per candidate."""
    fig = Figure(figsize=(7, 4.2))  # the Figure API: no pyplot, the user's backend is left alone
    ax = fig.subplots()
    drawn = 0
    for c in candidates:
        pts = [p for p in c.get("trajectory", []) if p["beta_eff"].get(variant) is not None]
        if not pts:
            continue
        values = np.array([p["beta_eff"][variant] for p in pts])
        ax.plot([p["epoch"] for p in pts], values, marker="o", ms=3, label=c["name"])
        drawn += 1
    ax.set_xlabel("epoch of fine-tuning")
    ax.set_ylabel(f"beta_eff ({variant})")
    if variant != "signed" and drawn:
        ax.set_yscale("log")
    ax.set_title("beta_eff of the probe during fine-tuning")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, ncol=2)
    else:
        ax.text(0.5, 0.5, "no successful candidate", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_fits(
    candidates: Sequence[dict[str, Any]],
    predictor: PredictorSettings,
    budget_steps: int,
    path: Path,
) -> Path:
    """Per candidate: validation accuracy vs beta_eff, the fitted regression, its value at 0."""

    # (successive halving may drop a candidate before it has enough points for a prediction)
    ok = [c for c in candidates if c["status"] == "ok" and c.get("predicted_accuracy") is not None]
    cols = min(3, max(1, len(ok)))
    rows = max(1, math.ceil(len(ok) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[len(ok) :]:
        ax.set_visible(False)
    if not ok:
        axes[0, 0].set_visible(True)
        axes[0, 0].text(0.5, 0.5, "no successful candidate", ha="center")
    for ax, c in zip(axes.ravel(), ok):
        beta, acc = trajectory_arrays(
            c["trajectory"],
            predictor.variant,
            max_step=budget_steps,
            measurement=predictor.measurement,
        )
        used = slice(predictor.burn_in, None)
        ax.scatter(beta, acc, s=14, c="tab:blue", label="early points")
        ax.scatter(
            beta[: predictor.burn_in],
            acc[: predictor.burn_in],
            s=14,
            c="lightgray",
            label="burn-in",
        )
        grid = np.linspace(min(0.0, min(beta[used])), max(0.0, max(beta[used])), 100)
        curve = (
            estimator(predictor).fit(beta, acc).predict(grid)
        )  # the fit predict_from_points made
        ax.plot(grid, curve, c="tab:orange", label="fit")
        ax.errorbar(
            [0.0], [c["predicted_accuracy"]], yerr=[c["predicted_std"]], fmt="*", ms=11,
            c="tab:red", capsize=3, label=f"h(0) = {100 * c['predicted_accuracy']:.1f}%",
        )  # fmt: skip
        if c.get("final_accuracy") is not None:
            ax.axhline(c["final_accuracy"], ls="--", c="tab:green", lw=1, label="final (true)")
        ax.set_title(c["name"], fontsize=10)
        ax.set_xlabel(f"beta_eff ({predictor.variant})")
        ax.set_ylabel("validation accuracy")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("accuracy vs beta_eff, extrapolated to beta_eff = 0", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
