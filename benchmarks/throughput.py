"""Images per second of ncap's fine-tuning under the probe against a plain PyTorch loop.

For each model and input size, two runs of ``--steps`` training steps on the same data, batch size
and optimiser (Adam, lr 1e-3) from the same pretrained weights:

- ``ncap``: :func:`ncap.training.loop.finetune` as ``ncap rank`` runs a candidate: the input adapter
  (grey 28-px Fashion-MNIST expanded to RGB, resized to the size, normalised per batch on the
  device), the frozen probe with its per-step beta_eff bookkeeping, the divergence guard, and its
  evaluations (at 1/8, 1/4, 1/2 and the end, on a small validation split of ``--n-val`` images).
  Its training time is the run's less the evaluations (timed around them, as
  benchmarks/overhead.py does); the run's whole time is printed too;
- ``plain``: what a user writes: a ``DataLoader`` over the same tensors, the same per-batch resize
  and normalisation (:func:`ncap.data.inputs.adapt_batch`), ``backbone -> nn.Linear`` head,
  cross-entropy, ``backward``, ``Adam.step``; no evaluation.

The two alternate (which goes first alternates too) ``--repeats`` times, so machine load hits both
alike; printed: each one's training images/s (median), the median of the per-repeat time ratios
ncap training / plain (goal <= 1.10 on the CPU) with its range, the same with ncap's evaluations, and ``prep``: the share of the plain loop's time spent
preparing batches (the resize and normalisation alone, timed in a separate pass over the same
batches). CUDA options, each a flag: ``--amp`` (bfloat16 autocast of the backbone: ncap's
``Runtime(amp=True)``), ``--channels-last`` (both models), ``--pin-memory`` and ``--non-blocking``
(the plain loop's loader and copies; ncap pins and copies non-blocking on CUDA always).

Run:  OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/throughput.py [--sizes 64,128,224]
          [--steps 8] [--repeats 2] [--models tv:mobilenet_v2@IMAGENET1K_V1,...] [--markdown]
      PYTHONPATH=src python benchmarks/throughput.py --device cuda --amp --channels-last ...
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import time

import torch
from torch import nn

import ncap.training.loop as loop
from ncap.data.inputs import adapt_batch
from ncap.data.registry import load_dataset
from ncap.models.registry import create_backbone
from ncap.training.config import FinetuneConfig
from ncap.training.runtime import Runtime, resolve_device

MODELS = ("tv:mobilenet_v2@IMAGENET1K_V1", "timm:tf_efficientnet_lite0")
SIZES = (64, 128, 224)


@dataclasses.dataclass(frozen=True)
class Options:
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    pin_memory: bool = False
    non_blocking: bool = False
    batch_size: int = 32
    steps: int = 8


def load_data(n_train: int, n_val: int):
    try:
        return load_dataset("fashion-mnist-5-9", n_train=n_train, n_val=n_val, seed=0)
    except Exception:  # noqa: BLE001 - without Fashion-MNIST: scikit-learn's digits
        return load_dataset("digits", n_train=n_train, n_val=n_val, seed=0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _backbone(name: str, opts: Options):
    torch.manual_seed(0)
    backbone = create_backbone(name)
    if opts.channels_last:
        backbone.module = backbone.module.to(memory_format=torch.channels_last)
    return backbone


def run_ncap(name: str, size: int, data, opts: Options) -> tuple[float, float]:
    """Seconds of one ncap fine-tuning run of ``opts.steps`` steps, and of its training alone
    (the run less its evaluations: validation passes and beta_eff read-outs; the probe's queued
    per-step bookkeeping stays in training, as in benchmarks/overhead.py)."""
    backbone = _backbone(name, opts)
    config = FinetuneConfig(steps=opts.steps, batch_size=opts.batch_size, input_size=size)
    device = torch.device(opts.device)
    spent = [0.0]
    original_eval, original_read = loop.evaluate, loop._read_beta

    def timed_eval(*args, **kwargs):
        begin = time.perf_counter()
        try:
            return original_eval(*args, **kwargs)
        finally:
            _sync(device)
            spent[0] += time.perf_counter() - begin

    def timed_read(probe):
        probe.statistics.flush()  # the queued batches' bookkeeping belongs to training
        _sync(device)
        begin = time.perf_counter()
        try:
            return original_read(probe)
        finally:
            spent[0] += time.perf_counter() - begin

    loop.evaluate, loop._read_beta = timed_eval, timed_read
    try:
        _sync(device)
        start = time.perf_counter()
        loop.finetune(
            backbone.module,
            backbone.num_features,
            data,
            config,
            input_spec=backbone.input_spec,
            runtime=Runtime(device=opts.device, amp=opts.amp, workers=0),
        )
        _sync(device)
        total = time.perf_counter() - start
    finally:
        loop.evaluate, loop._read_beta = original_eval, original_read
    return total, total - spent[0]


def _plain_batches(data, opts: Options):
    generator = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data.x_train, data.y_train),
        batch_size=opts.batch_size,
        shuffle=True,
        generator=generator,
        drop_last=True,
        pin_memory=opts.pin_memory and opts.device.startswith("cuda"),
    )
    while True:
        yield from loader


def run_plain(name: str, size: int, data, opts: Options) -> tuple[float, float]:
    """Seconds of ``opts.steps`` plain training steps, and of preparing those batches alone."""
    backbone = _backbone(name, opts)
    device = torch.device(opts.device)
    spec = backbone.input_spec.with_size(size)
    head = nn.Linear(backbone.num_features, data.num_classes)
    model = nn.Sequential(backbone.module, head).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    amp = opts.amp and device.type == "cuda"

    def prepare(x):
        x = adapt_batch(x, data_mean=data.mean, data_std=data.std, spec=spec)
        return x.contiguous(memory_format=torch.channels_last) if opts.channels_last else x

    batches = _plain_batches(data, opts)
    _sync(device)
    start = time.perf_counter()
    for _ in range(opts.steps):
        x, y = next(batches)
        x = x.to(device, non_blocking=opts.non_blocking)
        y = y.to(device, non_blocking=opts.non_blocking)
        optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with autocast:
            logits = model(prepare(x))
        nn.functional.cross_entropy(logits.float(), y).backward()
        optimizer.step()
    _sync(device)
    seconds = time.perf_counter() - start
    batches = _plain_batches(data, opts)
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(opts.steps):
            x, _ = next(batches)
            prepare(x.to(device, non_blocking=opts.non_blocking))
    _sync(device)
    return seconds, time.perf_counter() - start


def measure(name: str, size: int, data, opts: Options, repeats: int) -> dict:
    """``repeats`` interleaved pairs (the order alternates); medians and the ratios' ranges."""
    run_plain(name, size, data, dataclasses.replace(opts, steps=2))  # warm-up (allocations)
    ncap_s, train_s, plain_s, prep_s = [], [], [], []
    for i in range(repeats):
        if i % 2:
            (p, prep), (n, t) = run_plain(name, size, data, opts), run_ncap(name, size, data, opts)
        else:
            (n, t), (p, prep) = run_ncap(name, size, data, opts), run_plain(name, size, data, opts)
        ncap_s.append(n), train_s.append(t), plain_s.append(p), prep_s.append(prep)
    images = opts.steps * opts.batch_size
    train_ratios = [t / p for t, p in zip(train_s, plain_s)]
    ratios = [n / p for n, p in zip(ncap_s, plain_s)]
    return {
        "model": name,
        "size": size,
        "ncap_train_images_per_s": images / statistics.median(train_s),
        "plain_images_per_s": images / statistics.median(plain_s),
        "train_ratio": statistics.median(train_ratios),
        "train_ratio_range": [min(train_ratios), max(train_ratios)],
        "ratio_with_evaluations": statistics.median(ratios),
        "prep_share": statistics.median(p / t for p, t in zip(prep_s, plain_s)),
        "ncap_seconds": ncap_s,
        "ncap_train_seconds": train_s,
        "plain_seconds": plain_s,
        "prep_seconds": prep_s,
    }


