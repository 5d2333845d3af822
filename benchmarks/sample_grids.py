"""Sample grids of bench-v3's dataset families: one PNG per family under docs/img/.

    python benchmarks/sample_grids.py [--out docs/img]

Each grid shows the first images of every class of one dataset per family (the training split of
split seed 0, as ``ncap bench build --plan v3`` loads it), one row per class, at their stored size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from matplotlib.figure import Figure

from ncap.data.registry import load_dataset

FAMILIES = {
    "fashion-mnist": "fashion-mnist",
    "digits": "digits",
    "glyphs": "glyphs-letters",
    "glyphs-digits": "glyphs-digits",
    "shapes": "shapes",
    "textures": "textures",
}
PER_CLASS = 8


def pixels(dataset, x: torch.Tensor) -> torch.Tensor:
    """Stored images ``(C, H, W)`` as pixels in [0, 1], ``(H, W, C)``."""
    mean = torch.tensor(dataset.mean).view(-1, 1, 1)
    std = torch.tensor(dataset.std).view(-1, 1, 1)
    return (x.float() * std + mean).clamp(0, 1).permute(1, 2, 0)


def grid(name: str, out: Path) -> Path:
    dataset = load_dataset(name, n_train=1000, n_val=250)
    # the Figure API: no pyplot, no global backend switch
    fig = Figure(figsize=(PER_CLASS * 0.7 + 1.4, dataset.num_classes * 0.7))
    axes = fig.subplots(dataset.num_classes, PER_CLASS, squeeze=False)
    for c, row in enumerate(axes):
        images = dataset.x_train[dataset.y_train == c][:PER_CLASS]
        for ax, image in zip(row, images, strict=False):
            img = pixels(dataset, image)
            grey = img.shape[-1] == 1
            ax.imshow(img[..., 0] if grey else img, cmap="gray" if grey else None, vmin=0, vmax=1)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        row[0].set_ylabel(dataset.classes[c], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{name} ({dataset.num_classes} classes)", fontsize=9)
    fig.tight_layout()
    path = out / f"samples-{name}.png"
    fig.savefig(path, dpi=72)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in FAMILIES.values():
        print(grid(name, args.out))


if __name__ == "__main__":
    main()
