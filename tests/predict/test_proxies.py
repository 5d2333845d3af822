import copy

import numpy as np
import pytest
import torch
from torch import nn

from ncap.predict.proxies import (
    PROXIES,
    compute_proxies,
    fisher,
    fisher_channel,
    flops,
    grad_norm,
    grasp,
    grasp_hessian_gradient,
    jacob_cov,
    naswot,
    naswot_kernel,
    param_count,
    snip,
    synflow,
)

DTYPE = torch.float64


def tiny_cnn(*, inplace=False, classes=5):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=inplace),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(inplace=inplace),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, classes),
    ).to(DTYPE)


def tiny_mlp(act=nn.ReLU, *, d_in=12, hidden=7, classes=4):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(d_in, hidden),
        act(),
        nn.Linear(hidden, hidden),
        act(),
        nn.Linear(hidden, classes),
    ).to(DTYPE)


def batch(shape=(6, 3, 8, 8), classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=DTYPE)
    y = torch.randint(0, classes, (shape[0],), generator=g)
    return x, y


def numpy_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------ closed forms, linear model


@pytest.fixture
def linear_case():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).to(DTYPE)
    x, y = batch((5, 3, 2, 2), classes=4, seed=1)
    X = x.reshape(5, -1).numpy()
    W = model[1].weight.detach().numpy()
    b = model[1].bias.detach().numpy()
    logits = X @ W.T + b
    delta = numpy_softmax(logits) - np.eye(4)[y.numpy()]  # d(sum CE)/d logits
    return model, x, y, X, W, logits, delta


def test_grad_norm_and_snip_closed_form(linear_case):
    model, x, y, X, W, _, delta = linear_case
    G = delta.T @ X / X.shape[0]  # dL/dW for the mean cross-entropy
    assert grad_norm(model, x, y) == pytest.approx(np.linalg.norm(G), rel=1e-12)
    assert snip(model, x, y) == pytest.approx(np.abs(W * G).sum(), rel=1e-12)


def test_fisher_closed_form(linear_case):
    model, x, y, X, _, logits, delta = linear_case
    batch_size, fan_in = X.shape
    s = logits * delta / batch_size  # s_{b,c} = z_{b,c} dL_mean/dz_{b,c}: the batch-mean loss
    published = fan_in * 0.5 * (s**2).mean(axis=0).sum()  # the layer weighted by its fan-in (12)
    assert fisher(model, x, y) == pytest.approx(published, rel=1e-12)
    s_sum = logits * delta  # the variant: summed loss, no fan-in weights
    assert fisher_channel(model, x, y) == pytest.approx(
        0.5 * (s_sum**2).mean(axis=0).sum(), rel=1e-12
    )


def _fisher_as_published(model, x, y):
    """The published measure computed the way its authors' code does, independently of ncap.

    An identity after every Conv2d/Linear; a backward hook on it takes the activation times its
    gradient (batch-mean loss), sums over spatial positions, squares, averages over the batch and
    halves: one saliency per output channel. Each channel's value is then written into every
    weight of that channel (a tensor shaped weight.shape[1:]) and everything is summed.
    """
    net = copy.deepcopy(model).train()
    per_layer = []
    handles = []
    for layer in [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]:
        dummy = nn.Identity()
        state = {}

        def forward(inp, layer=layer, dummy=dummy, state=state):
            out = (
                layer._conv_forward(inp, layer.weight, layer.bias)
                if isinstance(layer, nn.Conv2d)
                else nn.functional.linear(inp, layer.weight, layer.bias)
            )
            state["act"] = dummy(out)
            return state["act"]

        def hook(module, grad_input, grad_output, layer=layer, state=state):
            act, grad = state["act"].detach(), grad_output[0].detach()
            g = (act * grad).sum(dim=tuple(range(2, act.ndim))) if act.ndim > 2 else act * grad
            per_layer.append((g.pow(2).mean(0).mul(0.5), layer.weight.shape[1:]))

        layer.forward = forward
        handles.append(dummy.register_full_backward_hook(hook))
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    total = 0.0
    for channel_values, shape in per_layer:
        spread = torch.stack(
            [torch.full(tuple(shape), float(v), dtype=DTYPE) for v in channel_values]
        )
        total += float(spread.sum())
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fisher_equals_the_published_measure_on_a_cnn(seed):
    torch.manual_seed(seed)
    model = tiny_cnn()
    x, y = batch(seed=seed)
    assert fisher(model, x, y) == pytest.approx(_fisher_as_published(model, x, y), rel=1e-10)
    # the variant ranks differently: it drops the fan-in weights (27 and 36 for the two convs)
    assert fisher_channel(model, x, y) != pytest.approx(fisher(model, x, y) * 36, rel=1e-3)


