"""Procedural shapes: eight geometric figures with random size, rotation, colour and clutter, RGB 28 px.

Every image draws a figure of its class (circle, ring, triangle, square, star, cross, crescent,
half-disc) at a random centre, radius, rotation and slight stretch, in a random colour on a random
background colour whose grey level differs by at least 0.3 (so a grey model still sees it), over up
to three random line segments of other colours (clutter), plus pixel noise. Inside tests run on a
2x supersampled grid for the whole batch at once (NumPy), averaged down to 28 px.
"""

from __future__ import annotations

import numpy as np

from ncap.data.dataset import ImageDataset
from ncap.data.generated import (
    downsample,
    generated_dataset,
    random_colours,
    supersampled_grid,
    to_uint8,
)

__all__ = ["SHAPE_CLASSES", "shapes"]

SHAPE_CLASSES = (
    "circle", "ring", "triangle", "square", "star", "cross", "crescent", "half-disc",
)  # fmt: skip
SIZE = 28
VERSION = 1


def _edge_radius(phi: np.ndarray, v1: tuple[float, float], v2: tuple[float, float]) -> np.ndarray:
    """Distance from the origin to the line through ``v1`` and ``v2`` along the direction ``phi``."""
    (x1, y1), (x2, y2) = v1, v2
    return (x1 * y2 - x2 * y1) / ((y2 - y1) * np.cos(phi) - (x2 - x1) * np.sin(phi))


def _polygon(r: np.ndarray, phi: np.ndarray, n: int) -> np.ndarray:
    """Inside a regular ``n``-gon of circumradius 1 with a vertex on the x axis."""
    sector = 2 * np.pi / n
    folded = np.mod(phi, sector)
    return r <= _edge_radius(folded, (1.0, 0.0), (np.cos(sector), np.sin(sector)))


def _star(r: np.ndarray, phi: np.ndarray, points: int = 5, inner: float = 0.45) -> np.ndarray:
    sector = 2 * np.pi / points
    folded = np.mod(phi, sector)
    folded = np.minimum(folded, sector - folded)  # mirror into [0, sector / 2]
    v2 = (inner * np.cos(sector / 2), inner * np.sin(sector / 2))
    return r <= _edge_radius(folded, (1.0, 0.0), v2)


def _inside(kind: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether the local coordinates ``(x, y)`` (figure radius 1) are inside figure ``kind``."""
    r, phi = np.hypot(x, y), np.arctan2(y, x)
    name = SHAPE_CLASSES[kind]
    if name == "circle":
        return r <= 1.0
    if name == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if name == "triangle":
        return _polygon(r, phi, 3)
    if name == "square":
        return _polygon(r, phi, 4)
    if name == "star":
        return _star(r, phi)
    if name == "cross":
        return ((np.abs(x) <= 0.3) & (np.abs(y) <= 1.0)) | ((np.abs(y) <= 0.3) & (np.abs(x) <= 1.0))
    if name == "crescent":
        return (r <= 1.0) & (np.hypot(x - 0.5, y) > 0.8)
    return (r <= 1.0) & (y >= -0.1)  # half-disc


def _segments(
    rng: np.random.Generator, n: int, gx: np.ndarray, gy: np.ndarray, count: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Clutter: up to ``count`` random segments per image, as masks ``(n, count, H, W)`` and
    colours ``(n, count, 3)``."""
    a = rng.uniform(-1, 1, (n, count, 2)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, count, 2)).astype(np.float32)
    width = rng.uniform(0.03, 0.08, (n, count, 1, 1)).astype(np.float32)
    active = rng.integers(0, 2, (n, count)).astype(bool)
    colours = rng.random((n, count, 3), dtype=np.float32)
    d = b - a
    px = gx[None, None] - a[..., 0, None, None]
    py = gy[None, None] - a[..., 1, None, None]
    length2 = (d**2).sum(-1)[..., None, None] + 1e-6
    t = np.clip((px * d[..., 0, None, None] + py * d[..., 1, None, None]) / length2, 0, 1)
    dist = np.hypot(px - t * d[..., 0, None, None], py - t * d[..., 1, None, None])
    return (dist <= width) & active[..., None, None], colours


def _draw(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(labels)
    gx, gy = supersampled_grid(SIZE)
    out = np.empty((n, 3, SIZE, SIZE), dtype=np.uint8)
    radius = rng.uniform(0.35, 0.8, n).astype(np.float32)
    centre = rng.uniform(-1, 1, (n, 2)).astype(np.float32) * (0.95 - radius)[:, None]
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    stretch = rng.uniform(0.85, 1.15, n).astype(np.float32)
    bg, fg = random_colours(rng, n)
    noise = rng.normal(0, 0.03, (n, 3, SIZE, SIZE)).astype(np.float32)
    for lo in range(0, n, 1000):
        sl = slice(lo, lo + 1000)
        m = len(labels[sl])
        clutter, clutter_colours = _segments(rng, m, gx, gy)
        # local coordinates: undo the shift, rotation, stretch and radius
        dx, dy = gx[None] - centre[sl, 0, None, None], gy[None] - centre[sl, 1, None, None]
        c, s = np.cos(angle[sl])[:, None, None], np.sin(angle[sl])[:, None, None]
        lx = (c * dx + s * dy) / (radius[sl] * stretch[sl])[:, None, None]
        ly = (-s * dx + c * dy) / (radius[sl] / stretch[sl])[:, None, None]
        mask = np.zeros(lx.shape, dtype=bool)
        for kind in range(len(SHAPE_CLASSES)):
            pick = labels[sl] == kind
            if pick.any():
                mask[pick] = _inside(kind, lx[pick], ly[pick])
        img = np.broadcast_to(bg[sl, :, None, None], (m, 3, *gx.shape)).copy()
        for k in range(clutter.shape[1]):
            img = np.where(clutter[:, k, None], clutter_colours[:, k, :, None, None], img)
        img = np.where(mask[:, None], fg[sl, :, None, None], img)
        out[sl] = to_uint8(downsample(img) + noise[sl])
    return out


def shapes(name: str = "shapes", *, per_class: int = 1000):
    """The loader of the shapes dataset (eight classes, :data:`SHAPE_CLASSES`)."""

    def load(*, n_train=None, n_val=None, seed=0, **_) -> ImageDataset:
        params = {"kind": "shapes", "version": VERSION, "size": SIZE}
        return generated_dataset(
            name,
            _draw,
            SHAPE_CLASSES,
            params,
            per_class=per_class,
            n_train=n_train,
            n_val=n_val,
            seed=seed,
            default_val=2000,
        )

    return load
