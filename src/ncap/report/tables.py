"""Tables of a ranking: results.csv and the table ``ncap`` prints."""

from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from ncap.metrics import ranking_metrics
from ncap.results import rank_order

__all__ = [
    "CSV_COLUMNS",
    "LEGEND",
    "caveat_lines",
    "cost_footer",
    "print_table",
    "results_csv",
    "trust_line",
    "verification",
]


CSV_COLUMNS = (
    "rank",
    "name",
    "status",
    "score",
    "predicted_accuracy",
    "predicted_low95",
    "predicted_high95",
    "predicted_by",
    "extrapolated_accuracy",
    "observed_accuracy",
    "final_accuracy",
    "test_accuracy",
    "beta_eff_signed",
    "beta_eff_mean_abs",
    "beta_eff_abs_mean",
    "cost_seconds",
    "flags",
    "reason",
)


LEGEND = (
    "score: what the ranking sorts by (named in the title; --score; higher is better). source "
    "acc: the model's accuracy on its pretraining task (recorded for the built-in zoo, or given "
    "with --source-accuracy). predicted acc: the final "
    "validation accuracy predicted by the score when it predicts one (else by the last observed "
    "accuracy plus the gains ncap's benchmark saw from that budget on), with its 95% interval "
    "(recalibrated on, or taken from, ncap's benchmark where results.json says calibrated). "
    "observed acc: validation accuracy at the end of the budget. beta_eff "
    "(end): the probe's neural capacitance over the last evaluation interval (-> 0 as training "
    "converges). cost s: seconds of fine-tuning within the budget. test acc: the test split at "
    "the end. status: ok, or the flags of a prediction not to trust (at-chance, few-points, "
    "outside-fit: its interval is withheld). Details: docs/method.md."
)


def results_csv(candidates: Sequence[dict[str, Any]], ranking: Sequence[str] | None = None) -> str:
    """The table as CSV, in ``ranking`` order (default: best predicted first)."""
    ranking = rank_order(candidates) if ranking is None else ranking
    order = {name: k + 1 for k, name in enumerate(ranking)}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for c in sorted(candidates, key=lambda c: order.get(c["name"], math.inf)):
        beta = c.get("beta_eff_end") or {}
        prediction = c.get("prediction") or {}
        interval = prediction.get("95") or (None, None)
        writer.writerow(
            {
                "rank": order.get(c["name"], ""),
                "name": c["name"],
                "status": c["status"],
                "score": (c.get("score") or {}).get("value"),
                "predicted_accuracy": prediction.get("accuracy"),
                "predicted_low95": interval[0],
                "predicted_high95": interval[1],
                "predicted_by": prediction.get("by"),
                "extrapolated_accuracy": c["predicted_accuracy"],
                "observed_accuracy": c["observed_accuracy"],
                "final_accuracy": c.get("final_accuracy"),
                "test_accuracy": c.get("test_accuracy"),
                "beta_eff_signed": beta.get("signed"),
                "beta_eff_mean_abs": beta.get("mean-abs"),
                "beta_eff_abs_mean": beta.get("abs-mean"),
                "cost_seconds": c["cost_seconds"],
                "flags": ";".join(c.get("flags") or {}),
                "reason": c["reason"] or "",
            }
        )
    return buffer.getvalue()


def _fmt(value: Any, pct: bool = True) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if pct else f"{value:.3g}"


def print_table(result, *, verify: bool = False) -> None:
    variant = result.settings["predictor"]["variant"]
    table = Table(title=f"ncap ranking on {result.settings['dataset']['name']} "
                  f"(budget {result.settings['budget_steps']} steps = "
                  f"{result.settings['budget_steps'] / _steps_per_epoch(result.settings):.2g} epochs"
                  f"{_target(result.settings)}; beta_eff {variant}; "
                  f"ranked by {_score_name(result.settings)})")  # fmt: skip
    for col, just in (("rank", "right"), ("model", "left"), ("score", "right"),
                      ("source acc %", "right"),
                      ("predicted acc %", "right"),
                      ("observed acc %", "right"), ("beta_eff (end)", "right"),
                      ("cost s", "right")):  # fmt: skip
        table.add_column(col, justify=just, no_wrap=col != "model", overflow="fold")
    if verify:
        table.add_column("true final acc %", justify="right", no_wrap=True)
    has_test = any(c.get("test_accuracy") is not None for c in result.candidates)
    if has_test:
        table.add_column("test acc % (end)", justify="right", no_wrap=True)
    table.add_column("status")
    order = {name: k + 1 for k, name in enumerate(result.ranking)}
    given = (result.settings.get("source_accuracy") or {}).get("given") or {}
    for c in sorted(result.candidates, key=lambda c: order.get(c["name"], 10**9)):
        ok = c["status"] == "ok"
        pred = _prediction(c) if ok else "-"
        beta = (c.get("beta_eff_end") or {}).get(variant)
        source = given.get(c["name"], (c.get("backbone") or {}).get("source_accuracy"))
        score = (c.get("score") or {}).get("value")
        row = [str(order.get(c["name"], "-")), c["name"], _fmt(score, pct=False), _fmt(source),
               pred,
               _fmt(c["observed_accuracy"]),
               _fmt(beta, pct=False), f"{c['cost_seconds']:.1f}"]  # fmt: skip
        if verify:
            row.append(_fmt(c.get("final_accuracy")))
        if has_test:
            row.append(_fmt(c.get("test_accuracy")))
        dropped = (c.get("halving") or {}).get("dropped_at_rung")
        status = "ok" if dropped is None else f"ok, dropped at rung {dropped}"
        flags = c.get("flags") or {}
        if flags:
            status += "; " + ", ".join(flags)
        row.append(status if ok else f"failed: {c['reason']}")
        table.add_row(*row)
    # a pipe or a file gets the full table instead of rich's 80-column default
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    console.print(LEGEND, style="dim")
    for line in caveat_lines(result):
        console.print(line, style="bold")
    if verify:
        tau = verification(result.candidates)
        if tau is not None:
            console.print(
                f"Kendall tau, predicted vs true final accuracy: {_tau(tau['predicted'])}   "
                f"(last observed accuracy vs true final: {_tau(tau['observed'])})"
            )
    footer = cost_footer(getattr(result, "cost", None))
    if footer:
        console.print(footer)
    for key, path in result.files.items():
        console.print(f"{key:>10}: {path}")


