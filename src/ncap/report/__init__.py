"""What a person reads: results.json/.csv, the plots, the table and the progress bars."""

from __future__ import annotations

from pathlib import Path

from ncap.predict.capacitance import PredictorSettings
from ncap.report.page import write_report
from ncap.report.tables import results_csv
from ncap.results import RankResult
from ncap.storage import atomic_write_json, atomic_write_text

__all__ = ["write_outputs"]


def write_outputs(result: RankResult) -> dict[str, Path]:
    """results.json, results.csv, the PNG plots and report.md of a ranking."""
    from ncap.report.plots import (  # lazy: matplotlib, only to draw a plot
        plot_beta_trajectories,
        plot_fits,
        plot_learning_curves,
    )

    out = result.out_dir
    files = {
        "json": atomic_write_json(result.to_dict(), out / "results.json"),
        "csv": atomic_write_text(
            results_csv(result.candidates, result.ranking), out / "results.csv"
        ),
    }
    predictor = PredictorSettings(**result.settings["predictor"])
    files["beta_plot"] = plot_beta_trajectories(
        result.candidates, predictor.variant, out / "beta_eff.png"
    )
    files["fit_plot"] = plot_fits(
        result.candidates, predictor, result.settings["budget_steps"], out / "fits.png"
    )
    files["learning_plot"] = plot_learning_curves(
        result.candidates,
        out / "learning_curves.png",
        num_classes=result.settings["dataset"].get("num_classes"),
    )
    if result.rungs:
        from ncap.report.rungs import plot_rungs  # lazy: matplotlib, only to draw a plot

        names = [c["name"] for c in result.candidates]
        files["rungs_plot"] = plot_rungs(result.rungs, names, out / "rungs.png")
    files["report"] = write_report(result, files)
    return files
