"""NATS-Bench: the published accuracies of NAS-Bench-201 architectures, and ncap's ranking against them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncap.exceptions import ConfigError, DatasetMissing
from ncap.metrics import ranking_metrics
from ncap.models.nb201 import arch_to_str, parse_arch

__all__ = ["NATS_HELP", "compare_with_nats", "nats_accuracies"]


NATS_HELP = (
    "NATS-Bench topology-space files are needed to look up published accuracies: "
    "`pip install nats_bench`, download NATS-tss-v1_0-3ffb9-simple.tar from "
    "https://github.com/D-X-Y/NATS-Bench (its README links the archive), extract it into "
    "$TORCH_HOME (default ~/.torch) and pass that folder's path (or set TORCH_HOME)."
)


def nats_accuracies(
    archs: Sequence[str],
    path: str | os.PathLike | None = None,
    *,
    dataset: str = "cifar10",
    hp: str = "200",
    api: Any = None,
) -> dict[str, float]:
    """Published final test accuracies (in [0, 1]) of NAS-Bench-201 architectures from NATS-Bench.

    Uses ``nats_bench.create(path, "tss", fast_mode=True)``; ``api`` may be given instead (anything
    with ``query_index_by_arch`` and ``get_more_info``). Raises ``FileNotFoundError`` saying what to
    download and where when the package or the files are missing.
    """
    if api is None:
        try:
            from nats_bench import create  # optional: nats_bench (NATS-Bench API)
        except ImportError as err:
            raise DatasetMissing(NATS_HELP) from err
        root = Path(path) if path else Path(os.environ.get("TORCH_HOME", Path.home() / ".torch"))
        candidates = [root, root / "NATS-tss-v1_0-3ffb9-simple"]
        found = next((p for p in candidates if p.name.startswith("NATS-tss") and p.exists()), None)
        if found is None:
            raise DatasetMissing(f"no NATS-tss-v1_0-3ffb9-simple folder under {root}. {NATS_HELP}")
        api = create(str(found), "tss", fast_mode=True, verbose=False)
    out = {}
    for arch in archs:
        normalised = arch_to_str(parse_arch(arch))
        index = api.query_index_by_arch(normalised)
        if index is None or index < 0:
            raise ConfigError(f"architecture {normalised} is not in the NATS-Bench topology space.")
        info = api.get_more_info(index, dataset, hp=hp, is_random=False)
        out[normalised] = float(info["test-accuracy"]) / 100.0
    return out


def compare_with_nats(
    candidates: Sequence[dict[str, Any]],
    path: str | os.PathLike | None,
    *,
    dataset: str = "cifar10",
    api: Any = None,
) -> dict[str, Any]:
    """Kendall tau and Spearman rho between ncap's predictions of the successful ``nb201:``
    candidates and NATS-Bench's published test accuracies (200 epochs)."""
    ok = [c for c in candidates if c["status"] == "ok"]
    archs = [c["name"].split(":", 1)[1] for c in ok]
    published = nats_accuracies(archs, path, dataset=dataset, api=api)
    pred = [c["predicted_accuracy"] for c in ok]
    truth = [published[arch] for arch in archs]
    agreement = ranking_metrics(pred, truth)
    return {
        "dataset": dataset,
        "published_test_accuracy": published,
        "kendall": agreement["kendall"],
        "spearman": agreement["spearman"],
    }
