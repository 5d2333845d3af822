import numpy as np
import pytest
import torch


def random_block(sizes, *, seed=0, bias_scale=0.1, bias_mean=0.3):
    """Random float64 MLP block (weights in torch Linear layout) and a labelled batch."""
    rng = np.random.default_rng(seed)
    weights = [
        rng.normal(scale=1.0 / np.sqrt(n_in), size=(n_out, n_in))
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    # a positive mean bias keeps narrow random ReLU layers from dying entirely
    biases = [rng.normal(loc=bias_mean, scale=bias_scale, size=n_out) for n_out in sizes[1:]]
    return weights, biases


def random_batch(n_in, n_classes, batch, *, seed=0):
    rng = np.random.default_rng(seed + 1000)
    return rng.normal(size=(batch, n_in)), rng.integers(0, n_classes, size=batch)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


TINY_PRETRAIN = {"dataset": "digits", "n_train": 256, "n_val": 128, "seed": 0}


def _tiny_pretrain():
    from ncap.models.pretrain import PretrainSpec

    return PretrainSpec(**TINY_PRETRAIN)


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    """An isolated model cache and a tiny, fast pretraining set for the built-in zoo."""
    import ncap.models.pretrain

    monkeypatch.setenv("NCAP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ncap.models.pretrain, "default_pretrain", _tiny_pretrain)
    return tmp_path / "cache"
