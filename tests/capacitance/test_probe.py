import numpy as np
import pytest
import torch
from torch import nn

from ncap import VARIANTS, NeuralCapacitanceProbe, probe_beta_eff


def probe_weights(probe):
    return (
        [layer.weight.detach() for layer in probe.layers],
        [layer.bias.detach() for layer in probe.layers],
    )


def make_probe(**kwargs):
    args = {"in_features": 7, "num_classes": 3, "hidden": (6, 5, 4), "seed": 1, "lr": 0.01}
    return NeuralCapacitanceProbe(**(args | kwargs)).double()


def step(probe, features, labels, *, reduction="mean"):
    features = features.clone().requires_grad_(True)  # stands in for a trainable backbone
    loss = nn.functional.cross_entropy(probe(features), labels, reduction=reduction)
    loss.backward()
    return features.grad


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_probe_matches_functional_core_over_several_batches(activation, reduction):
    probe = make_probe(activation=activation, loss_reduction=reduction)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(n, 7, generator=g, dtype=torch.float64) for n in (5, 16, 1, 9)]
    ys = [torch.randint(0, 3, (len(x),), generator=g) for x in xs]
    for x, y in zip(xs, ys, strict=True):
        step(probe, x, y, reduction=reduction)
    assert probe.n_samples == 31
    weights, biases = probe_weights(probe)
    x_all, y_all = torch.cat(xs), torch.cat(ys)
    got = probe.beta_eff()
    for variant in VARIANTS:
        expected = probe_beta_eff(
            weights, biases, x_all, y_all, lr=0.01, variant=variant, activation=activation
        )
        assert got[variant] == pytest.approx(expected, rel=1e-10)
        assert probe.beta_eff(variant) == got[variant]