def test_fisher_unaffected_by_inplace_relu():
    x, y = batch()
    a = tiny_cnn(inplace=False)
    b = tiny_cnn(inplace=True)
    b.load_state_dict(a.state_dict())
    assert fisher(a, x, y) == pytest.approx(fisher(b, x, y), rel=1e-12)
    assert fisher(a, x, y) > 0


# ------------------------------------------------------------------ grasp vs finite differences


def _flat_weight_grad(model, x, y, theta):
    net = copy.deepcopy(model)
    net.train()
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        offset = 0
        for w in weights:
            w.copy_(theta[offset : offset + w.numel()].view_as(w))
            offset += w.numel()
    loss = nn.functional.cross_entropy(net(x), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, weights)])


@pytest.mark.parametrize("make", [tiny_cnn, lambda: tiny_mlp(nn.Tanh, d_in=192, classes=5)])
def test_grasp_matches_finite_difference_hvp(make):
    model = make()
    x, y = batch(classes=5)
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    theta = torch.cat([w.detach().reshape(-1) for w in weights])
    g = _flat_weight_grad(model, x, y, theta)
    eps = 1e-5
    hg_fd = (
        _flat_weight_grad(model, x, y, theta + eps * g)
        - _flat_weight_grad(model, x, y, theta - eps * g)
    ) / (2 * eps)
    hg = torch.cat([h.reshape(-1) for h in grasp_hessian_gradient(model, x, y)])
    assert torch.linalg.norm(hg - hg_fd) <= 1e-5 * torch.linalg.norm(hg_fd)
    expected = -(theta @ hg_fd).item()
    assert grasp(model, x, y) == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ synflow


def test_synflow_two_layer_linear_is_twice_r():
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 6, bias=False), nn.Linear(6, 3, bias=False)
    ).to(torch.float32)  # synflow works in float64 internally
    x, y = batch((4, 3, 2, 2), classes=3)
    W1 = np.abs(model[1].weight.detach().double().numpy())
    W2 = np.abs(model[2].weight.detach().double().numpy())
    R = np.ones(3) @ W2 @ W1 @ np.ones(12)
    assert synflow(model, x.float(), y) == pytest.approx(2 * R, rel=1e-12)


def test_synflow_uses_running_stats_and_one_sample():
    model = tiny_cnn()
    x, y = batch()
    score = synflow(model, x, y)
    assert score > 0
    assert synflow(model, x[:1] * 0 + 3.0, y[:1]) == score  # only the shape of x matters


# ------------------------------------------------------------------ jacob_cov


def test_jacob_cov_matches_numpy_formula():
    model = tiny_cnn()
    x, y = batch()
    net = copy.deepcopy(model).train()
    full = torch.autograd.functional.jacobian(net, x)  # (B, K, B, C, H, W)
    J = full.sum(dim=(0, 1)).reshape(x.shape[0], -1).numpy()
    J_c = J - J.mean(axis=1, keepdims=True)
    J_n = J_c / np.sqrt((J_c**2).sum(axis=1, keepdims=True))
    v = np.linalg.eigvals(J_n @ J_n.T).real
    expected = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    assert jacob_cov(model, x, y) == pytest.approx(expected, rel=1e-8)


# ------------------------------------------------------------------ naswot


