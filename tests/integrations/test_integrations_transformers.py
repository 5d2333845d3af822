"""ncap.integrations.transformers: the callback on a real Trainer with a tiny ResNet built from a
config (no download), CPU."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from ncap import probe_beta_eff  # noqa: E402
from ncap.integrations.transformers import NcapTrainerCallback  # noqa: E402


class Blobs(torch.utils.data.Dataset):
    """3 classes of 8x8 one-channel images: a bright quadrant per class, plus noise."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.x = torch.randn(n, 1, 8, 8, generator=g) * 0.5
        for i, c in enumerate(self.y.tolist()):
            self.x[i, 0, (c // 2) * 4 : (c // 2) * 4 + 4, (c % 2) * 4 : (c % 2) * 4 + 4] += 1.5

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def tiny_resnet():
    config = transformers.ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3
    )
    torch.manual_seed(0)
    return transformers.ResNetForImageClassification(config)


def accuracy(pred):
    return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}


def make_trainer(model, callback, tmp_path, epochs=2):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        num_train_epochs=epochs,
        learning_rate=0.01,
        logging_steps=1,
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    return transformers.Trainer(
        model=model,
        args=args,
        train_dataset=Blobs(64),
        eval_dataset=Blobs(64, seed=1),
        compute_metrics=accuracy,
        callbacks=[callback],
    )


def test_beta_eff_per_step_equals_the_closed_form_and_the_prediction_is_logged(tmp_path):
    model = tiny_resnet()
    seen, labels = [], []
    model.resnet.pooler.register_forward_hook(
        lambda m, i, o: seen.append(o.detach().mean(dim=(2, 3))) if m.training else None
    )
    model.register_forward_pre_hook(
        lambda m, a, kw: labels.append(kw["labels"]) if m.training else None, with_kwargs=True
    )
    cb = NcapTrainerCallback("resnet.pooler", num_classes=3, hidden=(12, 8))
    trainer = make_trainer(model, cb, tmp_path)
    trainer.train()
    assert len(cb.history) == len(seen) == len(labels) == 8  # 4 steps per epoch, 2 epochs
    probe = cb.tap.probe
    ws = [layer.weight.detach() for layer in probe.layers]
    bs = [layer.bias.detach() for layer in probe.layers]
    for record, x, y in zip(cb.history, seen, labels):
        for variant in ("signed", "mean-abs"):
            expected = probe_beta_eff(ws, bs, x, y, lr=0.01, variant=variant)
            scale = 1e-6 * abs(record["beta_eff"]["mean-abs"])  # signed is ~0 (float32 noise)
            assert record["beta_eff"][variant] == pytest.approx(expected, rel=1e-4, abs=scale)
    assert [p["epoch"] for p in cb.curve.points] == [1.0, 2.0]
    assert cb.prediction is not None and cb.prediction.by == "last-observed"
    low, high = cb.prediction.interval(0.95)
    assert 0.0 <= low <= cb.prediction.accuracy <= high <= 1.0
    history = trainer.state.log_history
    evals = [h for h in history if "eval_accuracy" in h]
    assert evals[-1]["ncap/predicted_final_acc"] == pytest.approx(cb.prediction.accuracy)
    assert sum("ncap/beta_eff/mean-abs" in h for h in history) == 8


@pytest.mark.slow
def test_the_trainer_example_runs():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "examples" / "trainer_resnet.py"
    spec = importlib.util.spec_from_file_location("trainer_resnet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cb = module.main(epochs=2, quiet=True)
    assert len(cb.curve.points) == 2 and cb.prediction is not None
