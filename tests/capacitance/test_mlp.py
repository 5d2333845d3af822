import numpy as np
import pytest
import torch
from conftest import random_batch, random_block

from ncap.capacitance.mlp import mlp_forward_backward


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_per_sample_errors_match_autograd(activation):
    sizes = [6, 5, 4, 3]
    weights, biases = random_block(sizes, seed=3)
    x, y = random_batch(6, 3, 11, seed=3)
    block = mlp_forward_backward(weights, biases, x, y, activation=activation)
    # autograd: the gradient of the *sum* of per-sample losses w.r.t. z^l is e^l per sample.
    act = torch.relu if activation == "relu" else torch.tanh
    h = torch.tensor(x, requires_grad=True)
    zs = []
    for a, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = h @ torch.tensor(w).T + torch.tensor(b)
        z.retain_grad()
        zs.append(z)
        h = act(z) if a < len(weights) - 1 else z
    loss = torch.nn.functional.cross_entropy(h, torch.tensor(y), reduction="sum")
    loss.backward()
    for a, z in enumerate(zs):
        np.testing.assert_allclose(block.es[a].numpy(), z.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(block.logits.numpy(), zs[-1].detach().numpy(), rtol=1e-13)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": "two"}, "at least 3"),
        ({"biases": "short"}, "bias per layer"),
        ({"weights": "unchained"}, "chain"),
        ({"x": "wrong-width"}, "expected \\(batch, 4\\)"),
        ({"y": "out-of-range"}, "labels must lie in \\[0, 2\\)"),
        ({"x": "empty"}, "empty"),
        ({"activation": "gelu"}, "unknown activation"),
    ],
)
def test_bad_blocks_are_refused(kwargs, match):
    weights, biases = random_block([4, 3, 3, 2])
    x, y = random_batch(4, 2, 5)
    args = {"weights": weights, "biases": biases, "x": x, "y": y, "activation": "relu"}
    replace = {
        "two": weights[:2],
        "short": biases[:2],
        "unchained": [weights[0], weights[0], weights[2]],
        "wrong-width": x[:, :3],
        "out-of-range": y + 2,
        "empty": x[:0],
        "gelu": "gelu",
    }
    for key, tag in kwargs.items():
        args[key] = replace[tag]
    if "empty" in kwargs.values():
        args["y"] = y[:0]
    with pytest.raises(ValueError, match=match):
        mlp_forward_backward(**args)
