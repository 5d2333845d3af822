"""What a person reads: results.json/.csv, the plots, the table and the progress bars."""

from __future__ import annotations

from pathlib import Path

from ncap.predict.capacitance import PredictorSettings
from ncap.report.tables import results_csv
from ncap.results import RankResult
from ncap.storage import atomic_write_json, atomic_write_text

__all__ = ["write_outputs"]


def write_outputs(result: RankResult) -> dict[str, Path]:
    """results.json, results.csv and the PNG plots of a ranking."""
    from ncap.report.plots import plot_beta_trajectories, plot_fits  # matplotlib: on demand

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
    return files
