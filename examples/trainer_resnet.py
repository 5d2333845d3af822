"""ncap in a Hugging Face Trainer run: a tiny ResNet built from a config (no download) learns
scikit-learn's digits; the callback logs beta_eff and the predicted final eval accuracy.

    python examples/trainer_resnet.py --epochs 5
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from sklearn.datasets import load_digits
from transformers import ResNetConfig, ResNetForImageClassification, Trainer, TrainingArguments

from ncap.integrations.transformers import NcapTrainerCallback


class Digits(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def datasets(n_train: int = 1000):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return Digits(x[order[:n_train]], y[order[:n_train]]), Digits(x[order[1400:]], y[order[1400:]])


def accuracy(pred):
    return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}


def main(epochs: int = 5, n_train: int = 1000, callback: bool = True, quiet: bool = False):
    config = ResNetConfig(
        num_channels=1, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10
    )
    torch.manual_seed(0)
    model = ResNetForImageClassification(config)
    ncap_cb = NcapTrainerCallback("resnet.pooler", num_classes=10)
    train, val = datasets(n_train)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            num_train_epochs=epochs,
            per_device_train_batch_size=64,
            learning_rate=3e-3,
            logging_steps=1,
            eval_strategy="epoch",
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=val,
            compute_metrics=accuracy,
            callbacks=[ncap_cb] if callback else [],
        )
        trainer.train()
    if callback and not quiet:
        for p in ncap_cb.curve.points:
            print(f"epoch {p['epoch']:.0f}: eval_accuracy {p['val_accuracy']:.3f}")
        pred = ncap_cb.prediction
        lo, hi = pred.interval(0.95)
        print(
            f"predicted final eval_accuracy after {epochs} epochs: {pred.accuracy:.3f} [{lo:.3f}, {hi:.3f}]"
        )
    return ncap_cb


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    main(parser.parse_args().epochs)