def _prediction(c: dict[str, Any]) -> str:
    """``acc [low, high]`` (95%) from ``record["prediction"]``, or ``acc ± sd`` of the run's own
    extrapolation (records ranked before predictions were attached)."""
    prediction = c.get("prediction")
    if prediction is None:
        return f"{_fmt(c['predicted_accuracy'])} ± {_fmt(c['predicted_std'])}"
    text = _fmt(prediction["accuracy"])
    if prediction.get("95"):  # (recalibrated where the study has factors, docs/benchmark.md)
        low, high = prediction["95"]
        text += f" [{_fmt(low)}, {_fmt(high)}]"
    elif prediction.get("flags"):
        text += " (no interval)"
    return text


def _target(settings: dict[str, Any]) -> str:
    """``, T = 10 epochs (assumed)``: the full budget the predictions are for."""
    score = settings.get("score") or {}
    target = score.get("target_epochs")
    if target is None:
        return ""
    if score.get("target_assumed"):
        return f"; predictions for T = {target:.3g} epochs, ASSUMED (set --target-epochs)"
    return f"; predictions for T = {target:.3g} epochs"


def caveat_lines(result) -> list[str]:
    """What the reader must know before trusting the order: each flagged candidate with its
    reasons, and whether the leader can be told apart from the others at this budget."""
    lines = []
    for c in result.candidates:
        flags = c.get("flags") or {}
        if flags:
            why = "; ".join(f"{flag}: {text}" for flag, text in flags.items())
            lines.append(f"caveat: {c['name']}: {why} -> no interval, not calibrated")
    shape = (result.settings.get("dataset") or {}).get("input_shape") or []
    for c in result.candidates:
        size = (((c.get("runtime") or {}).get("input") or {}).get("size")) or None
        if (
            c["status"] == "ok"
            and size
            and len(shape) == 3
            and size[0] * size[1] > shape[1] * shape[2]
        ):
            lines.append(
                f"note: {c['name']} upscales the {shape[1]}x{shape[2]} px images to "
                f"{size[0]}x{size[1]} px, its own input size ({size[0] * size[1] / (shape[1] * shape[2]):.3g}x "
                "the pixels per image and about that much compute; --max-input-size caps it)"
            )
    verdict = (result.settings.get("score") or {}).get("separation") or {}
    if verdict.get("statement"):
        lines.append(("" if verdict.get("separated") else "cannot tell: ") + verdict["statement"])
    trust = (result.settings.get("score") or {}).get("trust") or {}
    if trust.get("p_best") is not None:
        lines.append(trust_line(trust))
    elif trust.get("reason"):
        lines.append(f"trust: no statement ({trust['reason']})")
    for rung in result.rungs or ():
        if rung.get("separation") and not rung["separation"].get("separated"):
            lines.append(f"rung {rung['rung']}: {rung['separation']['statement']}")
    return lines


def trust_line(trust: dict[str, Any]) -> str:
    """The trust statement of ``results.json`` (``settings.score.trust``) as one line."""
    text = (
        f"trust: P(the top pick {trust['pick']} is the best of {trust['candidates']}) = "
        f"{trust['p_best']:.2f}; expected regret of taking it {trust['expected_regret']:.2f} "
        "accuracy points"
    )
    if not trust.get("calibrated"):
        text += f" (not calibrated: {trust.get('calibration') or 'no calibration check'})"
    for warning in trust.get("warnings") or ():
        text += f"; WARNING: {warning}"
    return text


def _score_name(settings: dict[str, Any]) -> str:
    score = settings.get("score") or {}
    return score.get("name") or "predicted accuracy"


def cost_footer(cost: dict[str, Any] | None) -> str | None:
    """``compute: ... = X% of the compute of training every candidate to N epochs``."""
    if not cost:
        return None
    text = f"compute: {cost['steps']} training steps, {cost['seconds']:.1f} s"
    if cost.get("fraction") is not None:
        text += (
            f" = {100 * cost['fraction']:.1f}% of the compute of training every candidate to "
            f"{cost['full_epochs']:g} epochs (estimated {cost['estimated_full_seconds']:.0f} s "
            "from each candidate's seconds per step)"
        )
    return text


def _tau(value: float | None) -> str:
    return "undefined" if value is None else f"{value:+.3f}"


def _steps_per_epoch(settings: dict[str, Any]) -> int:
    return max(1, math.ceil(settings["dataset"]["n_train"] / settings["finetune"]["batch_size"]))


def verification(candidates) -> dict[str, float | None] | None:
    """Kendall tau of predicted (and observed) against true final accuracy, successful candidates."""
    ok = [c for c in candidates if c["status"] == "ok" and c.get("final_accuracy") is not None]
    if len(ok) < 2:
        return None
    final = [c["final_accuracy"] for c in ok]
    predicted = [(c.get("prediction") or {}).get("accuracy", c["predicted_accuracy"]) for c in ok]
    return {
        "predicted": ranking_metrics(predicted, final)["kendall"],
        "observed": ranking_metrics([c["observed_accuracy"] for c in ok], final)["kendall"],
    }
