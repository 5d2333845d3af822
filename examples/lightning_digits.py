"""ncap in a Lightning training: beta_eff per step and the predicted final accuracy per epoch.

A small convolutional network learns scikit-learn's digits (8x8 images, bundled: no download);
``NcapCallback`` reads ncap's probe on its ``features`` block and predicts the final validation
accuracy after ``max_epochs`` at every validation.

    python examples/lightning_digits.py --epochs 10
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ncap.integrations.lightning import NcapCallback


class DigitsNet(L.LightningModule):
    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.lr = lr
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.features(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def loaders(n_train: int = 1000, batch_size: int = 64):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=g)
    tr, va = order[:n_train], order[n_train:]
    train = DataLoader(
        TensorDataset(x[tr], y[tr]), batch_size=batch_size, shuffle=True, generator=g
    )
    return train, DataLoader(TensorDataset(x[va], y[va]), batch_size=256)


def main(
    epochs: int = 10,
    n_train: int = 1000,
    callback: bool = True,
    quiet: bool = False,
    beta_every: int | None = None,
):
    """``beta_every``: also read beta_eff every this many steps (default: at validations only)."""
    L.seed_everything(0, verbose=False)
    model = DigitsNet()
    ncap_cb = NcapCallback(
        "features", num_classes=10, monitor="val_acc", log_every_n_steps=beta_every
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[ncap_cb] if callback else [],
        log_every_n_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    train, val = loaders(n_train)
    trainer.fit(model, train, val)
    if callback and not quiet:
        for point in ncap_cb.curve.points:
            print(f"epoch {point['epoch']:.0f}: val_acc {point['val_accuracy']:.3f}")
        p = ncap_cb.prediction
        lo, hi = p.interval(0.95)
        print(
            f"predicted final val_acc after {epochs} epochs: {p.accuracy:.3f} [{lo:.3f}, {hi:.3f}] ({p.by})"
        )
        print(
            f"beta_eff read at {len(ncap_cb.history)} steps, last {ncap_cb.history[-1]['beta_eff']}"
        )
    return ncap_cb, trainer


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    main(parser.parse_args().epochs)
