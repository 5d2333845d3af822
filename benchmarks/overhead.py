"""What ncap's bookkeeping costs under a given FinetuneConfig: three ratios per model.

1. step ratio: training steps (forward, backward, optimiser step; batch of the config) with the
   probe's per-step beta_eff bookkeeping on (the config's ``variants``) / the same steps with it
   off. The probe queues batches and adds ``QUEUE_BATCHES`` at a time, so a repeat times blocks of
   that many steps (one chunk of bookkeeping each); the settings are interleaved block by block
   (alternating which goes first), so machine load hits both alike; the median of the
   per-repeat ratios is printed with its range.
2. evaluation share: in ``--runs`` fine-tuning runs of the config (what ``ncap rank`` runs per
   candidate), seconds spent evaluating (validation loss/accuracy, beta_eff read-out, the
   fixed-batch measurement; not the queued batches' bookkeeping, which is training's) / seconds
   spent in training steps; the median run's share, with the range.
3. LogME share: the recommended score's LogME pass (once per candidate, before fine-tuning, on at
   most 1024 training images) / the same training seconds.

Models: two of the built-in zoo (their cached pretrained weights, or pretrained on first use) and
timm's resnet10t (random weights, 1 channel) at 32 px. Settings (:func:`settings`): ``default`` is
``FinetuneConfig()`` (signed and mean-abs per step; evaluations at 1/8, 1/4, 1/2 and the end of
the budget, the last on ``val_share`` x the budget's training images, the others on a fixed 1/8 of
those: :mod:`ncap.training.schedule`); ``v0.2`` is ncap 0.2's defaults (all three variants per
step, the whole validation split 8 times per epoch); ``fixed-batch`` is the default plus abs-mean
measured on a fixed batch of 256 training images at evaluation points (``--fixed-batch 256``).

Run:  OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/overhead.py [--repeats 20] [--runs 3]
                                                                    [--json out.json]
      PYTHONPATH=src python benchmarks/overhead.py --device cuda     # on a GPU (float32)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time

import torch
from torch import nn

import ncap.training.loop as loop
from ncap.capacitance.probe import NeuralCapacitanceProbe
from ncap.capacitance.statistics import QUEUE_BATCHES
from ncap.capacitance.variants import VARIANTS
from ncap.data.registry import load_dataset
from ncap.models.registry import create_backbone
from ncap.ranking.training_free import training_free_scores
from ncap.training.config import FinetuneConfig
from ncap.training.fixed_batch import FixedBatchBetaEff
from ncap.training.runtime import Runtime

MODELS = (("lenet", None), ("resnet-s", None), ("timm:resnet10t@random", 32))
SETTINGS = ("default", "v0.2", "fixed-batch")


def settings(n_train: int) -> dict[str, FinetuneConfig]:
    """The compared settings by name (module docstring) for ``n_train`` training images."""
    default = FinetuneConfig()
    eight_per_epoch = max(1, round(default.steps_per_epoch(n_train) / 8))  # ncap 0.2's default
    return {
        "default": default,
        "v0.2": dataclasses.replace(
            default, variants=VARIANTS, val_share=None, eval_every=eight_per_epoch
        ),
        "fixed-batch": dataclasses.replace(default, fixed_batch=256),
    }


def _data(n_train: int, n_val: int):
    try:
        return load_dataset("fashion-mnist-5-9", n_train=n_train, n_val=n_val, seed=0)
    except Exception:  # noqa: BLE001 - without Fashion-MNIST: scikit-learn's digits
        return load_dataset("digits", n_train=min(n_train, 1200), n_val=min(n_val, 400), seed=0)


def _front(name: str, size: int | None, data, config: FinetuneConfig):
    backbone = create_backbone(name)
    config = dataclasses.replace(config, input_size=size)
    spec = loop.model_input_spec(backbone.input_spec, data, config)
    front = loop.model_front(data, backbone.module, spec)
    return front, backbone.num_features


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_ratio(name, size, data, config, repeats: int, device: torch.device) -> dict:
    front, features = _front(name, size, data, config)
    probe = NeuralCapacitanceProbe(
        features, data.num_classes, hidden=config.probe_hidden, variants=config.variants
    )
    model = nn.Sequential(front, probe).to(device)
    optimizer = torch.optim.Adam(front.parameters(), lr=config.lr)
    x = data.x_train[: config.batch_size].to(device)
    y = data.y_train[: config.batch_size].to(device)

    def step(recording: bool) -> float:
        probe.recording = recording
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        _sync(device)
        return time.perf_counter() - start

    def block(recording: bool) -> float:
        """QUEUE_BATCHES steps: with recording, the bookkeeping of exactly one chunk."""
        probe.statistics.flush()  # an empty queue: the block adds (and pays for) one chunk
        return sum(step(recording) for _ in range(QUEUE_BATCHES))

    block(True), block(False)
    ratios, on, off = [], [], []
    for i in range(repeats):
        if i % 2:  # alternate which setting goes first
            b, a = block(True), block(False)
        else:
            a, b = block(False), block(True)
        off.append(a), on.append(b), ratios.append(b / a)
    return {
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "step_ms_off": 1e3 * statistics.median(off) / QUEUE_BATCHES,
        "step_ms_on": 1e3 * statistics.median(on) / QUEUE_BATCHES,
    }


def eval_share(name, size, data, config, device: torch.device, runs: int = 1) -> dict:
    """Evaluation and LogME seconds / training seconds of ``runs`` fine-tuning runs: the median
    run's shares, with the range of the evaluation share."""
    one = [_eval_share_once(name, size, data, config, device) for _ in range(runs)]
    share = [r["share"] for r in one]
    median = sorted(one, key=lambda r: r["share"])[(runs - 1) // 2]
    return median | {"share_range": [min(share), max(share)], "runs": runs}


def _eval_share_once(name, size, data, config, device: torch.device) -> dict:
    spent = {"eval": 0.0, "n": 0}
    original = loop.evaluate

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent["eval"] += time.perf_counter() - start
            spent["n"] += 1

    original_read = loop._read_beta

    def timed_read(probe):
        probe.statistics.flush()  # the queued batches' bookkeeping belongs to training
        start = time.perf_counter()
        try:
            return original_read(probe)
        finally:
            spent["eval"] += time.perf_counter() - start

    original_fixed = FixedBatchBetaEff.on_evaluate

    def timed_fixed(self, point):
        start = time.perf_counter()
        try:
            return original_fixed(self, point)
        finally:
            spent["eval"] += time.perf_counter() - start

    backbone = create_backbone(name)
    loop.evaluate, loop._read_beta = timed, timed_read
    FixedBatchBetaEff.on_evaluate = timed_fixed
    try:
        traj = loop.finetune(
            backbone.module,
            backbone.num_features,
            data,
            dataclasses.replace(config, input_size=size),
            input_spec=backbone.input_spec,
            runtime=Runtime(device=str(device), amp=False),
        )
    finally:
        loop.evaluate, loop._read_beta = original, original_read
        FixedBatchBetaEff.on_evaluate = original_fixed
    train = traj.seconds - spent["eval"]
    # the recommended score's LogME, once per candidate before fine-tuning (ncap.ranking)
    free = training_free_scores(
        create_backbone(name), data, dataclasses.replace(config, input_size=size),
        Runtime(device=str(device), amp=False),
    )  # fmt: skip
    return {
        "share": spent["eval"] / train,
        "evaluations": spent["n"],
        "seconds": traj.seconds,
        "logme_share": free["logme_seconds"] / train,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=20, help="blocks of QUEUE_BATCHES steps per setting"
    )
    parser.add_argument("--runs", type=int, default=3, help="fine-tuning runs per share")
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--settings", default="default,v0.2", help=f"from {','.join(SETTINGS)}")
    parser.add_argument("--json", default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (float32 on both)")
    parser.add_argument("--models", default=None, help="comma-separated subset of the models")
    args = parser.parse_args()
    device = torch.device(args.device)
    models = [m for m in MODELS if args.models is None or m[0] in args.models.split(",")]
    data = _data(args.n_train, args.n_val)
    names = args.settings.split(",")
    configs = settings(len(data.y_train))
    out = {
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "data": data.summary(),
        "results": [],
    }
    print(f"{data.summary()['name']}: {len(data.y_train)} train / {len(data.y_val)} val images, "
          f"{torch.get_num_threads()} thread(s), {device}")  # fmt: skip
    print(f"{'model':24s} {'settings':11s} {'step ratio (range)':>24s} "
          f"{'eval / train (range)':>22s} {'evaluations':>11s} {'LogME / train':>13s}")  # fmt: skip
    for name, size in models:
        for setting in names:
            config = configs[setting]
            s = step_ratio(name, size, data, config, args.repeats, device)
            e = eval_share(name, size, data, config, device, runs=args.runs)
            out["results"].append({"model": name, "input_size": size, "settings": setting} | s | e)
            print(f"{name:24s} {setting:11s} {s['ratio']:>9.3f} ({s['ratio_range'][0]:.2f}-"
                  f"{s['ratio_range'][1]:.2f}) {100 * e['share']:>9.1f}% ({100 * e['share_range'][0]:.1f}-"
                  f"{100 * e['share_range'][1]:.1f}) {e['evaluations']:>11d} "
                  f"{100 * e['logme_share']:>12.1f}%", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
