"""What ncap's integrations cost: training with and without them, interleaved.

- Lightning and Hugging Face Trainer: the examples' training (examples/lightning_digits.py,
  examples/trainer_resnet.py) with the callback and without, alternated ``--pairs`` times; the
  figure is the median over pairs of (with - without) / without, in the process's CPU seconds
  (the machine is shared, so wall seconds are reported too, as a second opinion).
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
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "integrations-overhead.json")
    )
    args = parser.parse_args(argv)
    light, hf = _example("lightning_digits"), _example("trainer_resnet")
    report = {
        "lightning (examples/lightning_digits.py, 2 epochs, 300 images, beta_eff every step)": paired(
            lambda on: light.main(epochs=2, n_train=300, callback=on, quiet=True), args.pairs
        ),
        "transformers (examples/trainer_resnet.py, 1 epoch, 300 images, beta_eff every step)": paired(
            lambda on: hf.main(epochs=1, n_train=300, callback=on, quiet=True), args.pairs
        ),
        "decision_cpu_seconds": decision_seconds(),
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    for k, v in report.items():
        if "cpu_overhead" in v:
            print(
                f"{k}: CPU +{100 * v['cpu_overhead']:.1f}% (wall +{100 * v['wall_overhead']:.1f}%), "
                f"{v['cpu_seconds_off']:.2f} CPU s without"
            )
        else:
            for name, s in v.items():
                print(f"{name}: {1000 * s:.2f} ms CPU per report")


if __name__ == "__main__":
    main()
