"""An order-of-magnitude compute estimate of a recipe, before it runs (see :func:`estimate_compute`)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ncap.data.dataset import default_n_val
from ncap.data.folders import IMAGE_SUFFIXES
from ncap.models.profile import model_profile
from ncap.recipe.schema import Recipe, RecipeDataset
from ncap.training.config import FinetuneConfig
from ncap.training.schedule import eval_plan

__all__ = ["DATASET_SIZES", "estimate_compute", "split_sizes"]

# Split sizes of the built-in datasets, for estimate_compute (nothing is loaded):
# name -> (training images in the source, test images, default n_train, default n_val);
# a default of None means "the loader's rule": n_val = default_n_val(source), n_train = the rest.
DATASET_SIZES: dict[str, tuple[int, int, int | None, int | None]] = {
    "cifar10": (50_000, 10_000, None, None),
    "cifar100": (50_000, 10_000, None, None),
    "svhn": (73_257, 26_032, None, None),
    "mnist": (60_000, 10_000, None, None),
    "cub200": (5_994, 5_794, None, None),
    "fashion-mnist": (60_000, 10_000, 45_000, 15_000),
    "fashion-mnist-0-4": (30_000, 5_000, 22_500, 7_500),
    "fashion-mnist-5-9": (30_000, 5_000, 22_500, 7_500),
    "fashion-mnist-5-9-500": (30_000, 5_000, 500, 2_000),
    "digits": (1_797, 0, None, 450),
}

# estimate_compute's assumptions (see its docstring)
SUSTAINED_TFLOPS = 100.0
OP_OVERHEAD_US = 10.0
EVAL_BATCH = 512  # ncap.training.loop.evaluate's batch size
TRAIN_FACTOR = 3.0  # forward + backward ~ 3 forward passes (FLOPs and kernel launches)


def _folder_sizes(folder: Path) -> tuple[int, int, int]:

    def count(root: Path) -> int:
        return sum(1 for f in root.glob("*/*") if f.suffix.lower() in IMAGE_SUFFIXES)

    if (folder / "train").is_dir() and (folder / "val").is_dir():
        test = count(folder / "test") if (folder / "test").is_dir() else 0
        return count(folder / "train"), count(folder / "val"), test
    total = count(folder)
    n_val = max(1, round(0.2 * total))
    return total - n_val, n_val, 0


def split_sizes(entry: RecipeDataset) -> tuple[int, int, int] | None:
    """``(n_train, n_val, n_test)`` the loader will produce for ``entry``, without loading it.

    From :data:`DATASET_SIZES` for built-in names (None for a name it lacks), by counting files for
    an image folder.
    """

    if entry.name not in DATASET_SIZES:
        folder = Path(entry.name)
        return _folder_sizes(folder) if folder.is_dir() else None
    n_source, n_test, train_default, val_default = DATASET_SIZES[entry.name]
    n_val = entry.n_val or val_default or default_n_val(n_source)
    n_train = n_source - n_val
    if entry.n_train is not None or train_default is not None:
        n_train = min(n_train, entry.n_train or train_default)
    return n_train, n_val, n_test


def _run_cost(
    profile: dict[str, Any],
    sizes: tuple[int, int, int],
    config: FinetuneConfig,
    total_steps: int,
    plan: dict[int, int],
    *,
    sustained_tflops: float,
    op_overhead_us: float,
) -> dict[str, float]:
    """FLOPs and GPU seconds of one fine-tuning run of ``total_steps`` steps evaluating as
    ``plan`` says (step -> validation images; the formula of :func:`estimate_compute`)."""
    n_train, _, n_test = sizes
    evaluations = len(plan)
    train_images = total_steps * n_train / config.steps_per_epoch(n_train)
    eval_images = sum(plan.values()) + n_test
    eval_batches = sum(math.ceil(n / EVAL_BATCH) for n in plan.values())
    eval_batches += math.ceil(n_test / EVAL_BATCH)
    train_flops = TRAIN_FACTOR * profile["flops"] * train_images
    eval_flops = profile["flops"] * eval_images
    rate, op_s = sustained_tflops * 1e12, op_overhead_us * 1e-6
    train_s = max(train_flops / rate, TRAIN_FACTOR * profile["ops"] * op_s * total_steps)
    eval_s = max(eval_flops / rate, profile["ops"] * op_s * eval_batches)
    return {
        "steps": total_steps,
        "evaluations": evaluations,
        "flops": train_flops + eval_flops,
        "flop_bound_hours": (train_flops + eval_flops) / rate / 3600,
        "gpu_hours": (train_s + eval_s) / 3600,
    }


def _add(total: dict[str, float], part: dict[str, float]) -> None:
    for key in ("flops", "flop_bound_hours", "gpu_hours"):
        total[key] = total.get(key, 0.0) + part[key]


def estimate_compute(
    recipe: Recipe,
    *,
    sustained_tflops: float = SUSTAINED_TFLOPS,
    op_overhead_us: float = OP_OVERHEAD_US,
) -> dict[str, Any]:
    """An order-of-magnitude estimate of what a recipe costs on one GPU.

    Method, per model and dataset:

    - ``F``, the forward FLOPs of one image at the dataset's input size, and ``K``, the aten
      operations of one forward pass, counted on the ``meta`` device (:func:`model_profile`: no
      weights; exact for the architecture; convolutions and matrix products only).
    - A run of ``S`` steps trains on ``S * n_train / steps_per_epoch`` images at ``3 F`` each
      (forward + backward ~ 3 forward passes), evaluates validation images at the steps and in
      the numbers of its evaluation plan (:func:`ncap.training.schedule.eval_plan`: by default 4
      times within the budget, on at most ``val_share`` x the budget's training images) and the
      test split once at the end, at ``F`` each.
    - Its time is, for training and for evaluation separately, the larger of the FLOP-bound time
      (FLOPs / ``sustained_tflops``) and the launch-bound time (``op_overhead_us`` per operation:
      ``3 K`` per training step, ``K`` per evaluation batch of 512). At 32 pixels and batch 64 the
      GPU does little work per operation and the launch-bound time dominates; at 224 pixels the
      FLOP-bound time does for all but the smallest models.

    The budget run is what ranking needs. With ``full_epochs`` set, ncap fine-tunes each candidate
    once for ``full_epochs`` and reads the budget's points off the start of that run, so the full
    cost includes the budget (it is not added to it). Not counted: data loading and decoding,
    downloads, the probe's own small cost, normalisation layers and element-wise operations'
    FLOPs, and models that cannot be profiled (``py:`` factories, ncap's built-in models).

    Parameters
    ----------
    recipe : Recipe
    sustained_tflops : float
        Assumed sustained bf16 throughput in TFLOP/s. The default, 100, is about 10% of an H100
        SXM's dense bf16 peak (989 TFLOP/s): convolutional networks at batch 64 with depthwise
        convolutions under eager PyTorch seldom sustain more than 10-40%.
    op_overhead_us : float
        Assumed host-side cost of one eager PyTorch operation (dispatch + kernel launch), in
        microseconds.

    Returns
    -------
    dict
        ``assumptions``; ``models``: per model and input size, ``gflops`` and ``ops`` of a forward
        pass; ``datasets``: per dataset slug its sizes, ``budget`` and ``full`` (None without
        ``full_epochs``) with ``steps``, ``evaluations`` (per model), ``flops``,
        ``flop_bound_hours`` and ``gpu_hours`` (summed over the models), and ``per_model`` GPU
        hours; ``total``: ``budget`` and ``full`` summed over the datasets; ``not_counted``: what
        the estimate leaves out and why.
    """
    config = recipe.config
    assumptions = {
        "sustained_tflops": sustained_tflops,
        "op_overhead_us": op_overhead_us,
        "train_factor": TRAIN_FACTOR,
        "eval_batch": EVAL_BATCH,
        "gpus": 1,
    }
    out: dict[str, Any] = {
        "assumptions": assumptions,
        "models": {},
        "datasets": {},
        "total": {"budget": {}, "full": {} if recipe.full_epochs is not None else None},
        "not_counted": [],
    }
    for entry in recipe.datasets:
        sizes = split_sizes(entry)
        if sizes is None:
            out["not_counted"].append(f"dataset {entry.slug}: its size is not known")
            continue
        n_train = sizes[0]
        budget_steps = config.total_steps(n_train)
        full_steps = None
        if recipe.full_epochs is not None:
            full_steps = max(1, round(recipe.full_epochs * config.steps_per_epoch(n_train)))
        row: dict[str, Any] = {
            "name": entry.name,
            "input_size": entry.input_size,
            "n_train": n_train,
            "n_val": sizes[1],
            "n_test": sizes[2],
            "budget": {},
            "full": {} if full_steps is not None else None,
            "per_model": {},
        }
        for model in recipe.models:
            try:
                profile = model_profile(model, entry.input_size)
            except ValueError as err:
                out["not_counted"].append(f"{model} on {entry.slug}: {err}")
                continue
            out["models"].setdefault(model, {})[str(profile["input_size"])] = {
                "gflops": profile["flops"] / 1e9,
                "ops": profile["ops"],
            }
            kw = {"sustained_tflops": sustained_tflops, "op_overhead_us": op_overhead_us}
            plan = eval_plan(config, n_train, sizes[1], total=budget_steps)
            budget = _run_cost(profile, sizes, config, budget_steps, plan, **kw)
            _add(row["budget"], budget)
            row["budget"] |= {k: budget[k] for k in ("steps", "evaluations")}
            row["per_model"][model] = {"budget_gpu_hours": budget["gpu_hours"]}
            if full_steps is not None:
                run_config = replace(  # as ncap.ranking.candidate lays out the full run
                    config, epochs=recipe.full_epochs, steps=None,
                    eval_anchor=config.anchor_steps(n_train),
                )  # fmt: skip
                plan = eval_plan(
                    run_config, n_train, sizes[1], total=full_steps, extra=(budget_steps,)
                )
                full = _run_cost(profile, sizes, config, full_steps, plan, **kw)
                _add(row["full"], full)
                row["full"] |= {k: full[k] for k in ("steps", "evaluations")}
                row["per_model"][model]["full_gpu_hours"] = full["gpu_hours"]
        out["datasets"][entry.slug] = row
        if row["budget"]:
            _add(out["total"]["budget"], row["budget"])
        if row["full"]:
            _add(out["total"]["full"], row["full"])
    return out