def markdown(rows: list[dict], opts: Options, load: tuple[float, float]) -> str:
    lines = [
        f"device {opts.device}, batch {opts.batch_size}, {opts.steps} steps per run, amp "
        f"{opts.amp}, channels_last {opts.channels_last}, pin_memory {opts.pin_memory}, "
        f"non_blocking {opts.non_blocking}; load average {load[0]:.1f} before, {load[1]:.1f} after",
        "",
        "| model | px | ncap img/s (training) | plain img/s | ncap / plain time: training "
        "(range) | with ncap's 4 evaluations | prep share of plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        low, high = r["train_ratio_range"]
        lines.append(
            f"| {r['model']} | {r['size']} | {r['ncap_train_images_per_s']:.1f} | "
            f"{r['plain_images_per_s']:.1f} | {r['train_ratio']:.2f} ({low:.2f}-{high:.2f}) | "
            f"{r['ratio_with_evaluations']:.2f} | {100 * r['prep_share']:.0f}% |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--n-val", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--pin-memory", action="store_true")
    parser.add_argument("--non-blocking", action="store_true")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    args.device = str(resolve_device(args.device))  # a clear error without a GPU
    if args.device == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    opts = Options(
        device=args.device,
        amp=args.amp,
        channels_last=args.channels_last,
        pin_memory=args.pin_memory,
        non_blocking=args.non_blocking,
        batch_size=args.batch_size,
        steps=args.steps,
    )
    data = load_data(n_train=args.steps * args.batch_size, n_val=args.n_val)
    before = os.getloadavg()[0]
    rows = []
    for name in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            rows.append(measure(name, size, data, opts, args.repeats))
            print(json.dumps({k: v for k, v in rows[-1].items() if "seconds" not in k}), flush=True)
    print(markdown(rows, opts, (before, os.getloadavg()[0])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"options": dataclasses.asdict(opts), "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
