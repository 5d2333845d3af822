"""The demo's policy: which built-in task and budget ``ncap demo`` ranks the demo zoo on."""

from __future__ import annotations

from dataclasses import dataclass

from ncap.data.idx import fashion_mnist_dir
from ncap.models.builtin import DEMO_MODELS

__all__ = ["DEMO_MODELS", "DemoTask", "demo_task"]


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
