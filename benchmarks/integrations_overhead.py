"""What ncap's integrations cost: training with and without them, interleaved.

- Lightning and Hugging Face Trainer: the examples' training (examples/lightning_digits.py,
  examples/trainer_resnet.py) with the callback and without, alternated ``--pairs`` times; the
  figure is the median over pairs of (with - without) / without, in the process's CPU seconds
  (the machine is shared, so wall seconds are reported too, as a second opinion).
- Lightning, also: the callback's own hooks timed inside the runs with it (CPU seconds per
  training batch and per validation, against the CPU seconds of a step without it), for the
  example's tiny network with beta_eff read at each validation (the default) and every step
  (``log_every_n_steps=1``), and for a wider network on the same digits upsampled to 32 px (a step
  of ~0.1 s on one core: where a fixed cost per batch can be told from a share of the step).
- Optuna and Ray Tune: the seconds of one decision (``report`` + ``should_prune`` with
  NcapPruner against MedianPruner; one ``NcapStopper`` call) on a synthetic study of 20 trials x
  40 reports, which is what the pruner adds to each reported epoch of a trial.

Run: ``PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/integrations_overhead.py``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        fn()
    return time.perf_counter() - w, time.process_time() - c


def paired(run, pairs):
    run(False)  # warm-up (imports, first-call costs)
    rows = []
    for i in range(pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        got = {flag: _timed(lambda f=flag: run(f)) for flag in order}
        rows.append({"off": got[False], "on": got[True]})
    return {
        "pairs": rows,
        "cpu_overhead": statistics.median((r["on"][1] - r["off"][1]) / r["off"][1] for r in rows),
        "wall_overhead": statistics.median((r["on"][0] - r["off"][0]) / r["off"][0] for r in rows),
        "cpu_seconds_off": statistics.median(r["off"][1] for r in rows),
    }


class HookClock:
    """CPU seconds spent in NcapCallback's per-batch and per-validation hooks and in Lightning's
    training batch (``_TrainingEpochLoop.advance``: fetching the batch, the step, the batch hooks;
    validation runs after it), patched on the classes while the benchmark runs (one
    ``process_time`` pair per call)."""

    def __init__(self):
        from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

        from ncap.integrations.lightning import NcapCallback

        self.hooks = [
            (NcapCallback, "on_train_batch_end", "batch"),
            (NcapCallback, "on_validation_epoch_end", "validation"),
            (_TrainingEpochLoop, "advance", "step"),
        ]
        self.originals = []
        self.reset()

    def reset(self):
        self.seconds = {kind: 0.0 for _, _, kind in self.hooks}
        self.calls = {kind: 0 for _, _, kind in self.hooks}

    def __enter__(self):
        for cls, name, kind in self.hooks:
            original = getattr(cls, name)
            self.originals.append((cls, name, original))

            def timed(obj, *args, _original=original, _kind=kind, **kwargs):
                t0 = time.process_time()
                try:
                    return _original(obj, *args, **kwargs)
                finally:
                    self.seconds[_kind] += time.process_time() - t0
                    self.calls[_kind] += 1

            setattr(cls, name, timed)
        return self

    def __exit__(self, *exc):
        for cls, name, original in self.originals:
            setattr(cls, name, original)


def lightning_case(run, pairs):
    """``paired`` plus the callback's hook seconds per batch and per validation (medians over the
    runs with it) against the CPU seconds of a training batch in the runs without it."""
    clock = HookClock()
    runs = {True: [], False: []}

    def counted(on):
        clock.reset()
        out = run(on)
        runs[on].append((dict(clock.seconds), dict(clock.calls)))
        return out

    with clock:
        result = paired(counted, pairs)

    def per(on, kind):  # seconds per call, median over runs (the first run without: warm-up)
        return statistics.median(s[kind] / max(1, c[kind]) for s, c in runs[on][int(not on) :])

    batch, validation, step_off = per(True, "batch"), per(True, "validation"), per(False, "step")
    result |= {
        "steps": runs[False][-1][1]["step"],
        "cpu_seconds_per_step_off": step_off,
        "callback_cpu_seconds_per_batch": batch,
        "callback_cpu_seconds_per_validation": validation,
        "callback_batch_share_of_step": batch / step_off,
    }
    return result


def wider_run(epochs, n_train, on, beta_every=None):
    """A wider convolutional network (32-64-128 channels) on the digits upsampled to 32 px."""
    import lightning as L
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from ncap.integrations.lightning import NcapCallback

    light = _example("lightning_digits")

    class Wider(light.DigitsNet):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            )  # fmt: skip
            self.head = nn.Linear(128, 10)

    def upsampled(loader, shuffle):
        x, y = loader.dataset.tensors
        x = F.interpolate(x, size=32, mode="bilinear", align_corners=False)
        g = torch.Generator().manual_seed(0)
        return DataLoader(
            TensorDataset(x, y), batch_size=loader.batch_size, shuffle=shuffle, generator=g
        )

    L.seed_everything(0, verbose=False)
    train, val = light.loaders(n_train)
    cb = NcapCallback("features", num_classes=10, monitor="val_acc", log_every_n_steps=beta_every)
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[cb] if on else [],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Wider(), upsampled(train, True), upsampled(val, False))


def decision_seconds(n_trials=20, reports=40):
    import optuna

    from ncap.integrations.optuna import NcapPruner, report
    from ncap.integrations.ray import NcapStopper

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def curve(final, e):
        return final - (final - 0.1) * math.exp(-e / 3)

    finals = [0.5 + 0.45 * ((7 * i) % n_trials) / n_trials for i in range(n_trials)]
    out = {}
    for name, pruner in (
        ("optuna MedianPruner (trial.report + should_prune)", optuna.pruners.MedianPruner()),
        ("ncap NcapPruner (ncap report + should_prune)", NcapPruner(max_resource=reports)),
    ):
        study = optuna.create_study(direction="maximize", pruner=pruner)
        calls, spent = 0, 0.0
        for f in finals:
            trial = study.ask()
            for e in range(1, reports + 1):
                t0 = time.process_time()
                if isinstance(pruner, NcapPruner):
                    report(trial, curve(f, e), e, train_loss=1 - curve(f, e), parameters=10_000)
                else:
                    trial.report(curve(f, e), e)
                pruned = trial.should_prune()
                spent += time.process_time() - t0
                calls += 1
                if pruned:
                    break
            study.tell(trial, curve(f, e)) if not pruned else study.tell(
                trial, state=optuna.trial.TrialState.PRUNED
            )
        out[name] = spent / calls
    stopper = NcapStopper("val_acc", max_t=reports, loss_metric="loss")
    calls, spent, alive = 0, 0.0, set(range(n_trials))
    for e in range(1, reports + 1):
        for i in sorted(alive):
            t0 = time.process_time()
            stop = stopper(
                str(i), {"val_acc": curve(finals[i], e), "loss": 0.5, "training_iteration": e}
            )
            spent += time.process_time() - t0
            calls += 1
            if stop:
                alive.discard(i)
    out["ray NcapStopper (one call)"] = spent / calls
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "integrations-overhead.json")
    )
    parser.add_argument(
        "--only", default=None, help="comma-separated: lightning, transformers, decision"
    )
    args = parser.parse_args(argv)
    light, hf = _example("lightning_digits"), _example("trainer_resnet")
    cases = [
        (
            "lightning (examples/lightning_digits.py, 3 epochs, 1000 images, beta_eff at each "
            "validation: the default)",
            lambda: lightning_case(
                lambda on: light.main(epochs=3, n_train=1000, callback=on, quiet=True), args.pairs
            ),
        ),
        (
            "lightning (examples/lightning_digits.py, 3 epochs, 1000 images, beta_eff every "
            "step: log_every_n_steps=1)",
            lambda: lightning_case(
                lambda on: light.main(
                    epochs=3, n_train=1000, callback=on, quiet=True, beta_every=1
                ),
                args.pairs,
            ),
        ),
        (
            "lightning (wider net: conv 32-64-128 on digits upsampled to 32 px, 2 epochs, 1000 "
            "images, beta_eff at each validation)",
            lambda: lightning_case(lambda on: wider_run(2, 1000, on), max(3, args.pairs // 2)),
        ),
        (
            "transformers (examples/trainer_resnet.py, 1 epoch, 300 images, beta_eff every step)",
            lambda: paired(
                lambda on: hf.main(epochs=1, n_train=300, callback=on, quiet=True), args.pairs
            ),
        ),
        ("decision_cpu_seconds", decision_seconds),
    ]
    only = set(args.only.split(",")) if args.only else None
    report = {
        key: compute()
        for key, compute in cases
        if only is None or any(key.startswith(o) for o in only)
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    for k, v in report.items():
        if "cpu_overhead" in v:
            print(
                f"{k}: CPU +{100 * v['cpu_overhead']:.1f}% (wall +{100 * v['wall_overhead']:.1f}%), "
                f"{v['cpu_seconds_off']:.2f} CPU s without"
            )
            if "callback_cpu_seconds_per_batch" in v:
                print(
                    f"  callback {1000 * v['callback_cpu_seconds_per_batch']:.2f} ms CPU per "
                    f"batch = {100 * v['callback_batch_share_of_step']:.1f}% of a step "
                    f"({1000 * v['cpu_seconds_per_step_off']:.1f} ms per training batch without it, "
                    f"{v['steps']} batches), {1000 * v['callback_cpu_seconds_per_validation']:.1f} ms per "
                    "validation"
                )
        else:
            for name, s in v.items():
                print(f"{name}: {1000 * s:.2f} ms CPU per report")


if __name__ == "__main__":
    main()
