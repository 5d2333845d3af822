"""What a model name is, before anything is built: name checks and forward cost on the meta device."""

from __future__ import annotations

import difflib
import functools
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ncap.exceptions import ConfigError
from ncap.models.builtin import list_models
from ncap.models.registry import create_backbone
from ncap.models.sources import split_weights

__all__ = ["model_problem", "model_profile"]


def model_problem(model: str) -> str | None:
    """Why timm/torchvision/ncap do not know ``model`` (names and metadata only), or None."""
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
        import timm  # optional: timm (ncap[zoo])

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
        import torchvision  # optional: torchvision (ncap[zoo])

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
    prefix, _, rest = model.partition(":")
    if prefix not in ("timm", "tv"):
        raise ConfigError(f"{model}: only timm: and tv: models can be profiled.")
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
        raise ConfigError(f"{model} cannot take {size}x{size} inputs ({first}).") from None
    return {"flops": float(flops.get_total_flops()), "ops": ops.count, "input_size": size}
