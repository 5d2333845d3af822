"""A simulation's outputs: the markdown table (simulation.md), the regret-against-compute plot
(regret_vs_compute.png, the Figure API: the user's matplotlib backend is left alone) and
:func:`write_simulation`, which writes both and simulation.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ncap.bench.simulate_halving import TRAIN_ALL
from ncap.storage import atomic_write_json, atomic_write_text

__all__ = ["plot_regret_vs_compute", "render_markdown", "write_simulation"]


def _ci(summary: Mapping[str, Any], digits: int = 2, signed: bool = False) -> str:
    f = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    lo, hi = summary["ci95"]
    return f"{f.format(summary['value'])} [{f.format(lo)}, {f.format(hi)}]"


def render_markdown(sim: Mapping[str, Any]) -> str:
    """The simulation's table: method x setting -> compute, regret, difference from last-observed."""
    src = sim["source"]
    boot = sim["bootstrap"]
    n = len(src["models"])
    lines = [
        "# Successive halving on recorded trajectories: regret against compute",
        "",
        f"{n} models x {len(src['targets'])} targets ({', '.join(src['targets'])}) x "
        f"{len(src['seeds'])} seeds, T = {src['total_epochs']:g} epochs. Each cell (target, seed) "
        "is one selection: the halving reads the scores of that seed's runs, and the pick's truth "
        "is its final accuracy with the other seed(s). **Regret**: best truth minus the pick's "
        "truth, in accuracy points, mean over all cells (targets x seeds). **Compute**: the budget "
        "every candidate was trained to, the pick trained on to T, as a % of training all "
        "candidates to T; *time* weighs each candidate by its recorded seconds. Intervals: 95% "
        f"percentile, paired bootstrap over models ({boot['replicates']} replicates, seed "
        f"{boot['seed']}, one draw of models shared by every target, seed, method and setting). "
        "**Δ LO**: regret minus that of halving driven by the last observed accuracy with the same "
        "setting (what ASHA / Hyperband do), replicate by replicate; negative is better. "
        "**Report half**: the cells of the seeds after the first, on which nothing was chosen "
        "(the study's report half): the headline.",
        "",
    ]
    if src.get("models_left_out"):
        lines += [
            f"Left out ({len(src['models_left_out'])}, not run on every target with every seed; a "
            f"halving replay needs the same candidates in every cell): "
            f"{', '.join(src['models_left_out'])}.",
            "",
        ]
    cell = sim.get("cell_methods") or {}
    if cell.get("methods"):
        lines += [
            "**Cell-level scores** ("
            + ", ".join(f"`{m}`" for m in cell["methods"])
            + "): the study's `cell_scores` at each rung budget; a fitted model is trained on the "
            "other targets' runs of the scored seed at that budget (leave one target out), truth "
            "= the other seed's final accuracy. In the bootstrap: " + cell["bootstrap"] + ".",
            "",
        ]
    if sim.get("command"):
        lines += ["Reproduce: `" + sim["command"] + "`", ""]
    lines += [
        "## Settings",
        "",
        "| setting | rung budgets (% of T) | candidates per rung | compute |",
        "|---|---|---|---|",
    ]
    for st in sim["settings"]:
        counts = " → ".join(str(c) for _, c, _ in st["schedule"]) + " → 1"
        budgets = ", ".join(f"{100 * b:g}" for b, _, _ in st["schedule"])
        lines.append(f"| {st['name']} | {budgets} | {counts} | {100 * st['compute']:.1f}% |")
    lines += [
        "",
        "## Regret and compute",
        "",
        "| setting | method | compute % | time % [95% CI] | regret, points [95% CI] | Δ LO [95% CI] | report half: regret [95% CI] | report half: Δ LO [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = sim["rows"]
    for row in rows:
        if row["setting"] == TRAIN_ALL:
            continue
        t = row["compute_time"]
        lines.append(
            f"| {row['setting']} | `{row['method']}` | {100 * row['compute']['value']:.1f} | "
            f"{100 * t['value']:.1f} [{100 * t['ci95'][0]:.1f}, {100 * t['ci95'][1]:.1f}] | "
            f"{_ci(row['regret'])} | {_ci(row['diff_last_observed'], signed=True)} | "
            f"{_ci(row['regret_report_half'])} | "
            f"{_ci(row['diff_last_observed_report_half'], signed=True)} |"
        )
    base = next(r for r in rows if r["setting"] == TRAIN_ALL)
    lines += [
        f"| train everything to T | `{base['method']}` at T | 100.0 | 100.0 | "
        f"{_ci(base['regret'])} | – | {_ci(base['regret_report_half'])} | – |",
        "",
        "Training-free scores (" + ", ".join(f"`{m}`" for m in sim["training_free"]) + ") do not "
        "change with the budget: halving driven by them picks their favourite, which costs only "
        f"{100 / n:.1f}% of the compute when trained alone; the rows show what the halving would spend.",
        "",
        "## Difference from training everything to T (Δ regret, points [95% CI])",
        "",
        "| setting | " + " | ".join(f"`{m}`" for m in sim["methods"]) + " |",
        "|---|" + "---|" * len(sim["methods"]),
    ]
    by = {(r["method"], r["setting"]): r for r in rows}
    for st in sim["settings"]:
        lines.append(
            f"| {st['name']} | "
            + " | ".join(
                _ci(by[(m, st["name"])]["diff_train_all"], signed=True) for m in sim["methods"]
            )
            + " |"
        )
    if sim["failures"]:
        lines += ["", "## Scores that failed (ranked last)", ""]
        lines += [f"- `{k}`: {v} runs" for k, v in sorted(sim["failures"].items())]
    return "\n".join(lines) + "\n"


def plot_regret_vs_compute(sim: Mapping[str, Any], path: str | Path) -> Path:
    """Mean regret (95% CI) against compute, one colour per method, one marker per setting."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib
    from matplotlib.figure import Figure  # lazy: matplotlib, only to draw a plot
    from matplotlib.lines import Line2D  # lazy: matplotlib, only to draw a plot

    fig = Figure(figsize=(8.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    methods = sim["methods"]
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    markers = {st["name"]: mk for st, mk in zip(sim["settings"], "os^vDP*Xhp<>")}
    k = len(methods)
    for row in sim["rows"]:
        m, name = row["method"], row["setting"]
        x = 100 * row["compute"]["value"]
        if name == TRAIN_ALL:
            marker, colour, label = "*", "black", "train all to T (last observed)"
        else:
            x *= 1.0 + 0.025 * (methods.index(m) - (k - 1) / 2)  # spread methods sharing a setting
            marker, colour, label = markers[name], colours[m], None
        y, (lo, hi) = row["regret"]["value"], row["regret"]["ci95"]
        ax.errorbar(
            x,
            y,
            yerr=[[max(y - lo, 0)], [max(hi - y, 0)]],
            fmt=marker,
            color=colour,
            ms=6 if name == TRAIN_ALL else 4.5,
            lw=0.8,
            capsize=2,
            alpha=0.9,
            label=label,
        )
    handles = [Line2D([], [], color=colours[m], marker="o", ls="", label=m) for m in methods]
    handles += [
        Line2D([], [], color="grey", marker=mk, ls="", label=nm) for nm, mk in markers.items()
    ]
    handles += [Line2D([], [], color="black", marker="*", ls="", label="train all to T")]
    ax.legend(handles=handles, fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xscale("log")
    ax.set_xlabel("compute (% of training every candidate to T)")
    ax.set_ylabel("top-1 regret (accuracy points), mean over cells")
    ax.set_title(
        "Successive halving on recorded trajectories (95% bootstrap CI over models)", fontsize=9
    )
    ax.axhline(0.0, color="black", lw=0.6)
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def write_simulation(sim: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """simulation.json, simulation.md and regret_vs_compute.png in ``out_dir``."""
    out = Path(out_dir)
    return {
        "json": atomic_write_json(sim, out / "simulation.json"),
        "markdown": atomic_write_text(render_markdown(sim), out / "simulation.md"),
        "plot": plot_regret_vs_compute(sim, out / "regret_vs_compute.png"),
    }
