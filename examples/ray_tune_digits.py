"""ncap in a Ray Tune run: small MLPs on scikit-learn's digits (bundled: no download), stopped by
ncap's rule as a Tune scheduler (``NcapScheduler``, the default here) or as a stopper
(``NcapStopper``, ``--stopper``).

python examples/ray_tune_digits.py --samples 8 --epochs 10
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from ray import tune
from sklearn.datasets import load_digits
from torch import nn

from ncap.integrations.ray import NcapScheduler, NcapStopper


def train(config):
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32) / 16.0, torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    tr, va = order[:1200], order[1200:]
    torch.manual_seed(0)
    width = config["width"]
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    size = sum(p.numel() for p in model.parameters())
    for _ in range(config["epochs"]):
        losses = []
        for idx in tr[torch.randperm(len(tr))].split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        with torch.no_grad():
            acc = float((model(x[va]).argmax(1) == y[va]).float().mean())
        tune.report({"val_acc": acc, "train_loss": sum(losses) / len(losses), "parameters": size})


def main(
    samples: int = 8,
    epochs: int = 10,
    quiet: bool = False,
    storage: str | None = None,
    stopper: bool = False,
    confidence: float = 0.95,
):
    """Run ``samples`` trials with ncap's scheduler (or, ``stopper=True``, its stopper); Tune's
    files go to ``storage`` (default: a temporary folder). Returns the results and the scheduler
    or stopper (its ``predictions`` and ``decisions``)."""
    import tempfile

    import ray

    storage = storage or tempfile.mkdtemp(prefix="ncap-tune-")

    if not ray.is_initialized():
        # a new local instance, even when another Ray cluster runs on this machine
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    options = {
        "loss_metric": "train_loss",
        "parameters_metric": "parameters",
        "confidence": confidence,
    }
    if stopper:
        rule, scheduler = NcapStopper("val_acc", max_t=epochs, **options), None
    else:
        rule = scheduler = NcapScheduler(max_t=epochs, **options)  # metric from TuneConfig
    tuner = tune.Tuner(
        tune.with_resources(train, {"cpu": 1}),
        param_space={
            "width": tune.choice([4, 16, 64]),
            "lr": tune.loguniform(1e-4, 1e-1),
            "epochs": epochs,
        },
        tune_config=tune.TuneConfig(
            num_samples=samples, metric="val_acc", mode="max", scheduler=scheduler
        ),
        run_config=tune.RunConfig(stop=rule if stopper else None, verbose=0, storage_path=storage),
    )
    results = tuner.fit()
    if not quiet:
        for r in results:
            p = rule.predictions.get(r.metrics["trial_id"])
            print(
                f"{r.config['width']:3d} units, lr {r.config['lr']:.4f}: {r.metrics['training_iteration']} "
                f"epochs, val_acc {r.metrics['val_acc']:.3f}, predicted final "
                f"{p.accuracy if p else float('nan'):.3f}"
            )
    return results, rule


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--stopper", action="store_true", help="NcapStopper, not the scheduler")
    parser.add_argument("--confidence", type=float, default=0.95, help="0.95 or 0.68")
    args = parser.parse_args()
    main(args.samples, args.epochs, stopper=args.stopper, confidence=args.confidence)
