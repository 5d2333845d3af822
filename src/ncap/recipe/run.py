"""Run a recipe: rank its models on every dataset, one output folder each, and write recipe.json."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncap.data.registry import load_dataset
from ncap.exceptions import ConfigError
from ncap.ranking.rank import rank
from ncap.ranking.spec import Execution, Horizon
from ncap.recipe.schema import Recipe
from ncap.results import RankResult, load_results
from ncap.storage import atomic_write_json

__all__ = ["run_recipe", "select"]


def _subset(kind: str, asked: Sequence[str] | None, valid: Sequence[str]) -> list[str] | None:
    if asked is None:
        return None
    unknown = [a for a in asked if a not in valid]
    if unknown:
        raise ConfigError(
            f"unknown {kind} {', '.join(map(repr, unknown))}; the recipe's {kind}: "
            f"{', '.join(valid)}."
        )
    return list(asked)


def select(
    recipe: Recipe, *, datasets: Sequence[str] | None = None, models: Sequence[str] | None = None
) -> Recipe:
    """The part of ``recipe`` that ``run_recipe(datasets=, models=)`` runs (names or slugs of
    its datasets, names of its models); ConfigError for names the recipe lacks."""
    slugs = [e.slug for e in recipe.datasets]
    names = [e.name for e in recipe.datasets]
    wanted = _subset("datasets", datasets, slugs + [n for n in names if n not in slugs])
    chosen = _subset("models", models, list(recipe.models)) or list(recipe.models)
    entries = [e for e in recipe.datasets if wanted is None or {e.slug, e.name} & set(wanted)]
    return dataclasses.replace(recipe, models=tuple(chosen), datasets=tuple(entries))


def _summary(
    recipe: Recipe, out_dir: Path, results: dict[str, RankResult], started: str
) -> dict[str, Any]:
    """recipe.json: the recipe, and per dataset where its results are and its ranking."""
    datasets = {}
    for entry in recipe.datasets:
        folder = out_dir / entry.slug
        row: dict[str, Any] = {"name": entry.name, "out_dir": str(folder), "status": "not run"}
        data = None
        if entry.slug in results:
            data, row["status"] = results[entry.slug].to_dict(), "done"
        elif (folder / "results.json").is_file():
            with contextlib.suppress(ValueError, OSError):
                data, row["status"] = load_results(folder), "done earlier"
        if data is not None:
            failed = {c["name"]: c["reason"] for c in data["candidates"] if c["status"] != "ok"}
            row |= {
                "results": str(folder / "results.json"),
                "ranking": data["ranking"],
                "failed": failed,
                "predicted_accuracy": {
                    c["name"]: c["predicted_accuracy"] for c in data["candidates"]
                },
                "final_accuracy": {c["name"]: c.get("final_accuracy") for c in data["candidates"]},
            }
        datasets[entry.slug] = row
    return {
        "recipe": recipe.to_dict(),
        "started": started,
        "updated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "datasets": datasets,
    }


def run_recipe(
    recipe: Recipe,
    *,
    out_dir: str | Path,
    data_root: str | Path | None = None,
    download: bool = True,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    execution: Execution | None = None,
) -> dict[str, RankResult]:
    """Rank the recipe's models on each of its datasets.

    For each dataset: load it (``n_train``, ``n_val``, ``image_size`` of the entry, split seeded
    by the recipe's seed), set ``input_size`` to the entry's, and call :func:`ncap.ranking.rank.rank`
    with ``out_dir/<dataset slug>`` as its output folder. ``out_dir/recipe.json`` is rewritten
    atomically after every dataset: the recipe and, per dataset, where the results are, the ranking
    and the failures (datasets finished in an earlier call are read back from their folders).

    Parameters
    ----------
    recipe : Recipe
    out_dir : path
    data_root : path, optional
        Where the torchvision datasets and CUB-200-2011 are (or are downloaded to).
    download : bool
        Download missing datasets (needs internet).
    datasets : sequence of str, optional
        Run only these datasets (names or slugs from the recipe).
    models : sequence of str, optional
        Run only these of the recipe's models.
    execution : Execution, optional
        Runtime, executor, mode ("new", "resume", "overwrite"), progress and log
        (:class:`~ncap.ranking.spec.Execution`), passed to :func:`ncap.ranking.rank.rank` for every
        dataset.

    Returns
    -------
    dict
        Dataset slug -> :class:`~ncap.results.RankResult`, in the recipe's order.

    Raises
    ------
    ValueError
        For names in ``datasets`` or ``models`` that the recipe does not have (the message lists
        the valid ones), and whatever :func:`ncap.ranking.rank.rank` raises.
    """

    execution = execution or Execution()
    log = execution.log
    part = select(recipe, datasets=datasets, models=models)
    chosen, entries = list(part.models), list(part.datasets)
    out_dir = Path(out_dir)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    results: dict[str, RankResult] = {}
    for k, entry in enumerate(entries, start=1):
        if log:
            log(f"dataset {k}/{len(entries)}: {entry.slug} ({len(chosen)} models)")
        dataset = load_dataset(
            entry.name,
            n_train=entry.n_train,
            n_val=entry.n_val,
            seed=recipe.config.seed,
            image_size=entry.image_size,
            root=data_root,
            download=download,
        )
        results[entry.slug] = rank(
            chosen,
            dataset,
            out_dir=out_dir / entry.slug,
            config=dataclasses.replace(recipe.config, input_size=entry.input_size),
            predictor=recipe.predictor,
            horizon=Horizon(target_epochs=recipe.target_epochs, full_epochs=recipe.full_epochs),
            execution=execution,
        )
        atomic_write_json(_summary(recipe, out_dir, results, started), out_dir / "recipe.json")
    return results
