"""ncap's pruner in an Optuna study: small MLPs on scikit-learn's digits (bundled: no download).

Each trial trains an MLP (width and learning rate sampled) for ``--epochs`` epochs, reports the
validation accuracy, the epoch's training loss and the model's size through
``ncap.integrations.optuna.report`` and asks the pruner after every epoch.

    python examples/optuna_study.py --trials 12 --epochs 10
"""

from __future__ import annotations

import argparse

import optuna
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from ncap.integrations.optuna import NcapPruner, report


def data():
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32) / 16.0, torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return x[order[:1200]], y[order[:1200]], x[order[1200:]], y[order[1200:]]


def objective(trial: optuna.Trial, epochs: int) -> float:
    x_tr, y_tr, x_va, y_va = data()
    width = trial.suggest_int("width", 4, 128, log=True)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    torch.manual_seed(trial.number)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    size = sum(p.numel() for p in model.parameters())
    acc = 0.0
    for epoch in range(1, epochs + 1):
        losses = []
        for idx in torch.randperm(len(y_tr)).split(64):
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        with torch.no_grad():
            acc = float((model(x_va).argmax(1) == y_va).float().mean())
        report(trial, acc, epoch, train_loss=sum(losses) / len(losses), parameters=size)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return acc


def main(n_trials: int = 12, epochs: int = 10, quiet: bool = False) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        pruner=NcapPruner(max_resource=epochs),
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.optimize(lambda t: objective(t, epochs), n_trials=n_trials)
    if not quiet:
        for t in study.trials:
            p = t.user_attrs.get("ncap_prediction", {})
            print(
                f"trial {t.number}: {t.state.name:8s} after {t.last_step} epochs, value "
                f"{t.value if t.value is not None else float('nan'):.3f}, predicted final "
                f"{p.get('accuracy', float('nan')):.3f} {p.get('95')}"
            )
        print("best:", study.best_trial.number, study.best_trial.params, study.best_value)
    return study


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    main(args.trials, args.epochs)
