"""The generated built-in datasets: glyphs, shapes, textures (seeded, balanced, in range, learnable)."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from ncap.data.dataset import UINT8, to_grey
from ncap.data.generated import generated_pool
from ncap.data.glyphs import DIGITS, _draw, glyph_fonts
from ncap.data.registry import list_datasets, load_dataset
from ncap.data.shapes import SHAPE_CLASSES
from ncap.data.shapes import _draw as draw_shapes
from ncap.data.textures import TEXTURE_CLASSES
from ncap.data.textures import _draw as draw_textures

PER_CLASS = 60


def _glyphs(labels, rng):
    return _draw(DIGITS, glyph_fonts())(labels, rng)


GENERATORS = {
    "glyphs": (_glyphs, 10, 1),
    "shapes": (draw_shapes, len(SHAPE_CLASSES), 3),
    "textures": (draw_textures, len(TEXTURE_CLASSES), 3),
}


def _pool(kind, seed_params=None):
    generate, classes, _ = GENERATORS[kind]
    return generated_pool(kind, generate, classes, PER_CLASS, seed_params or {}, cache=False)


def _shape_features(x):
    """Around the figure's centroid (the pixels far from the median, background, colour): its
    radial profile and the low harmonics of its angular profile, both scale-free."""
    ink = np.abs(x - np.median(x, axis=(2, 3), keepdims=True)).sum(1)
    ys, xs = np.mgrid[:28, :28]
    w = ink / ink.sum((1, 2), keepdims=True)
    dy = ys[None] - (w * ys).sum((1, 2))[:, None, None]
    dx = xs[None] - (w * xs).sum((1, 2))[:, None, None]
    r = np.hypot(dy, dx)
    r = r / np.sqrt((w * r**2).sum((1, 2)))[:, None, None]
    phi = np.arctan2(dy, dx)
    radial = np.stack([np.histogram(r[i], 12, (0, 3), weights=ink[i])[0] for i in range(len(x))])
    angular = np.stack(
        [
            np.abs(
                np.fft.rfft(
                    np.histogram(phi[i], 36, (-np.pi, np.pi), weights=ink[i] * (r[i] > 0.8))[0]
                )
            )[:10]
            for i in range(len(x))
        ]
    )
    return np.concatenate([radial / radial.sum(1, keepdims=True), angular / angular[:, :1]], 1)


def _features(kind, x):
    """Raw grey pixels (glyphs); a scale-free profile of the figure (shapes); the 2-D spectrum's
    magnitude (textures: orientation and period)."""
    x = x.astype(np.float32) / 255.0
    if kind == "glyphs":
        return x.reshape(len(x), -1)
    if kind == "shapes":
        return _shape_features(x)
    grey = x.mean(1)
    spectrum = np.abs(np.fft.rfft2(grey - grey.mean(axis=(1, 2), keepdims=True)))
    return np.log1p(spectrum.reshape(len(x), -1))


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generator_is_seeded_balanced_in_range_and_learnable(kind):
    _, classes, channels = GENERATORS[kind]
    x, y, record = _pool(kind)
    x2, y2, _ = _pool(kind)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)  # deterministic (fixed pool seed)
    assert x.dtype == np.uint8 and x.shape == (classes * PER_CLASS, channels, 28, 28)
    assert np.bincount(y, minlength=classes).tolist() == [PER_CLASS] * classes
    assert record["generated_seconds"] > 0
    # images use the range and differ from each other
    assert x.min() < 40 and x.max() > 200
    assert len({img.tobytes() for img in x}) == len(x)
    # distinct classes: a linear model on simple features beats chance by far on held-out images
    features = _features(kind, x)
    half = len(y) // 2
    clf = LogisticRegression(max_iter=1000).fit(features[:half], y[:half])
    accuracy = clf.score(features[half:], y[half:])
    assert accuracy > 2.5 / classes, accuracy


@pytest.mark.parametrize(
    "name, classes, channels",
    [("glyphs-letters", 10, 1), ("shapes", 8, 3), ("textures-stripes", 4, 3)],
)
def test_generated_datasets_load_like_the_built_ins(tmp_path, monkeypatch, name, classes, channels):
    monkeypatch.setenv("NCAP_CACHE_DIR", str(tmp_path))
    assert name in list_datasets()
    data = load_dataset(name, n_train=96, n_val=40, seed=3)
    assert data.num_classes == classes and len(data.classes) == classes
    assert data.x_train.shape == (96, channels, 28, 28) and len(data.y_val) == 40
    assert data.x_train.dtype == torch.uint8 and (data.mean, data.std) == (
        UINT8[0] * channels,
        UINT8[1] * channels,
    )
    assert list((tmp_path / "datasets").glob(f"{name}-*.npz"))  # cached
    again = load_dataset(name, n_train=96, n_val=40, seed=3)  # from the cache: the same images
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_val, data.y_val)
    other = load_dataset(name, n_train=96, n_val=40, seed=4)  # another split of the same pool
    assert not torch.equal(other.y_val, data.y_val)


def test_to_grey_uses_bt601_luma():
    from ncap.data.folders import dataset_from_arrays

    x = np.zeros((6, 3, 2, 2), dtype=np.uint8)
    x[:, 0], x[:, 1], x[:, 2] = 200, 100, 50
    data = dataset_from_arrays(x, np.arange(6) % 2, n_val=2)
    grey = to_grey(data)
    assert grey.channels == 1 and grey.x_train.dtype == torch.uint8
    assert int(grey.x_train[0, 0, 0, 0]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert to_grey(grey) is grey
