"""Recipes: a whole experimental protocol (models x datasets x budgets) in one TOML file.

A recipe names the candidate models, the datasets (each with its input size and validation split)
and the fine-tuning settings shared by all of them; :func:`run_recipe` ranks the models on every
dataset with :func:`ncap.ranking.rank`, one output folder per dataset. ``recipes/paper.toml`` is the
protocol of Jiang et al. (2024); ``docs/recipe.md`` describes it.

The file::

    name = "paper"                         # optional; default: the file's stem
    models = ["tv:resnet50", "timm:resnetv2_50", ...]

    [run]                                  # all optional; FinetuneConfig's defaults otherwise
    budget_epochs = 5                      # the early budget (FinetuneConfig.epochs)
    steps = 40                             # or the budget in steps (overrides budget_epochs)
    eval_every = 10                        # steps between evaluations (default 8 per epoch)
    full_epochs = 50                       # also train this long to measure the truth; omit to skip
    batch_size = 64
    lr = 1e-3
    optimizer = "adam"                     # adam, adamw or sgd (momentum, weight_decay apply)
    seed = 0
    probe_hidden = [128, 64, 32]
    probe_activation = "relu"
    max_val = 5000                         # evaluate on at most this many validation images

    [predictor]                            # optional; ncap.ranking.PredictorSettings fields
    features = "quadratic"

    [[datasets]]                           # one table per dataset
    name = "cifar10"                       # a name from ncap.datasets.list_datasets() or a folder
    input_size = 32                        # the square input every model gets (omit: model's own)
    n_val = 15000                          # validation images held out of the training split
    n_train = 10000                        # optional: keep only this many training images
    image_size = 224                       # optional: the size the images are stored at

A relative folder path is relative to the recipe file's folder.

:func:`estimate_compute` gives an order-of-magnitude cost of a recipe before it runs (see its
docstring for the method and the assumptions).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import functools
import math
import tomllib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncap.finetune import FinetuneConfig
from ncap.ranking import PredictorSettings, RankResult, load_results, rank, slug
from ncap.runtime import Runtime
from ncap.storage import atomic_write_json

__all__ = [
    "Recipe",
    "RecipeDataset",
    "check_models",
    "describe_plan",
    "estimate_compute",
    "load_recipe",
    "run_recipe",
]

TOP_KEYS = ("name", "models", "run", "predictor", "datasets")
# [run] key -> (FinetuneConfig field, accepted type(s), type name for messages)
_INT, _NUM, _STR = (int,), (int, float), (str,)
RUN_KEYS: dict[str, tuple[str, tuple[type, ...], str]] = {
    "budget_epochs": ("epochs", _NUM, "a number"),
    "steps": ("steps", _INT, "an integer"),
    "eval_every": ("eval_every", _INT, "an integer"),
    "full_epochs": ("", _NUM, "a number"),  # not a FinetuneConfig field: Recipe.full_epochs
    "batch_size": ("batch_size", _INT, "an integer"),
    "lr": ("lr", _NUM, "a number"),
    "optimizer": ("optimizer", _STR, "a string"),
    "momentum": ("momentum", _NUM, "a number"),
    "weight_decay": ("weight_decay", _NUM, "a number"),
    "seed": ("seed", _INT, "an integer"),
    "probe_hidden": ("probe_hidden", (list,), "a list of integers"),
    "probe_activation": ("probe_activation", _STR, "a string"),
    "max_val": ("max_val", _INT, "an integer"),
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
EVAL_BATCH = 512  # ncap.finetune.evaluate's batch size
TRAIN_FACTOR = 3.0  # forward + backward ~ 3 forward passes (FLOPs and kernel launches)


@dataclass(frozen=True)
class RecipeDataset:
    """One dataset of a recipe.

    Parameters
    ----------
    name : str
        A name from :func:`ncap.datasets.list_datasets` or the (absolute) path of an image folder.
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
        from ncap.datasets import list_datasets

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
        Candidate names, as :func:`ncap.ranking.rank` takes them.
    datasets : tuple of RecipeDataset
    config : FinetuneConfig
        The early fine-tuning settings; ``config.epochs`` (or ``config.steps``) is the budget.
        ``input_size`` is left None here and set per dataset by :func:`run_recipe`.
    full_epochs : float or None
        Fine-tune this long as well to measure the final accuracy (the truth); None skips it.
    predictor : PredictorSettings
    path : Path or None
        The file the recipe was read from.
    """

    name: str
    models: tuple[str, ...]
    datasets: tuple[RecipeDataset, ...]
    config: FinetuneConfig = FinetuneConfig()
    full_epochs: float | None = None
    predictor: PredictorSettings = PredictorSettings()
    path: Path | None = None

    def dataset(self, name: str) -> RecipeDataset:
        """The entry named ``name`` (its name or output slug); ValueError listing the valid ones."""
        for entry in self.datasets:
            if name in (entry.name, entry.slug):
                return entry
        raise ValueError(
            f"recipe {self.name!r} has no dataset {name!r}; its datasets: "
            f"{', '.join(e.slug for e in self.datasets)}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": None if self.path is None else str(self.path),
            "models": list(self.models),
            "datasets": [d.to_dict() for d in self.datasets],
            "run": self.config.to_dict() | {"full_epochs": self.full_epochs},
            "predictor": dataclasses.asdict(self.predictor),
        }


# -- loading -----------------------------------------------------------------------------------
def _fail(path: Path, key: str, problem: str, fix: str) -> ValueError:
    return ValueError(f"{path}: {key}: {problem}; {fix}.")


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


def _load_run(path: Path, run: dict[str, Any]) -> tuple[FinetuneConfig, float | None]:
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
        if field_name:
            kwargs[field_name] = value
    try:
        config = FinetuneConfig(**kwargs)
    except ValueError as err:
        raise _fail(path, "run", str(err).rstrip("."), "fix that setting in [run]") from None
    full_epochs = run.get("full_epochs")
    if full_epochs is not None:
        if not (full_epochs > 0 and math.isfinite(full_epochs)):
            raise _fail(
                path,
                "run.full_epochs",
                f"must be a positive number, got {full_epochs!r}",
                "give the length of the full run in epochs, or delete the line to skip it",
            )
        if config.steps is None and full_epochs < config.epochs:
            raise _fail(
                path,
                "run.full_epochs",
                f"{full_epochs} is shorter than the budget ({config.epochs} epochs)",
                "the full run must cover the budget; raise full_epochs or lower budget_epochs",
            )
        full_epochs = float(full_epochs)
    return config, full_epochs


def _load_predictor(path: Path, table: dict[str, Any]) -> PredictorSettings:
    _check_keys(path, "predictor.", table, list(PREDICTOR_KEYS))
    for key, value in table.items():
        _check_type(path, f"predictor.{key}", value, *PREDICTOR_KEYS[key])
    try:
        return PredictorSettings(**table)
    except ValueError as err:
        raise _fail(path, "predictor", str(err).rstrip("."), "fix it in [predictor]") from None


def _load_dataset_entry(path: Path, k: int, table: Any) -> RecipeDataset:
    from ncap.datasets import list_datasets

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
        raise FileNotFoundError(f"recipe {str(path)!r} does not exist.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err}); fix the syntax.") from None
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
    config, full_epochs = _load_run(path, _table(path, data, "run"))
    predictor = _load_predictor(path, _table(path, data, "predictor"))
    return Recipe(
        name=name,
        models=tuple(models),
        datasets=entries,
        config=config,
        full_epochs=full_epochs,
        predictor=predictor,
        path=path.resolve(),
    )


# -- model checks and profiles -----------------------------------------------------------------
def _name_problem(model: str) -> str | None:
    """Why timm/torchvision/ncap do not know ``model`` (names and metadata only), or None."""
    from ncap.zoo import list_models
    from ncap.zoo_sources import split_weights

    if ":" not in model:
        if model in list_models():
            return None
        return f"{model}: not a built-in model; use timm:<name>, tv:<name> or py:<module>:<fn>."
    prefix, rest = model.split(":", 1)
    try:
        base, weights = split_weights(rest)
    except ValueError as err:
        return f"{model}: {err}"
    if prefix == "timm":
        import timm

        arch = base.split(".", 1)[0]
        if not timm.is_model(arch):
            close = difflib.get_close_matches(arch, timm.list_models(), n=3)
            return f"{model}: timm {timm.__version__} has no model {arch!r}" + (
                f" (did you mean {', '.join(close)}?)" if close else ""
            )
        if weights is None and timm.models.get_pretrained_cfg(base) is None:
            return f"{model}: timm has no pretrained weights for {base!r}; add @random or @<file>."
        if weights not in (None, "random") and not Path(weights).expanduser().is_file():
            return f"{model}: weights file {weights!r} does not exist."
        return None
    if prefix == "tv":
        import torchvision

        known = torchvision.models.list_models(module=torchvision.models)
        if base not in known:
            close = difflib.get_close_matches(base, known, n=3)
            return f"{model}: torchvision {torchvision.__version__} has no model {base!r}" + (
                f" (did you mean {', '.join(close)}?)" if close else ""
            )
        if weights == "random":
            return None
        try:
            enum = torchvision.models.get_model_weights(base)
        except (ValueError, KeyError):
            return f"{model}: torchvision has no pretrained weights for {base!r}; add @random."
        if weights not in (None, "DEFAULT") and weights not in enum.__members__:
            return (
                f"{model}: unknown weights {weights!r}; choose one of "
                f"{', '.join(enum.__members__)}, DEFAULT or random."
            )
        return None
    if prefix == "py":
        return None  # a user factory: importing it could run anything, so it is checked at run time
    return f"{model}: unknown model source {prefix!r}; use timm:, tv: or py:."


def _op_counter():
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpCounter(TorchDispatchMode):
        """Counts the aten operations dispatched (a proxy for eager PyTorch's kernel launches)."""

        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += 1
            return func(*args, **(kwargs or {}))

    return OpCounter()


@functools.lru_cache(maxsize=64)
def _meta_backbone(model: str):
    """The backbone of ``model`` with random weights on the meta device (no memory, no download)."""
    import torch

    from ncap.zoo import create_backbone

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_backbone(f"{model}@random")


@functools.lru_cache(maxsize=256)
def model_profile(model: str, input_size: int | None) -> dict[str, Any]:
    """Forward cost of one image through a timm/torchvision backbone, measured without weights.

    The backbone is built the way ncap builds it (classifier removed) with random weights on the
    ``meta`` device, so nothing is downloaded or allocated, and one forward pass of a batch of one
    runs under :class:`torch.utils.flop_counter.FlopCounterMode`.

    Parameters
    ----------
    model : str
        A ``timm:`` or ``tv:`` candidate name (a weights suffix is ignored).
    input_size : int or None
        The square input size; None: the model's own (its pretrained input size).

    Returns
    -------
    dict
        ``flops`` (forward FLOPs per image, 2 per multiply-add, convolutions and matrix products
        only), ``ops`` (aten operations per forward pass) and ``input_size`` (the size used).

    Raises
    ------
    ValueError
        For other model sources, or a model that cannot take ``input_size`` (e.g. Inception v3
        needs at least 75 pixels).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ncap.zoo_sources import split_weights

    prefix, _, rest = model.partition(":")
    if prefix not in ("timm", "tv"):
        raise ValueError(f"{model}: only timm: and tv: models can be profiled.")
    backbone = _meta_backbone(f"{prefix}:{split_weights(rest)[0]}")
    spec = backbone.input_spec
    size = input_size or (spec.size[0] if spec is not None and spec.size else 224)
    channels = spec.channels if spec is not None else 3
    module = backbone.module.eval()
    flops, ops = FlopCounterMode(display=False), _op_counter()
    try:
        with torch.device("meta"), torch.no_grad(), flops, ops:
            module(torch.empty(1, channels, size, size))
    except Exception as err:  # whatever stops the forward pass here stops the real one too
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{model} cannot take {size}x{size} inputs ({first}).") from None
    return {"flops": float(flops.get_total_flops()), "ops": ops.count, "input_size": size}


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
    by_model = {model: _name_problem(model) for model in recipe.models}
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


# -- the compute estimate ------------------------------------------------------------------------
def _folder_sizes(folder: Path) -> tuple[int, int, int]:
    from ncap.datasets import IMAGE_SUFFIXES

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
    from ncap.datasets import default_n_val

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
    extra_evals: int,
    *,
    sustained_tflops: float,
    op_overhead_us: float,
) -> dict[str, float]:
    """FLOPs and GPU seconds of one fine-tuning run of ``total_steps`` steps (the formula of
    :func:`estimate_compute`)."""
    n_train, n_val, n_test = sizes
    n_val = min(n_val, config.max_val) if config.max_val else n_val
    interval = config.interval(n_train)
    evaluations = total_steps // interval + (total_steps % interval != 0) + extra_evals
    train_images = total_steps * n_train / config.steps_per_epoch(n_train)
    eval_images = evaluations * n_val + n_test
    eval_batches = evaluations * math.ceil(n_val / EVAL_BATCH) + math.ceil(n_test / EVAL_BATCH)
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
      (forward + backward ~ 3 forward passes), evaluates the ``n_val`` validation images (at most
      ``max_val``) every ``eval_every`` steps (default 8 times per epoch) and the test split once
      at the end, at ``F`` each.
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
            budget = _run_cost(profile, sizes, config, budget_steps, 0, **kw)
            _add(row["budget"], budget)
            row["budget"] |= {k: budget[k] for k in ("steps", "evaluations")}
            row["per_model"][model] = {"budget_gpu_hours": budget["gpu_hours"]}
            if full_steps is not None:
                interval = config.interval(n_train)
                extra = int(budget_steps % interval != 0 and budget_steps < full_steps)
                full = _run_cost(profile, sizes, config, full_steps, extra, **kw)
                _add(row["full"], full)
                row["full"] |= {k: full[k] for k in ("steps", "evaluations")}
                row["per_model"][model]["full_gpu_hours"] = full["gpu_hours"]
        out["datasets"][entry.slug] = row
        if row["budget"]:
            _add(out["total"]["budget"], row["budget"])
        if row["full"]:
            _add(out["total"]["full"], row["full"])
    return out


# -- the plan ------------------------------------------------------------------------------------
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
        f"seed {config.seed}, evaluation every "
        + (f"{config.eval_every} steps" if config.eval_every else "1/8 epoch")
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


# -- running -------------------------------------------------------------------------------------
def _subset(kind: str, asked: Sequence[str] | None, valid: Sequence[str]) -> list[str] | None:
    if asked is None:
        return None
    unknown = [a for a in asked if a not in valid]
    if unknown:
        raise ValueError(
            f"unknown {kind} {', '.join(map(repr, unknown))}; the recipe's {kind}: "
            f"{', '.join(valid)}."
        )
    return list(asked)


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
    runtime: Runtime | None = None,
    executor: Any = "local",
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, RankResult]:
    """Rank the recipe's models on each of its datasets.

    For each dataset: load it (``n_train``, ``n_val``, ``image_size`` of the entry, split seeded
    by the recipe's seed), set ``input_size`` to the entry's, and call :func:`ncap.ranking.rank`
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
    runtime : Runtime, optional
        Device, mixed precision and loader workers (default: CPU).
    executor : "local", "ray" or an executor object
        See :mod:`ncap.executors`.
    datasets : sequence of str, optional
        Run only these datasets (names or slugs from the recipe).
    models : sequence of str, optional
        Run only these of the recipe's models.
    resume, overwrite, progress, log
        Passed to :func:`ncap.ranking.rank` for every dataset.

    Returns
    -------
    dict
        Dataset slug -> :class:`~ncap.ranking.RankResult`, in the recipe's order.

    Raises
    ------
    ValueError
        For names in ``datasets`` or ``models`` that the recipe does not have (the message lists
        the valid ones), and whatever :func:`ncap.ranking.rank` raises.
    """
    from ncap.datasets import load_dataset

    slugs = [e.slug for e in recipe.datasets]
    names = [e.name for e in recipe.datasets]
    wanted = _subset("datasets", datasets, slugs + [n for n in names if n not in slugs])
    chosen = _subset("models", models, list(recipe.models)) or list(recipe.models)
    entries = [e for e in recipe.datasets if wanted is None or {e.slug, e.name} & set(wanted)]
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
            full_epochs=recipe.full_epochs,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            log=log,
            runtime=runtime,
            executor=executor,
        )
        atomic_write_json(_summary(recipe, out_dir, results, started), out_dir / "recipe.json")
    return results