def test_no_grad_and_forward_only_passes_do_not_pollute():
    probe = make_probe()
    x = torch.randn(8, 7, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    step(probe, x, y)
    before = probe.beta_eff()
    with torch.no_grad():
        probe(torch.randn(50, 7, dtype=torch.float64))
    probe(torch.randn(20, 7, dtype=torch.float64, requires_grad=True))  # forward, never backward
    probe(torch.randn(20, 7, dtype=torch.float64))  # input without grad: nothing to record
    assert probe.n_samples == 8
    assert probe.beta_eff() == before


def test_reset_and_empty_interval():
    probe = make_probe()
    with pytest.raises(ValueError, match="no samples accumulated"):
        probe.beta_eff()
    step(probe, torch.randn(4, 7, dtype=torch.float64), torch.tensor([0, 1, 2, 0]))
    assert probe.n_samples == 4
    probe.reset_statistics()
    assert probe.n_samples == 0
    with pytest.raises(ValueError, match="no samples accumulated"):
        probe.beta_eff("signed")


def test_training_maths_unchanged_by_recording():
    x = torch.randn(6, 7, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    recording, silent = make_probe(), make_probe()
    silent.recording = False
    assert torch.equal(step(recording, x, y), step(silent, x, y))
    assert recording.n_samples == 6 and silent.n_samples == 0


def test_frozen_seeded_and_validated():
    a, b, c = make_probe(seed=3), make_probe(seed=3), make_probe(seed=4)
    assert all(not p.requires_grad for p in a.parameters())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    assert all(p.requires_grad for p in make_probe(freeze=False).parameters())
    with pytest.raises(ValueError, match="at least 3"):
        NeuralCapacitanceProbe(7, 3, hidden=(5,))
    with pytest.raises(ValueError, match="features of shape \\(batch, 7\\)"):
        a(torch.randn(2, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown beta_eff variant"):
        NeuralCapacitanceProbe(7, 3, variants=("signed", "bogus"))
    with pytest.raises(ValueError, match="abs-mean variant would keep"):
        NeuralCapacitanceProbe(4096, 10, hidden=(4096, 4096))
    only_cheap = NeuralCapacitanceProbe(
        4096, 10, hidden=(2048, 1024), variants=("signed", "mean-abs")
    )
    assert only_cheap.variants == ("signed", "mean-abs")


def test_float32_probe_agrees_with_float64_core():
    probe = NeuralCapacitanceProbe(32, 4, hidden=(24, 16), seed=0, lr=1e-3)
    x = torch.randn(64, 32)
    y = torch.randint(0, 4, (64,))
    step(probe, x, y)
    weights, biases = probe_weights(probe)
    for variant in ("mean-abs", "abs-mean"):
        expected = probe_beta_eff(weights, biases, x, y, lr=1e-3, variant=variant)
        assert probe.beta_eff(variant) == pytest.approx(expected, rel=1e-5)


def test_beta_eff_vanishes_at_convergence():
    """Backbone + frozen probe trained to near-zero loss on separable data: beta_eff -> 0."""
    torch.manual_seed(0)
    g = np.random.default_rng(0)
    centres = g.normal(scale=4.0, size=(3, 5))
    labels = np.repeat(np.arange(3), 20)
    x = torch.tensor(centres[labels] + g.normal(scale=0.3, size=(60, 5)), dtype=torch.float32)
    y = torch.tensor(labels)
    backbone = nn.Sequential(nn.Linear(5, 32), nn.Tanh(), nn.Linear(32, 32))
    probe = NeuralCapacitanceProbe(32, 3, hidden=(32, 32, 32), seed=0, lr=1e-3)
    optimizer = torch.optim.Adam(backbone.parameters(), lr=1e-2)
    history = {v: [] for v in VARIANTS}
    for _ in range(100):  # intervals of 10 full-batch steps
        for _ in range(10):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(probe(backbone(x)), y)
            loss.backward()
            optimizer.step()
        for v, value in probe.beta_eff().items():
            history[v].append(abs(value))
        probe.reset_statistics()
    assert loss.item() < 1e-4
    for v in VARIANTS:
        assert history[v][-1] < 0.01 * max(history[v]), (v, history[v][-1], max(history[v]))


def test_queued_batches_survive_training_steps_and_match_float64_core():
    """The statistics queue each batch's tensors (no copy) and add QUEUE_BATCHES at a time in
    float32: after 21 optimiser steps of a real backbone (two full chunks and a partial one,
    read at the end), every variant agrees with the float64 closed form on the union of the
    features the backbone produced."""
    from ncap.capacitance.statistics import QUEUE_BATCHES

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(10, 24), nn.ReLU(), nn.Linear(24, 24))
    probe = NeuralCapacitanceProbe(24, 3, hidden=(20, 16, 12), seed=0, lr=1e-2, variants=VARIANTS)
    optimizer = torch.optim.Adam(backbone.parameters(), lr=1e-2)
    seen_x, seen_y = [], []
    steps = 2 * QUEUE_BATCHES + 5
    for _ in range(steps):
        x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
        optimizer.zero_grad()
        features = backbone(x)
        seen_x.append(features.detach().clone().double())
        seen_y.append(y)
        nn.functional.cross_entropy(probe(features), y).backward()
        optimizer.step()
    assert probe.n_samples == 16 * steps
    weights, biases = probe_weights(probe)
    for variant in VARIANTS:
        expected = probe_beta_eff(
            weights, biases, torch.cat(seen_x), torch.cat(seen_y), lr=1e-2, variant=variant
        )
        assert probe.beta_eff(variant) == pytest.approx(expected, rel=1e-5), variant


def test_statistics_state_keeps_the_queue_so_a_continued_run_is_bit_for_bit(tmp_path):
    """state_dict() mid-chunk (no flush): saved with torch.save, loaded with weights_only=True
    into a fresh accumulator, the rest of the batches give exactly the uninterrupted sums."""
    from ncap.capacitance.statistics import QUEUE_BATCHES

    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(QUEUE_BATCHES + 5):
        x = torch.randn(16, 7, generator=g)
        batches.append((x, torch.randint(0, 3, (16,), generator=g)))

    def probe():
        args = {"in_features": 7, "num_classes": 3, "hidden": (6, 5, 4), "seed": 1, "lr": 0.01}
        return NeuralCapacitanceProbe(**args, variants=VARIANTS)

    straight, first = probe(), probe()
    for x, y in batches:
        step(straight, x, y)
    cut = QUEUE_BATCHES + 2  # one chunk added, two batches queued
    for x, y in batches[:cut]:
        step(first, x, y)
    assert len(first.statistics._queue) == 2
    torch.save(first.statistics.state_dict(), tmp_path / "s.pt")
    continued = probe()
    continued.statistics.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert continued.n_samples == 16 * cut
    for x, y in batches[cut:]:
        step(continued, x, y)
    assert continued.beta_eff() == straight.beta_eff()
