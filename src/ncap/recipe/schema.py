"""Recipes: a whole experimental protocol (models x datasets x budgets) in one TOML file.

A recipe names the candidate models, the datasets (each with its input size and validation split)
and the fine-tuning settings shared by all of them; :func:`run_recipe` ranks the models on every
dataset with :func:`ncap.ranking.rank.rank`, one output folder per dataset. ``recipes/paper.toml`` is the
protocol of Jiang et al. (2024); ``docs/recipe.md`` describes it.

The file::

    name = "paper"                         # optional; default: the file's stem
    models = ["tv:resnet50", "timm:resnetv2_50", ...]

    [run]                                  # all optional; FinetuneConfig's defaults otherwise
    budget_epochs = 5                      # the early budget (FinetuneConfig.epochs)
    steps = 40                             # or the budget in steps (overrides budget_epochs)
    eval_every = 10                        # steps between evaluations (default: at 1/8, 1/4,
                                           # 1/2 and the end of the budget)
    full_epochs = 50                       # also train this long to measure the truth; omit to skip
    target_epochs = 50                     # the full budget T the ranking predicts for and costs
                                           # against, without training to it (default: full_epochs)
    batch_size = 64
    lr = 1e-3
    optimizer = "adam"                     # adam, adamw or sgd (momentum, weight_decay apply)
    seed = 0
    probe_hidden = [128, 64, 32]
    probe_activation = "relu"
    max_val = 5000                         # evaluate on at most this many validation images
    val_share = 0.125                      # validation images: at most this x the budget's
                                           # training images (0: all); see training/schedule.py

    [predictor]                            # optional; ncap.predict.capacitance.PredictorSettings fields
    features = "quadratic"

    [[datasets]]                           # one table per dataset
    name = "cifar10"                       # a name from ncap.data.registry.list_datasets() or a folder
    input_size = 32                        # the square input every model gets (omit: model's own)
    n_val = 15000                          # validation images held out of the training split
    n_train = 10000                        # optional: keep only this many training images
    image_size = 224                       # optional: the size the images are stored at

A relative folder path is relative to the recipe file's folder.

:func:`estimate_compute` gives an order-of-magnitude cost of a recipe before it runs (see its
docstring for the method and the assumptions).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncap.data.registry import list_datasets
from ncap.exceptions import ConfigError, MissingFile
from ncap.predict.capacitance import PredictorSettings
from ncap.results import slug
from ncap.training.config import FinetuneConfig

__all__ = ["Recipe", "RecipeDataset", "load_recipe"]

TOP_KEYS = ("name", "models", "run", "predictor", "datasets")
_INT, _NUM, _STR = (int,), (int, float), (str,)
_KINDS = {
    "int": (_INT, "an integer"),
    "float": (_NUM, "a number"),
    "str": (_STR, "a string"),
    "ints": ((list,), "a list of integers"),
    "names": ((list,), "a list of strings"),
}
# [run] key -> (FinetuneConfig field, accepted type(s), type name for messages): from the fields
RUN_KEYS: dict[str, tuple[str, tuple[type, ...], str]] = {
    (f.metadata["recipe"] or f.name): (f.name, *_KINDS[f.metadata["kind"]])
    for f in dataclasses.fields(FinetuneConfig)
    if f.metadata["recipe"] is not None
} | {  # not FinetuneConfig fields: Recipe.full_epochs, Recipe.target_epochs
    "full_epochs": ("", _NUM, "a number"),
    "target_epochs": ("", _NUM, "a number"),
}
PREDICTOR_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "variant": (_STR, "a string"),
    "features": (_STR, "a string"),
    "burn_in": (_INT, "an integer"),
    "link": (_STR, "a string"),
    "min_points": (_INT, "an integer"),
}
DATASET_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": (_STR, "a string"),
    "input_size": (_INT, "an integer"),
    "n_train": (_INT, "an integer"),
    "n_val": (_INT, "an integer"),
    "image_size": (_INT, "an integer"),
}


@dataclass(frozen=True)
class RecipeDataset:
    """One dataset of a recipe.

    Parameters
    ----------
    name : str
        A name from :func:`ncap.data.registry.list_datasets` or the (absolute) path of an image folder.
    input_size : int or None
        The square input size every model gets on this dataset; None: each model's own.
    n_train, n_val : int or None
        Training images kept and validation images held out (None: the loader's defaults).
    image_size : int or None
        The size images are stored at in memory (e.g. 224 for CUB-200-2011); None: the loader's.
    """

    name: str
    input_size: int | None = None
    n_train: int | None = None
    n_val: int | None = None
    image_size: int | None = None

    @property
    def slug(self) -> str:
        """The output sub-folder: the dataset name, or an image folder's base name."""
        return self.name if self.name in list_datasets() else slug(Path(self.name).name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"slug": self.slug}


@dataclass(frozen=True)
class Recipe:
    """A loaded recipe (see the module docstring for the file format).

    Attributes
    ----------
    name : str
    models : tuple of str
        Candidate names, as :func:`ncap.ranking.rank.rank` takes them.
    datasets : tuple of RecipeDataset
    config : FinetuneConfig
        The early fine-tuning settings; ``config.epochs`` (or ``config.steps``) is the budget.
        ``input_size`` is left None here and set per dataset by :func:`run_recipe`.
    full_epochs : float or None
        Fine-tune this long as well to measure the final accuracy (the truth); None skips it.
    target_epochs : float or None
        The full budget T (``ncap.Horizon(target_epochs=)``): what the ranking predicts for and compares
        its cost with, nothing trained to it; None: ``full_epochs``.
    predictor : PredictorSettings
    path : Path or None
        The file the recipe was read from.
    """

    name: str
    models: tuple[str, ...]
    datasets: tuple[RecipeDataset, ...]
    config: FinetuneConfig = FinetuneConfig()
    full_epochs: float | None = None
    target_epochs: float | None = None
    predictor: PredictorSettings = PredictorSettings()
    path: Path | None = None

    def dataset(self, name: str) -> RecipeDataset:
        """The entry named ``name`` (its name or output slug); ValueError listing the valid ones."""
        for entry in self.datasets:
            if name in (entry.name, entry.slug):
                return entry
        raise ConfigError(
            f"recipe {self.name!r} has no dataset {name!r}; its datasets: "
            f"{', '.join(e.slug for e in self.datasets)}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": None if self.path is None else str(self.path),
            "models": list(self.models),
            "datasets": [d.to_dict() for d in self.datasets],
            "run": self.config.to_dict()
            | {"full_epochs": self.full_epochs, "target_epochs": self.target_epochs},
            "predictor": dataclasses.asdict(self.predictor),
        }


# -- loading -----------------------------------------------------------------------------------
def _fail(path: Path, key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {problem}; {fix}.")


def _check_keys(path: Path, where: str, table: dict[str, Any], valid: Sequence[str]) -> None:
    for key in table:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise _fail(
                path,
                f"{where}{key}",
                "unknown key",
                f"{hint}valid keys{' in ' + where.rstrip('.') if where else ''}: "
                f"{', '.join(valid)}",
            )


def _check_type(path: Path, key: str, value: Any, types: tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, types):
        raise _fail(path, key, f"expected {what}, got {value!r}", f"write {key} as {what}")


def _table(path: Path, data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(path, key, "expected a table", f"write it as a [{key}] section")
    return value


def _load_run(path: Path, run: dict[str, Any]) -> tuple[FinetuneConfig, float | None, float | None]:
    _check_keys(path, "run.", run, list(RUN_KEYS))
    kwargs: dict[str, Any] = {}
    for key, value in run.items():
        field_name, types, what = RUN_KEYS[key]
        _check_type(path, f"run.{key}", value, types, what)
        if key == "probe_hidden":
            if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise _fail(
                    path,
                    "run.probe_hidden",
                    f"expected a list of integers, got {value!r}",
                    "write e.g. probe_hidden = [128, 64, 32]",
                )
            value = tuple(value)
        elif isinstance(value, list):  # variants
            if not value or not all(isinstance(v, str) for v in value):
                raise _fail(
                    path,
                    f"run.{key}",
                    f"expected a list of strings, got {value!r}",
                    'write e.g. variants = ["abs-mean", "mean-abs"]',
                )
            value = tuple(value)
        if field_name:
            kwargs[field_name] = value
    try:
        config = FinetuneConfig(**kwargs)
    except ValueError as err:
        raise _fail(path, "run", str(err).rstrip("."), "fix that setting in [run]") from None
    budgets: dict[str, float | None] = {}
    for key, what in (("full_epochs", "the full run"), ("target_epochs", "the full budget T")):
        epochs = run.get(key)
        if epochs is not None:
            if not (epochs > 0 and math.isfinite(epochs)):
                raise _fail(
                    path,
                    f"run.{key}",
                    f"must be a positive number, got {epochs!r}",
                    f"give the length of {what} in epochs, or delete the line",
                )
            if config.steps is None and epochs < config.epochs:
                raise _fail(
                    path,
                    f"run.{key}",
                    f"{epochs} is shorter than the budget ({config.epochs} epochs)",
                    f"{what} must cover the budget; raise {key} or lower budget_epochs",
                )
            epochs = float(epochs)
        budgets[key] = epochs
    return config, budgets["full_epochs"], budgets["target_epochs"]


def _load_predictor(path: Path, table: dict[str, Any]) -> PredictorSettings:
    _check_keys(path, "predictor.", table, list(PREDICTOR_KEYS))
    for key, value in table.items():
        _check_type(path, f"predictor.{key}", value, *PREDICTOR_KEYS[key])
    try:
        return PredictorSettings(**table)
    except ValueError as err:
        raise _fail(path, "predictor", str(err).rstrip("."), "fix it in [predictor]") from None


def _load_dataset_entry(path: Path, k: int, table: Any) -> RecipeDataset:
    where = f"datasets[{k}]."
    if not isinstance(table, dict):
        raise _fail(path, f"datasets[{k}]", "expected a table", "write it as a [[datasets]] table")
    _check_keys(path, where, table, list(DATASET_KEYS))
    if "name" not in table:
        raise _fail(path, f"{where}name", "missing", 'give each [[datasets]] a name = "..."')
    for key, value in table.items():
        _check_type(path, where + key, value, *DATASET_KEYS[key])
        if key != "name" and value < 1:
            raise _fail(path, where + key, f"must be >= 1, got {value}", "give a positive number")
    name = table["name"]
    known = list_datasets()
    if name in known and (path.parent / name).is_dir():
        raise _fail(
            path,
            f"{where}name",
            f"{name!r} is both a built-in dataset and a folder beside the recipe",
            f'write name = "./{name}" for the folder, or rename the folder to use the built-in',
        )
    if name not in known:
        folder = Path(name).expanduser()
        folder = folder if folder.is_absolute() else path.parent / folder
        if not folder.is_dir():
            raise _fail(
                path,
                f"{where}name",
                f"unknown dataset {name!r} (neither a known name nor an existing folder)",
                f"use one of {', '.join(known)}, or the path of an image folder (relative paths "
                "are relative to the recipe file)",
            )
        for key in ("n_train", "n_val"):
            if key in table:
                raise _fail(
                    path,
                    where + key,
                    "does not apply to an image folder",
                    "an image folder uses its val/ folder or holds out 20%; delete the key",
                )
        name = str(folder.resolve())
    return RecipeDataset(
        name=name,
        input_size=table.get("input_size"),
        n_train=table.get("n_train"),
        n_val=table.get("n_val"),
        image_size=table.get("image_size"),
    )


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file.

    Parameters
    ----------
    path : path
        A TOML file in the format of the module docstring.

    Returns
    -------
    Recipe

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        For invalid TOML, unknown keys (with the closest valid key), missing or empty ``models`` or
        ``datasets``, values of the wrong type, invalid settings, unknown dataset names and
        duplicate models or datasets. The message names the file, the key and the fix.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a TOML file" if path.is_dir() else "does not exist"
        raise MissingFile(f"recipe {str(path)!r} {what}.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.start}); a recipe is a TOML file."
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err}); fix the syntax.") from None
    _check_keys(path, "", data, TOP_KEYS)
    name = data.get("name", path.stem)
    _check_type(path, "name", name, _STR, "a string")
    models = data.get("models")
    if not models:
        raise _fail(
            path,
            "models",
            "missing or empty",
            'list the candidates at the top of the file, e.g. models = ["tv:resnet50"]',
        )
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise _fail(
            path,
            "models",
            f"expected a list of model names, got {models!r}",
            'write e.g. models = ["tv:resnet50", "timm:efficientnet_b0"]',
        )
    duplicates = sorted({m for m in models if models.count(m) > 1})
    if duplicates:
        raise _fail(
            path, "models", f"duplicate model(s) {', '.join(duplicates)}", "name each model once"
        )
    datasets = data.get("datasets")
    if not datasets:
        raise _fail(
            path,
            "datasets",
            "missing or empty",
            'add at least one [[datasets]] table with a name, e.g. name = "cifar10"',
        )
    if not isinstance(datasets, list):
        raise _fail(path, "datasets", "expected [[datasets]] tables", "write [[datasets]] tables")
    entries = tuple(_load_dataset_entry(path, k, t) for k, t in enumerate(datasets))
    slugs = [e.slug for e in entries]
    duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
    if duplicates:
        raise _fail(
            path,
            "datasets",
            f"duplicate dataset(s) {', '.join(duplicates)}",
            "list each dataset once (image folders need distinct folder names)",
        )
    config, full_epochs, target_epochs = _load_run(path, _table(path, data, "run"))
    predictor = _load_predictor(path, _table(path, data, "predictor"))
    return Recipe(
        name=name,
        models=tuple(models),
        datasets=entries,
        config=config,
        full_epochs=full_epochs,
        target_epochs=target_epochs,
        predictor=predictor,
        path=path.resolve(),
    )
