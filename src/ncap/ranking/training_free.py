"""Training-free values of a candidate that its score reads: LogME of its features, or the zero-cost
proxies of an untrained network (`ncap nas`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ncap.data.dataset import ImageDataset
from ncap.models.backbone import Backbone
from ncap.predict.logme import logme
from ncap.predict.proxies import compute_proxies
from ncap.training.config import FinetuneConfig
from ncap.training.features import backbone_features
from ncap.training.runtime import Runtime

__all__ = ["LOGME_IMAGES", "logme_of", "proxies_of", "training_free_scores"]

# a ranking's LogME reads at most this many training images: bench-v2, whose rows the recommended
# score is fitted on, had 500-1024, and a pass over all of a large split costs a third of an epoch
LOGME_IMAGES = 1024


def logme_of(
    backbone: Backbone,
    dataset: ImageDataset,
    config: FinetuneConfig,
    *,
    device: torch.device | str = "cpu",
    max_images: int | None = None,
) -> dict[str, Any]:
    """``{"logme": ..., "logme_seconds": ...}``: LogME (You et al. 2021,
    :func:`ncap.predict.logme.logme`) of the pretrained backbone's features of the training
    images (the first ``max_images`` when given), as the benchmark builder computes it."""
    start = time.perf_counter()
    feats = backbone_features(
        backbone.module, backbone.input_spec, dataset, config, device=device, max_images=max_images
    )
    labels = dataset.y_train.numpy()[: len(feats)]
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate features: checked below
        value = float(logme(feats.double().numpy(), labels))
    return {"logme": value, "logme_seconds": time.perf_counter() - start}


def training_free_scores(
    backbone: Backbone,
    dataset: ImageDataset,
    config: FinetuneConfig,
    runtime: Runtime | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """:func:`logme_of` for a candidate of a ranking, on the run's device; when LogME cannot be
    computed (non-finite features, a numerical failure) ``{"logme_error": reason}`` instead: the
    score then leaves LogME out rather than failing the candidate. Errors of the candidate's own
    model code propagate (they fail it, as its fine-tuning would)."""
    device = runtime.torch_device() if runtime is not None else "cpu"
    try:
        out = logme_of(backbone, dataset, config, device=device, max_images=LOGME_IMAGES)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:
        out = {"logme_error": str(err).splitlines()[0] if str(err) else type(err).__name__}
    else:
        if not np.isfinite(out["logme"]):  # e.g. features that are constant over the images
            seconds = out["logme_seconds"]
            out = {"logme_error": f"LogME is {out['logme']} (degenerate features)",
                   "logme_seconds": seconds}  # fmt: skip
    if "logme_error" in out and log:
        log(f"{backbone.name}: {out['logme_error']}; the score leaves LogME out")
    return out


def proxies_of(
    backbone: Backbone, dataset: ImageDataset, config: FinetuneConfig, names: Sequence[str]
) -> dict[str, Any]:
    """``{"proxies": ..., "proxy_failures": ..., "proxy_seconds": ...}``: the zero-cost proxies
    ``names`` (:func:`ncap.predict.proxies.compute_proxies`) of the untrained network with a fresh
    linear head, on one batch of ``config.batch_size`` training images, exactly as the NAS
    benchmark computes them (head and batch drawn from seed 0, on the CPU). Torch's random state is
    left as it was, so the fine-tuning that follows is the same with or without proxies."""
    start = time.perf_counter()
    own = [n for n in names if n not in ("flops", "param_count")]
    with torch.random.fork_rng():
        generator = torch.Generator().manual_seed(0)
        head = torch.nn.Linear(backbone.num_features, dataset.num_classes)
        torch.manual_seed(0)
        head.reset_parameters()
        idx = torch.randperm(len(dataset.y_train), generator=generator)[: config.batch_size]
        model = torch.nn.Sequential(backbone.module, head)
        values, reasons = compute_proxies(model, dataset.x_train[idx], dataset.y_train[idx], own)
    return {
        "proxies": values,
        "proxy_failures": reasons,
        "proxy_seconds": time.perf_counter() - start,
    }
