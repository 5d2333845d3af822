"""ncap.integrations.lightning: the callback on a real Lightning Trainer, tiny data, CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning")

from ncap import probe_beta_eff  # noqa: E402
from ncap.exceptions import ConfigError  # noqa: E402
from ncap.integrations.lightning import NcapCallback  # noqa: E402


class Tiny(L.LightningModule):
    def __init__(self, lr: float = 0.05, monitor: str = "val_acc") -> None:
        super().__init__()
        self.lr, self.monitor = lr, monitor
        self.backbone = nn.Sequential(nn.Linear(6, 12), nn.ReLU())
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log(self.monitor, (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 6, generator=g) + 2.0 * F.one_hot(y, 6).float()
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=16, shuffle=False), DataLoader(ds, batch_size=96)


def _trainer(cb, epochs=2):
    return L.Trainer(
        max_epochs=epochs,
        callbacks=[cb],
        log_every_n_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )


def _closed_form(cb, x, y, variant):
    probe = cb.tap.probe
    ws = [layer.weight.detach() for layer in probe.layers]
    bs = [layer.bias.detach() for layer in probe.layers]
    return probe_beta_eff(ws, bs, x, y, lr=0.05, variant=variant)


def _seen_features(model):
    seen = []
    model.backbone.register_forward_hook(
        lambda m, i, o: seen.append(o.detach().clone()) if m.training else None
    )
    return seen


def test_by_default_beta_eff_is_read_once_per_validation_over_the_interval():
    torch.manual_seed(0)
    model = Tiny()
    seen = _seen_features(model)
    cb = NcapCallback("backbone", num_classes=3, hidden=(10, 8))
    train, val = _data()
    trainer = _trainer(cb, epochs=2)
    trainer.fit(model, train, val)
    labels = [y for _, y in train]
    assert [h["step"] for h in cb.history] == [6, 12]  # one read per validation, none per step
    for epoch, record in enumerate(cb.history):
        # the interval's six batches as one: the statistics of batches add up to their union's
        x = torch.cat(seen[6 * epoch : 6 * epoch + 6])
        y = torch.cat(labels)
        for variant in ("signed", "mean-abs"):
            scale = 1e-6 * abs(record["beta_eff"]["mean-abs"])
            expected = _closed_form(cb, x, y, variant)
            assert record["beta_eff"][variant] == pytest.approx(expected, rel=1e-4, abs=scale)
        assert cb.curve.points[epoch]["beta_eff"] == record["beta_eff"]
    losses = [p["train_loss"] for p in cb.curve.points]
    assert all(isinstance(v, float) and v > 0 for v in losses) and losses[1] < losses[0]
    assert float(trainer.callback_metrics["ncap/beta_eff/mean-abs"]) == pytest.approx(
        cb.history[-1]["beta_eff"]["mean-abs"]
    )


def test_beta_eff_per_step_equals_the_closed_form_and_the_prediction_is_logged():
    torch.manual_seed(0)
    model = Tiny()
    seen = _seen_features(model)
    cb = NcapCallback("backbone", num_classes=3, hidden=(10, 8), log_every_n_steps=1)
    train, val = _data()
    trainer = _trainer(cb, epochs=2)
    trainer.fit(model, train, val)
    labels = [y for _ in range(2) for _, y in train]
    assert len(cb.history) == len(seen) == len(labels) == 12
    for record, x, y in zip(cb.history, seen, labels):
        for variant in ("signed", "mean-abs"):
            expected = _closed_form(cb, x, y, variant)
            # float32 statistics against the float64 closed form; signed beta_eff is ~0 here (the
            # softmax errors sum to zero), so its tolerance is relative to the mean-abs scale
            scale = 1e-6 * abs(record["beta_eff"]["mean-abs"])
            assert record["beta_eff"][variant] == pytest.approx(expected, rel=1e-4, abs=scale)
    assert [p["epoch"] for p in cb.curve.points] == [1.0, 2.0]
    assert cb.prediction is not None and cb.prediction.by == "last-observed"
    low, high = cb.prediction.interval(0.95)
    assert 0.0 <= low <= cb.prediction.accuracy <= high <= 1.0
    assert cb.prediction.budget_fraction == pytest.approx(1.0)
    logged = trainer.callback_metrics
    assert float(logged["ncap/predicted_final_acc"]) == pytest.approx(cb.prediction.accuracy)
    assert "ncap/beta_eff/signed" in logged


def test_a_function_names_the_feature_layer_and_a_missing_metric_is_refused():
    model = Tiny(monitor="accuracy")
    cb = NcapCallback(lambda m: m.backbone, num_classes=3, hidden=(10, 8))
    train, val = _data(48)
    with pytest.raises(ConfigError, match="monitor='val_acc'"):
        _trainer(cb, epochs=1).fit(model, train, val)
    with pytest.raises(ConfigError, match="no submodule 'nope'"):
        _trainer(NcapCallback("nope", num_classes=3), epochs=1).fit(Tiny(), train, val)
    with pytest.raises(ConfigError, match="log_every_n_steps must be a positive integer"):
        NcapCallback("backbone", num_classes=3, log_every_n_steps=0)


@pytest.mark.slow
def test_the_lightning_example_runs():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "examples" / "lightning_digits.py"
    spec = importlib.util.spec_from_file_location("lightning_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cb, _ = module.main(epochs=2, n_train=300, quiet=True)
    assert len(cb.curve.points) == 2 and cb.prediction is not None
