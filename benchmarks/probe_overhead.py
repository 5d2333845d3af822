"""How much does beta_eff bookkeeping cost? Two measurements, each as ratios taken in one run.

1. A fine-tuning step (forward, backward, optimiser step) of a backbone under a frozen
   512-256-128-64-10 probe on a batch of 64, with the probe's statistics off and on, per variant
   (mean step time of blocks of ``QUEUE_BATCHES`` steps: the probe adds its queued batches once
   per block).
   Reported for a small CNN backbone on 32x32x3 inputs (a realistic step) and for the probe alone on
   trainable features (the worst case: nothing else to amortise the bookkeeping).
2. beta_eff of one batch by the closed forms vs by the explicit line graph, at growing probe sizes,
   until the explicit graph is refused.

Run:  .venv/bin/python benchmarks/probe_overhead.py [--repeats 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

from ncap import VARIANTS, NeuralCapacitanceProbe, beta_eff, line_graph, probe_beta_eff
from ncap.capacitance.statistics import QUEUE_BATCHES

PROBE_HIDDEN = (256, 128, 64)
FEATURES, CLASSES, BATCH = 512, 10, 64


def cnn_backbone() -> nn.Module:
    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)
        )

    return nn.Sequential(
        block(3, 32), block(32, 64), block(64, 128), nn.Flatten(), nn.Linear(128 * 4 * 4, FEATURES)
    )


class FeatureLayer(nn.Module):
    """Trainable features standing in for a backbone: the probe-only worst case."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Parameter(torch.randn(BATCH, FEATURES))

    def forward(self, _x: torch.Tensor) -> torch.Tensor:
        return self.features


def time_steps(backbone, probe, x, y, optimizer, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(probe(backbone(x)), y)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def step_overhead(kind: str, repeats: int) -> dict:
    torch.manual_seed(0)
    backbone = cnn_backbone() if kind == "cnn" else FeatureLayer()
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, CLASSES, (BATCH,))
    optimizer = torch.optim.SGD(backbone.parameters(), lr=1e-3)
    settings = {"off": VARIANTS, "all": VARIANTS} | {v: (v,) for v in VARIANTS}
    probes = {}
    for name, variants in settings.items():
        probes[name] = NeuralCapacitanceProbe(
            FEATURES, CLASSES, hidden=PROBE_HIDDEN, seed=0, variants=variants
        )
        probes[name].recording = name != "off"
    for probe in probes.values():  # warm-up
        time_steps(backbone, probe, x, y, optimizer, 3)
    samples = {name: [] for name in probes}
    for _ in range(repeats):  # interleave settings so drift hits all alike
        for name, probe in probes.items():
            # a block of QUEUE_BATCHES steps: the probe queues batches and adds them as one chunk
            probe.statistics.flush()
            block = time_steps(backbone, probe, x, y, optimizer, QUEUE_BATCHES)
            samples[name].append(sum(block) / QUEUE_BATCHES)
    base = statistics.median(samples["off"])
    return {
        "backbone": kind,
        "step_ms_without_stats": 1e3 * base,
        "ratio_with_stats": {
            name: statistics.median(samples[name]) / base for name in probes if name != "off"
        },
    }


def closed_vs_explicit(max_arcs: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for width in (4, 8, 16, 32, 64, 96, 128, 160):
        sizes = [width, width, width, width, CLASSES]
        weights = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(sizes[:-1], sizes[1:])]
        biases = [np.full(o, 0.1) for o in sizes[1:]]
        x, y = rng.normal(size=(BATCH, width)), rng.integers(0, CLASSES, BATCH)
        row = {
            "sizes": sizes,
            "arcs": sum(a * b * c for a, b, c in zip(sizes, sizes[1:], sizes[2:])),
        }
        for variant in VARIANTS:
            start = time.perf_counter()
            closed = probe_beta_eff(weights, biases, x, y, lr=1e-3, variant=variant)
            row[f"closed_{variant}_s"] = time.perf_counter() - start
            start = time.perf_counter()
            try:
                graph = line_graph(
                    weights, biases, x, y, lr=1e-3, variant=variant, max_arcs=max_arcs
                )
                explicit = beta_eff(graph)
            except ValueError as err:
                row[f"explicit_{variant}_s"] = None
                row["refused"] = str(err).split(";")[0]
                continue
            row[f"explicit_{variant}_s"] = time.perf_counter() - start
            row[f"rel_diff_{variant}"] = abs(closed - explicit) / abs(explicit)
        rows.append(row)
        if "refused" in row:
            break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per setting")
    parser.add_argument("--max-arcs", type=int, default=5_000_000, help="explicit graph limit")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor()}")
    print(f"probe {FEATURES}-{'-'.join(map(str, PROBE_HIDDEN))}-{CLASSES}, batch {BATCH}\n")
    results = {"steps": [], "closed_vs_explicit": []}
    for kind in ("cnn", "probe-only"):
        res = step_overhead(kind, args.repeats)
        results["steps"].append(res)
        ratios = ", ".join(f"{k} x{v:.3f}" for k, v in res["ratio_with_stats"].items())
        print(f"[step] {kind:10s} {res['step_ms_without_stats']:7.2f} ms without stats; {ratios}")
    print()
    for row in closed_vs_explicit(args.max_arcs):
        results["closed_vs_explicit"].append(row)
        parts = []
        for v in VARIANTS:
            explicit = row.get(f"explicit_{v}_s")
            if explicit is None:
                parts.append(f"{v}: closed {row[f'closed_{v}_s'] * 1e3:.2f} ms, explicit refused")
            else:
                speedup = explicit / row[f"closed_{v}_s"]
                parts.append(
                    f"{v}: closed {row[f'closed_{v}_s'] * 1e3:.2f} ms vs explicit "
                    f"{explicit * 1e3:.1f} ms (x{speedup:.0f}, rel diff {row[f'rel_diff_{v}']:.1e})"
                )
        print(f"[graph] sizes {row['sizes']} arcs {row['arcs']:,}: " + "; ".join(parts))
        if "refused" in row:
            print(f"        refused: {row['refused']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
