import numpy as np
import pytest
import torch
from conftest import random_batch, random_block

from ncap import VARIANTS, beta_eff, line_graph, probe_beta_eff
from ncap.capacitance.line_graph import node_offsets

DEPTH_SIZES = {
    3: [6, 5, 4, 3],
    4: [5, 6, 4, 5, 3],
    5: [4, 5, 3, 4, 5, 3],
    6: [4, 3, 5, 4, 3, 4, 2],
}


def autograd_weight_grads(weights, biases, x, y, activation):
    act = torch.relu if activation == "relu" else torch.tanh
    ws = [torch.tensor(w, requires_grad=True) for w in weights]
    h = torch.tensor(x)
    for a, (w, b) in enumerate(zip(ws, biases, strict=True)):
        h = h @ w.T + torch.tensor(b)
        if a < len(ws) - 1:
            h = act(h)
    torch.nn.functional.cross_entropy(h, torch.tensor(y)).backward()  # batch-mean loss
    return [w.grad.numpy() for w in ws]


@pytest.mark.parametrize("depth", sorted(DEPTH_SIZES))
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_edge_dynamics_identity_against_autograd(depth, activation):
    """sum_k P[(l,j,i),(l+1,k,j)] W^{l+1}_{kj} == -lr dLoss/dW^l_{ji} for every l < L."""
    sizes = DEPTH_SIZES[depth]
    weights, biases = random_block(sizes, seed=depth)
    x, y = random_batch(sizes[0], sizes[-1], 9, seed=depth)
    lr = 0.05
    P = line_graph(weights, biases, x, y, lr=lr, variant="signed", activation=activation)
    w_vec = np.concatenate([w.ravel() for w in weights])
    drift = P @ w_vec
    grads = autograd_weight_grads(weights, biases, x, y, activation)
    offsets = node_offsets(sizes)
    for a in range(len(weights) - 1):
        got = drift[offsets[a] : offsets[a + 1]].reshape(weights[a].shape)
        np.testing.assert_allclose(
            got, -lr * grads[a], rtol=1e-10, atol=1e-13 * np.abs(grads[a]).max()
        )
    # the last layer has no downstream arcs
    assert np.all(drift[offsets[-2] :] == 0)


def test_node_order_and_arc_structure():
    sizes = [3, 2, 4, 2]
    weights, biases = random_block(sizes)
    x, y = random_batch(3, 2, 5)
    P = line_graph(weights, biases, x, y, lr=1.0, variant="mean-abs", activation="tanh").tocoo()
    offsets = node_offsets(sizes)
    assert P.shape == (offsets[-1],) * 2 == (3 * 2 + 2 * 4 + 4 * 2,) * 2
    # every arc goes from layer a to a+1 and shares the neuron: (a, j, i) -> (a+1, k, j)
    layer_of = np.searchsorted(offsets, np.arange(offsets[-1]), side="right") - 1
    for r, c in zip(P.row, P.col, strict=True):
        a = layer_of[r]
        assert layer_of[c] == a + 1
        j_up = (r - offsets[a]) // sizes[a]
        j_down = (c - offsets[a + 1]) % sizes[a + 1]
        assert j_up == j_down
    assert P.nnz == sum(sizes[a] * sizes[a + 1] * sizes[a + 2] for a in range(len(sizes) - 2))


@pytest.mark.parametrize("depth", sorted(DEPTH_SIZES))
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_closed_forms_equal_explicit_line_graph(depth, activation, variant):
    sizes = DEPTH_SIZES[depth]
    weights, biases = random_block(sizes, seed=10 + depth)
    x, y = random_batch(sizes[0], sizes[-1], 13, seed=10 + depth)
    closed = probe_beta_eff(weights, biases, x, y, lr=0.01, variant=variant, activation=activation)
    explicit = beta_eff(
        line_graph(weights, biases, x, y, lr=0.01, variant=variant, activation=activation)
    )
    assert closed == pytest.approx(explicit, rel=1e-10)
    assert closed != 0.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_linear_in_lr_and_input_types(variant):
    sizes = DEPTH_SIZES[4]
    weights, biases = random_block(sizes, seed=5)
    x, y = random_batch(sizes[0], sizes[-1], 8, seed=5)
    base = probe_beta_eff(weights, biases, x, y, lr=1e-3, variant=variant)
    assert probe_beta_eff(weights, biases, x, y, lr=0.37, variant=variant) == pytest.approx(
        370 * base, rel=1e-12
    )
    as_torch = probe_beta_eff(
        [torch.tensor(w) for w in weights],
        [torch.tensor(b) for b in biases],
        torch.tensor(x),
        torch.tensor(y),
        lr=1e-3,
        variant=variant,
    )
    assert as_torch == pytest.approx(base, rel=1e-14)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_signed_variant_degenerate_with_three_layers(activation):
    """With softmax cross-entropy sum_k e^L_k = 0, so signed beta_eff of a 3-layer block is 0."""
    sizes = [6, 5, 4, 3]
    weights, biases = random_block(sizes, seed=7)
    x, y = random_batch(6, 3, 10, seed=7)
    signed = probe_beta_eff(weights, biases, x, y, lr=1.0, variant="signed", activation=activation)
    scale = abs(
        probe_beta_eff(weights, biases, x, y, lr=1.0, variant="mean-abs", activation=activation)
    )
    assert abs(signed) < 1e-12 * scale
    # ... and the last layer pair carries zero row sums in the explicit graph too
    P = line_graph(weights, biases, x, y, lr=1.0, variant="signed", activation=activation)
    offsets = node_offsets(sizes)
    row_sums = np.asarray(P.sum(axis=1)).ravel()
    assert np.abs(row_sums[offsets[1] : offsets[2]]).max() < 1e-14
    # a fourth layer lifts the degeneracy
    sizes4 = [6, 5, 4, 4, 3]
    w4, b4 = random_block(sizes4, seed=7)
    assert abs(probe_beta_eff(w4, b4, x, y, lr=1.0, variant="signed", activation=activation)) > 1e-6


def test_explicit_line_graph_refuses_above_limit():
    sizes = [20, 20, 20, 2]
    weights, biases = random_block(sizes)
    x, y = random_batch(20, 2, 4)
    with pytest.raises(ValueError, match="closed form"):
        line_graph(weights, biases, x, y, lr=1.0, max_arcs=1000)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variant": "abs"}, "unknown beta_eff variant"),
        ({"lr": 0.0}, "lr must be"),
        ({"lr": float("nan")}, "lr must be"),
    ],
)
def test_probe_beta_eff_argument_errors(kwargs, match):
    weights, biases = random_block(DEPTH_SIZES[3])
    x, y = random_batch(6, 3, 4)
    args = {"lr": 1e-3, "variant": "signed"} | kwargs
    with pytest.raises(ValueError, match=match):
        probe_beta_eff(weights, biases, x, y, **args)
