"""A recipe's plan in words, and the check of its model names, before anything runs."""

from __future__ import annotations

import dataclasses
from typing import Any

from ncap.models.profile import model_problem, model_profile
from ncap.recipe.estimate import estimate_compute
from ncap.recipe.schema import Recipe
from ncap.training.config import FinetuneConfig

__all__ = ["check_models", "describe_plan"]


def check_models(recipe: Recipe, *, input_sizes: bool = True) -> list[str]:
    """Problems with the recipe's model names; empty when all are fine.

    Only names and metadata are checked: timm's and torchvision's model lists, whether pretrained
    weights are registered for the model (not whether they are cached), torchvision weight enum
    names, and that weight files named with ``@<path>`` exist. Nothing is downloaded. ``py:``
    factories are not imported here (they are checked when they run).

    Parameters
    ----------
    recipe : Recipe
    input_sizes : bool
        Also run each timm/torchvision model once on the ``meta`` device (no weights, no memory)
        at every dataset's input size, to find models that cannot take it.

    Returns
    -------
    list of str
        One line per problem, naming the model and the fix.
    """
    by_model = {model: model_problem(model) for model in recipe.models}
    problems = [p for p in by_model.values() if p is not None]
    if not input_sizes:
        return problems
    for model, problem in by_model.items():
        if problem is not None or not model.startswith(("timm:", "tv:")):
            continue
        for size in sorted({d.input_size for d in recipe.datasets if d.input_size}):
            try:
                model_profile(model, size)
            except ValueError as err:
                using = [d.slug for d in recipe.datasets if d.input_size == size]
                problems.append(
                    f"{err} Datasets with input_size {size}: {', '.join(using)}; choose another "
                    "model or a larger input_size."
                )
    return problems


def _flops_text(flops: float) -> str:
    for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops / 1e9:.3g} GFLOP"


def _budget_text(config: FinetuneConfig) -> str:
    if config.steps is not None:
        return f"{config.steps} steps"
    return f"{config.epochs:g} epochs"


def describe_plan(recipe: Recipe, *, estimate: dict[str, Any] | None = None) -> str:
    """A human-readable plan: datasets, models, budgets, settings and the compute estimate.

    Parameters
    ----------
    recipe : Recipe
    estimate : dict, optional
        The result of :func:`estimate_compute`; computed when not given.

    Returns
    -------
    str
        Several lines of plain text (no trailing newline).
    """
    estimate = estimate if estimate is not None else estimate_compute(recipe)
    config = recipe.config
    lines = [
        f"recipe {recipe.name}" + (f" ({recipe.path})" if recipe.path else ""),
        f"  budget: {_budget_text(config)} per candidate"
        + (
            f"; full run: {recipe.full_epochs:g} epochs (measures the final accuracy)"
            if recipe.full_epochs is not None
            else "; no full run (final accuracies are not measured)"
        ),
        f"  fine-tuning: batch {config.batch_size}, lr {config.lr:g}, {config.optimizer}, "
        f"seed {config.seed}, evaluation "
        + (
            f"every {config.eval_every} steps"
            if config.eval_every
            else "at 1/8, 1/4, 1/2 and the end of the budget"
        )
        + f", probe {list(config.probe_hidden)} {config.probe_activation}",
        "  predictor: "
        + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(recipe.predictor).items()),
        f"  models ({len(recipe.models)}): {', '.join(recipe.models)}",
        f"  datasets ({len(recipe.datasets)}):",
    ]
    for entry in recipe.datasets:
        row = estimate["datasets"].get(entry.slug)
        size = f"{entry.input_size}px" if entry.input_size else "each model's own size"
        text = f"    {entry.slug:<14} input {size}"
        if row is not None:
            text += f", train {row['n_train']}, val {row['n_val']}, test {row['n_test']}"
            budget, full = row["budget"], row["full"]
            if budget:
                text += (
                    f"; budget {budget['steps']} steps: {_flops_text(budget['flops'])}, "
                    f"~{budget['gpu_hours']:.2g} GPU-h"
                )
            if full:
                text += (
                    f"; full {full['steps']} steps: {_flops_text(full['flops'])}, "
                    f"~{full['gpu_hours']:.2g} GPU-h"
                )
        lines.append(text)
    lines.append("  estimate, all models x datasets, one GPU:")
    for key, label in (("budget", "budget run"), ("full", "full run (includes the budget)")):
        part = estimate["total"][key]
        if part:
            lines.append(
                f"    {label}: {_flops_text(part['flops'])}, ~{part['gpu_hours']:.3g} GPU-hours "
                f"(FLOP-bound alone: {part['flop_bound_hours']:.3g})"
            )
    a = estimate["assumptions"]
    lines.append(
        f"    assumptions: {a['sustained_tflops']:g} TFLOP/s sustained (bf16), "
        f"{a['op_overhead_us']:g} us per eager operation, training = 3x forward; an order of "
        "magnitude, not a promise"
    )
    lines += [f"  not counted: {item}" for item in estimate["not_counted"]]
    return "\n".join(lines)
