"""The demo's policy: which built-in task and budget ``ncap demo`` ranks the demo zoo on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ncap.data.idx import fashion_mnist_dir
from ncap.models.builtin import DEMO_MODELS

__all__ = [
    "DEMO_MODELS",
    "IMAGENET_DEMO_MODELS",
    "DemoTask",
    "ImagenetDemoTask",
    "demo_task",
    "imagenet_demo_task",
    "keep_test",
    "twin_comparison",
    "twin_of",
]


@dataclass(frozen=True)
class DemoTask:
    """A demo target: dataset, sizes, the fine-tuning budget and the --verify budget (epochs)."""

    data: str
    n_train: int | None
    n_val: int | None
    epochs: float
    full_epochs: float


def demo_task(epochs: float) -> DemoTask:
    """Fashion-MNIST classes 5-9 when installed (3000 training images, ``epochs``), else
    scikit-learn's digits (at least 2 epochs, the zoo then pretrained on digits too)."""
    if fashion_mnist_dir() is not None:
        return DemoTask("fashion-mnist-5-9", 3000, 1000, epochs, 5.0)
    return DemoTask("digits", None, None, max(epochs, 2.0), 10.0)


# -- the ImageNet demo: real checkpoints against their random twins ----------------------------------
IMAGENET_DEMO_MODELS = (
    "tv:mobilenet_v2@IMAGENET1K_V1",
    "timm:tf_efficientnet_lite0",
    "timm:tf_efficientnet_lite1",
    "timm:tf_efficientnet_lite2",
)


def twin_of(name: str) -> str:
    """``"tv:mobilenet_v2@IMAGENET1K_V1"`` -> ``"tv:mobilenet_v2@random"`` (same architecture)."""
    return f"{name.split('@', 1)[0]}@random"


@dataclass(frozen=True)
class ImagenetDemoTask:
    """``ncap demo --imagenet``: the real checkpoints and their twins, at ``input_size`` pixels."""

    data: str
    n_train: int | None
    n_val: int | None
    n_test: int
    epochs: float
    input_size: int
    models: tuple[str, ...]


def imagenet_demo_task(epochs: float, input_size: int | None = None) -> ImagenetDemoTask:
    """Fashion-MNIST classes 5-9 (grey, expanded to RGB; digits without it), 1024 training images,
    ``epochs``, 64-pixel inputs (each model's own normalisation), the four real ImageNet checkpoints
    and their random twins. Sized for about 5 minutes on a 2-core CPU."""
    models = tuple(m for name in IMAGENET_DEMO_MODELS for m in (name, twin_of(name)))
    if fashion_mnist_dir() is not None:
        return ImagenetDemoTask(
            "fashion-mnist-5-9", 1024, 256, 512, epochs, input_size or 64, models
        )
    return ImagenetDemoTask("digits", None, 256, 512, max(epochs, 2.0), input_size or 64, models)


def twin_comparison(candidates: list[dict], ranking: list[str]) -> list[dict]:
    """Per real checkpoint: its rank, observed and predicted accuracy, and its twin's."""
    by_name = {c["name"]: c for c in candidates}
    rows = []
    for name in IMAGENET_DEMO_MODELS:
        twin = twin_of(name)
        if name not in by_name or twin not in by_name:
            continue
        row = {"model": name, "twin": twin}
        for key, who in (("real", name), ("twin", twin)):
            record = by_name[who]
            row[key] = {
                "status": record["status"],
                "rank": ranking.index(who) + 1 if who in ranking else None,
                "observed_accuracy": record.get("observed_accuracy"),
                "predicted_accuracy": (record.get("prediction") or {}).get("accuracy"),
            }
        real, other = row["real"], row["twin"]
        row["ranked_above_twin"] = real["rank"] is not None and (
            other["rank"] is None or real["rank"] < other["rank"]
        )
        rows.append(row)
    return rows


def keep_test(dataset, n_test: int, seed: int = 0):
    """The dataset with a seeded random ``n_test`` of its test images (all when it has fewer)."""

    if dataset.x_test is None or len(dataset.y_test) <= n_test:
        return dataset
    keep = torch.randperm(len(dataset.y_test), generator=torch.Generator().manual_seed(seed))
    keep = keep[:n_test].sort().values
    return dataclasses.replace(dataset, x_test=dataset.x_test[keep], y_test=dataset.y_test[keep])
