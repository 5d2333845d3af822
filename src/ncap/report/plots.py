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

__all__ = ["plot_beta_trajectories", "plot_fits", "plot_learning_curves"]


def _save(fig, path: Path) -> Path:
    """Render to PNG in memory, then write atomically (a full disk names ``path``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(buffer.getvalue(), path)


def _beta_series(c: dict[str, Any], variant: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [
        p
        for p in c.get("trajectory", [])
        if (p.get("beta_eff") or {}).get(variant) is not None
        and math.isfinite(p["beta_eff"][variant])
    ]
    return np.array([p["epoch"] for p in pts]), np.array([p["beta_eff"][variant] for p in pts])


def plot_beta_trajectories(candidates: Sequence[dict[str, Any]], variant: str, path: Path) -> Path:
    """beta_eff (one variant) against training progress in epochs, one line per candidate, on two
    scales that show every curve whatever the others' magnitude: each candidate's beta_eff divided
    by its own largest magnitude (the shape: where it falls, where it changes sign), and
    ``|beta_eff|`` on a log scale (the magnitudes side by side)."""
    # the Figure API: no pyplot, the user's backend is left alone; the legend outside, on the
    # right, so that many candidates (a NAS search) do not cover the curves
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    shape, size = fig.subplots(1, 2)
    drawn = 0
    for c in candidates:
        epochs, values = _beta_series(c, variant)
        if not len(values):
            continue
        scale = float(np.max(np.abs(values)))
        (line,) = shape.plot(
            epochs, values / scale if scale > 0 else values, marker="o", ms=3, label=c["name"]
        )
        magnitude = np.abs(values)
        keep = magnitude > 0
        size.plot(epochs[keep], magnitude[keep], marker="o", ms=3, color=line.get_color())
        negative = keep & (values < 0)  # hollow markers: beta_eff < 0 (signed variant)
        size.plot(epochs[negative], magnitude[negative], ls="none", marker="o", ms=6, mfc="white",
                  color=line.get_color())  # fmt: skip
        drawn += 1
    shape.axhline(0.0, color="gray", lw=0.8)
    shape.set_xlabel("epoch of fine-tuning")
    shape.set_ylabel(f"beta_eff ({variant}) / its largest |value|")
    shape.set_title("shape per candidate (-> 0 as training converges)", fontsize=10)
    size.set_xlabel("epoch of fine-tuning")
    size.set_ylabel(f"|beta_eff| ({variant})")
    if drawn:
        size.set_yscale("log")
    size.set_title(
        "magnitude, log scale" + (" (hollow: negative)" if variant == "signed" else ""),
        fontsize=10,
    )
    for ax in (shape, size):
        ax.grid(alpha=0.3)
    if drawn:
        fig.legend(*shape.get_legend_handles_labels(), loc="outside right upper", fontsize=7,
                   ncol=1 if drawn <= 16 else 2)  # fmt: skip
    else:
        shape.text(0.5, 0.5, "no successful candidate", ha="center", transform=shape.transAxes)
    fig.suptitle("beta_eff of the probe during fine-tuning", fontsize=11)
    return _save(fig, path)


def plot_learning_curves(
    candidates: Sequence[dict[str, Any]], path: Path, *, num_classes: int | None = None
) -> Path:
    """Validation accuracy against training steps, every successful candidate; chance dashed, and
    at the right edge each candidate's predicted final accuracy (the table's) as a marker."""
    fig = Figure(figsize=(7.5, 4.4))
    ax = fig.subplots()
    drawn = 0
    right = 0
    for c in candidates:
        pts = c.get("trajectory") or []
        if c["status"] != "ok" or not pts:
            continue
        steps = [p["step"] for p in pts]
        right = max(right, steps[-1])
        ax.plot(steps, [100 * p["val_accuracy"] for p in pts], marker="o", ms=3, label=c["name"])
        drawn += 1
    for c, line in zip([c for c in candidates if c["status"] == "ok" and c.get("trajectory")],
                       ax.get_lines()):  # fmt: skip
        accuracy = (c.get("prediction") or {}).get("accuracy")
        if accuracy is not None:
            ax.plot([right * 1.04], [100 * accuracy], marker="<", ms=8, color=line.get_color(),
                    clip_on=False)  # fmt: skip
    if num_classes:
        ax.axhline(100 / num_classes, ls="--", c="gray", lw=1, label="chance")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation accuracy %")
    ax.set_title("learning curves (<: the table's predicted final accuracy)", fontsize=10)
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
    """Per candidate: validation accuracy vs beta_eff, the extrapolation to beta_eff = 0 where the
    run has one (its fit and value at 0), and the table's own prediction with its 95% interval
    (a band; withheld, and said so, when the candidate is flagged)."""
    ok = [
        c
        for c in candidates
        if c["status"] == "ok"
        and (c.get("predicted_accuracy") is not None or c.get("prediction") is not None)
    ]
    cols = min(3, max(1, len(ok)))
    rows = max(1, math.ceil(len(ok) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows))
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
        ax.scatter(beta, acc, s=14, c="tab:blue", label="early points", zorder=3)
        ax.scatter(beta[: predictor.burn_in], acc[: predictor.burn_in], s=14, c="lightgray",
                   label="burn-in" if predictor.burn_in else None, zorder=3)  # fmt: skip
        used = beta[predictor.burn_in :]
        if c.get("predicted_accuracy") is not None and used:
            grid = np.linspace(min(0.0, min(used)), max(0.0, max(used)), 100)
            curve = estimator(predictor).fit(beta, acc).predict(grid)  # predict_from_points' fit
            ax.plot(grid, curve, c="tab:orange", lw=1, label="extrapolation fit")
            ax.errorbar(
                [0.0], [c["predicted_accuracy"]], yerr=[c["predicted_std"] or 0.0], fmt="*",
                ms=9, c="tab:orange", capsize=3,
                label=f"extrapolated h(0) = {100 * c['predicted_accuracy']:.1f}%",
            )  # fmt: skip
        prediction = c.get("prediction") or {}
        if prediction.get("accuracy") is not None:
            value = prediction["accuracy"]
            interval = prediction.get("95")
            text = f"table ({prediction.get('by')}): {100 * value:.1f}%"
            if interval:
                ax.axhspan(interval[0], interval[1], color="tab:red", alpha=0.12)
                text += f" [{100 * interval[0]:.0f}, {100 * interval[1]:.0f}]"
            else:
                text += f", no interval ({', '.join(prediction.get('flags') or ['none'])})"
            ax.axhline(value, c="tab:red", lw=1.6, label=text)
        if c.get("final_accuracy") is not None:
            ax.axhline(c["final_accuracy"], ls="--", c="tab:green", lw=1, label="final (true)")
        ax.set_title(c["name"], fontsize=10)
        ax.set_xlabel(f"beta_eff ({predictor.variant})")
        ax.set_ylabel("validation accuracy")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="best")
    fig.suptitle(
        "accuracy vs beta_eff: the table's prediction (red, 95% band) and the extrapolation to "
        "beta_eff = 0 (orange)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)