def hand_relu_net():
    """Identity -> ReLU (4 units), then a fixed 4->3 layer -> ReLU (3 units), then logits."""
    first = nn.Linear(4, 4, bias=False)
    second = nn.Linear(4, 3)
    head = nn.Linear(3, 2)
    with torch.no_grad():
        first.weight.copy_(torch.eye(4))
        second.weight.copy_(
            torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0], [1.0, 0.0, 0.0, 1.0]])
        )
        second.bias.copy_(torch.tensor([-0.5, 0.25, -1.5]))
    model = nn.Sequential(nn.Flatten(), first, nn.ReLU(), second, nn.ReLU(inplace=True), head)
    return model.to(DTYPE)


def test_naswot_kernel_hand_built():
    model = hand_relu_net()
    x = torch.tensor(
        [[1.0, 1.0, -1.0, 2.0], [-1.0, 2.0, 3.0, -1.0], [2.0, -1.0, -2.0, 1.0], [-1, -1, 1, 1]],
        dtype=DTYPE,
    ).reshape(4, 1, 2, 2)
    y = torch.tensor([0, 1, 0, 1])
    X = x.reshape(4, 4).numpy()
    h = np.maximum(X, 0)
    z2 = h @ model[3].weight.detach().numpy().T + model[3].bias.detach().numpy()
    codes = np.concatenate([X > 0, z2 > 0], axis=1)
    # the patterns, spelt out: first ReLU = sign pattern of x, second = thresholds above
    assert codes.astype(int).tolist() == [
        [1, 1, 0, 1, 1, 0, 1],
        [0, 1, 1, 0, 1, 1, 0],
        [1, 0, 0, 1, 1, 0, 1],
        [0, 0, 1, 1, 0, 1, 0],
    ]
    n_units = codes.shape[1]
    expected = np.array([[np.sum(a == b) for b in codes] for a in codes], dtype=float)
    K = naswot_kernel(model, x)
    np.testing.assert_array_equal(K, expected)
    np.testing.assert_array_equal(np.diag(K), n_units)
    sign, logdet = np.linalg.slogdet(expected)
    assert sign != 0  # distinct patterns: K is non-singular
    assert naswot(model, x, y) == pytest.approx(logdet, rel=1e-12)


def test_naswot_requires_relu_modules():
    with pytest.raises(ValueError, match="nn.ReLU"):
        naswot(tiny_mlp(nn.Tanh), *batch((4, 3, 2, 2), classes=4))


# ------------------------------------------------------------------ sizes


def test_flops_and_param_count():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*8 * 8 * 3 * 9 = 13824
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, bias=False),  # 4*4 * 8 * 4 * 9 = 4608
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),  # 40
    )
    x = torch.randn(3, 3, 8, 8)
    assert flops(model, x) == 13824 + 4608 + 40
    n = (8 * 3 * 9 + 8) + (8 + 8) + 8 * 4 * 9 + (8 * 5 + 5)
    assert param_count(model) == n == sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ invariants


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_proxy_leaves_model_untouched_and_is_deterministic(name):
    model = tiny_cnn(inplace=True)
    model.train()
    x, y = batch()
    x_before = x.clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = PROXIES[name](model, x, y)
    second = PROXIES[name](model, x, y)
    assert isinstance(first, float) and np.isfinite(first)
    assert first == second
    after = model.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], state[k]) for k in state)
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    assert torch.equal(x, x_before)


def test_compute_proxies_all_names_and_failures():
    x, y = batch()
    values, reasons = compute_proxies(tiny_cnn(), x, y)
    assert list(values) == [*PROXIES, "param_count", "flops"]
    assert reasons == {}
    assert all(isinstance(values[k], float) for k in PROXIES)
    assert isinstance(values["param_count"], int) and isinstance(values["flops"], int)

    x, y = batch((4, 3, 2, 2), classes=4)
    values, reasons = compute_proxies(tiny_mlp(nn.Tanh), x, y, names=["snip", "naswot"])
    assert list(values) == ["snip", "naswot", "param_count", "flops"]
    assert values["naswot"] is None and "ReLU" in reasons["naswot"]
    assert isinstance(values["snip"], float) and "snip" not in reasons

    with pytest.raises(KeyError):
        compute_proxies(tiny_cnn(), x, y, names=["nope"])
