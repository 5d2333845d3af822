"""``report.md``: one page with the ranking's table, its caveats, its cost and its plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ncap.report.tables import (
    LEGEND,
    _fmt,
    _prediction,
    _score_name,
    _steps_per_epoch,
    _target,
    caveat_lines,
    cost_footer,
)
from ncap.storage import atomic_write_text

__all__ = ["report_markdown", "write_report"]

_PLOTS = (
    ("learning_plot", "Learning curves", "validation accuracy against training steps"),
    ("fit_plot", "Predictions", "the table's prediction with its 95% interval, and the "
     "extrapolation to beta_eff = 0"),
    ("beta_plot", "beta_eff", "the probe's neural capacitance during fine-tuning"),
    ("rungs_plot", "Successive halving", "the score each cut used"),
)  # fmt: skip


def report_markdown(result, files: dict[str, Path]) -> str:
    """The page as Markdown (plots linked relative to the output directory)."""
    settings = result.settings
    spe = _steps_per_epoch(settings)
    lines = [
        f"# ncap ranking on {settings['dataset']['name']}",
        "",
        f"Budget {settings['budget_steps']} steps = {settings['budget_steps'] / spe:.2g} epochs"
        f"{_target(settings)}; ranked by {_score_name(settings)}.",
        "",
        "| rank | model | score | predicted acc % (95%) | observed acc % | cost s | status |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    order = {name: k + 1 for k, name in enumerate(result.ranking)}
    for c in sorted(result.candidates, key=lambda c: order.get(c["name"], 10**9)):
        ok = c["status"] == "ok"
        flags = ", ".join(c.get("flags") or {})
        status = ("ok" + (f"; {flags}" if flags else "")) if ok else f"failed: {c['reason']}"
        score = (c.get("score") or {}).get("value")
        cost = c.get("cost_seconds")
        lines.append(
            f"| {order.get(c['name'], '-')} | {c['name']} | {_fmt(score, pct=False)} | "
            f"{_prediction(c) if ok else '-'} | {_fmt(c.get('observed_accuracy'))} | "
            f"{'-' if cost is None else f'{cost:.1f}'} | {status.replace('|', '/')} |"
        )
    caveats = caveat_lines(result)
    notes = (settings.get("score") or {}).get("notes") or []
    if caveats or notes:
        lines += ["", "## Caveats", ""]
        lines += [f"- {line}" for line in caveats + [f"note: {n}" for n in notes]]
    footer = cost_footer(getattr(result, "cost", None))
    if footer:
        lines += ["", "## Cost", "", footer]
    for key, title, what in _PLOTS:
        if key in files:
            lines += ["", f"## {title}", "", f"![{what}]({Path(files[key]).name})"]
    lines += ["", "## Columns", "", LEGEND, ""]
    return "\n".join(lines)


def write_report(result, files: dict[str, Any]) -> Path:
    return atomic_write_text(report_markdown(result, files), result.out_dir / "report.md")
