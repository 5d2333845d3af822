"""The per-batch input adapter against torchvision's own transforms."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from ncap.data.inputs import InputAdapter, InputSpec, adapt_batch, check_channels, is_identity

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _uint8(n=3, c=3, h=20, w=24, seed=0):
    return torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(seed)).to(
        torch.uint8
    )


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(32, 32), (12, 10)])  # up- and down-sampling
def test_matches_torchvision_resize_and_normalize(interpolation, size):
    x = _uint8()
    spec = InputSpec(channels=3, size=size, interpolation=interpolation, **IMAGENET)
    ours = adapt_batch(x, data_mean=(0.0,), data_std=(1 / 255,), spec=spec)
    mode = getattr(TF.InterpolationMode, interpolation.upper())
    ref = TF.resize(x.float() / 255, list(size), interpolation=mode, antialias=True)
    if interpolation == "bicubic":
        ref = ref.clamp(0, 1)
    ref = TF.normalize(ref, list(IMAGENET["mean"]), list(IMAGENET["std"]))
    assert ours.shape == (3, 3, *size) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_grey_expanded_to_rgb_and_standardised_input_decoded():
    pixels = torch.rand(2, 1, 8, 8)
    stored = (pixels - 0.2860) / 0.3530  # the built-in tasks' encoding
    spec = InputSpec(channels=3, size=None, **IMAGENET)
    out = adapt_batch(stored, data_mean=(0.2860,), data_std=(0.3530,), spec=spec)
    mean = torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (pixels.expand(-1, 3, -1, -1) - mean) / std)


def test_rgb_images_become_grey_by_luma_for_a_grey_model():
    from ncap.data.inputs import LUMA

    x = _uint8(c=3)
    pixels = x.float() / 255
    spec = InputSpec(channels=1, size=None, mean=(0.5,), std=(0.25,))
    out = adapt_batch(x, data_mean=(0.0,), data_std=(1 / 255,), spec=spec)
    grey = sum(w * pixels[:, k : k + 1] for k, w in enumerate(LUMA))
    torch.testing.assert_close(out, (grey - 0.5) / 0.25)


def test_channel_mismatch_is_a_clear_error():
    check_channels(1, InputSpec(channels=3, size=None, mean=(0.5,), std=(0.5,)))
    check_channels(3, InputSpec(channels=1, size=None, mean=(0.5,), std=(0.5,)))  # luma
    with pytest.raises(ValueError, match="channel mismatch.*4-channel images.*takes 1"):
        check_channels(4, InputSpec(channels=1, size=None, mean=(0.5,), std=(0.5,)))
    with pytest.raises(ValueError, match="channel mismatch"):
        adapt_batch(
            _uint8(c=3),
            data_mean=(0.0,),
            data_std=(1 / 255,),
            spec=InputSpec(channels=4, size=None, mean=(0.5,), std=(0.5,)),
        )


def test_identity_detection_and_adapter_module():
    spec = InputSpec(channels=1, size=None, mean=(0.2860,), std=(0.3530,))
    assert is_identity((0.2860,), (0.3530,), 1, (28, 28), spec)
    assert not is_identity((0.0,), (1 / 255,), 1, (28, 28), spec)
    assert not is_identity((0.2860,), (0.3530,), 1, (28, 28), spec.with_size(32))
    assert is_identity((0.0,), (1.0,), 3, (5, 5), None)
    adapter = InputAdapter(data_mean=(0.0,), data_std=(1 / 255,), spec=spec.with_size(14))
    assert adapter(_uint8(c=1, h=28, w=28)).shape == (3, 1, 14, 14)
    assert list(adapter.parameters()) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(channels=0, size=None, mean=(0.5,), std=(0.5,)), "channels"),
        (dict(channels=3, size=None, mean=(0.5, 0.5), std=(0.5,)), "mean/std"),
        (dict(channels=1, size=None, mean=(0.5,), std=(0.0,)), "std must be positive"),
        (dict(channels=1, size=(0, 4), mean=(0.5,), std=(0.5,)), "size"),
        (dict(channels=1, size=None, mean=(0.5,), std=(0.5,), interpolation="lanczos"), "lanczos"),
    ],
)
def test_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InputSpec(**kwargs)
