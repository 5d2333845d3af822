"""Zero-cost NAS proxies: scores of an untrained classifier from ONE minibatch at initialisation.

Every proxy is a plain function ``proxy(model, x, y) -> float`` on a classifier ``model`` that maps
images ``x`` (``B x C x H x W``) to logits (``B x K``), with integer class ids ``y`` (``B``).
Higher scores predict better networks for every proxy here (see each docstring for the sign).

References
----------
- M. S. Abdelfattah, A. Mehrotra, L. Dudziak, N. D. Lane, "Zero-Cost Proxies for Lightweight
  NAS", ICLR 2021 (``grad_norm``, ``snip``, ``grasp``, ``fisher``, ``synflow``).
- J. Mellor, J. Turner, A. Storkey, E. J. Crowley, "Neural Architecture Search without
  Training", ICML 2021 (``jacob_cov`` from arXiv v1, ``naswot`` from the final version).
- N. Lee, T. Ajanthan, P. Torr, "SNIP: Single-shot Network Pruning based on Connection
  Sensitivity", ICLR 2019.
- C. Wang, G. Zhang, R. Grosse, "Picking Winning Tickets Before Training by Preserving Gradient
  Flow" (GraSP), ICLR 2020.
- L. Theis, I. Korshunova, A. Tejani, F. Huszar, "Faster gaze prediction with dense networks and
  Fisher pruning", 2018; J. Turner et al., "BlockSwap", ICLR 2020 (the ``fisher`` proxy).
- H. Tanaka, D. Kunin, D. L. K. Yamins, S. Ganguli, "Pruning neural networks without any data by
  iteratively conserving synaptic flow" (SynFlow), NeurIPS 2020.

Conventions
-----------
- "Layers" / "weights" are the ``weight`` tensors of every ``nn.Conv2d`` and ``nn.Linear``
  module (biases, BatchNorm affine parameters etc. are not scored). A weight shared by several
  modules is counted once; a module called several times contributes every call.
- ``L`` is the mean cross-entropy of the logits on ``(x, y)`` unless stated otherwise.
- Every proxy runs on a deep copy of the model, so the caller's parameters, buffers (BatchNorm
  running statistics included), ``.grad`` fields and train/eval mode are left exactly as they
  were. Gradients are taken with :func:`torch.autograd.grad`, under :func:`torch.enable_grad`.
- All proxies but ``synflow`` run the copy in training mode, as at the start of training:
  BatchNorm normalises with the statistics of the batch, so samples interact through it.
  Dropout modules are switched to eval mode (identity) so that every proxy is a deterministic
  function of ``(model, x, y)``; other stochastic layers are not handled. ``synflow`` runs the
  copy in eval mode (BatchNorm uses its running statistics).
- ``x`` is cast to the dtype and device of the model's first floating parameter.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LAYER_TYPES",
    "PROXIES",
    "compute_proxies",
    "fisher",
    "fisher_channel",
    "flops",
    "grad_norm",
    "grasp",
    "grasp_hessian_gradient",
    "jacob_cov",
    "naswot",
    "naswot_kernel",
    "param_count",
    "snip",
    "synflow",
]

#: Module types whose ``weight`` is scored by the weight-based proxies and counted by ``flops``.
LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)

#: The ``k`` of the ``jacob_cov`` score (Mellor et al., v1).
JACOB_COV_K = 1e-5


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _first_float_param(model: nn.Module) -> torch.Tensor | None:
    for p in model.parameters():
        if p.is_floating_point():
            return p
    return None


def _working_copy(
    model: nn.Module, x: torch.Tensor, *, train: bool = True, dtype: torch.dtype | None = None
) -> tuple[nn.Module, torch.Tensor]:
    """Deep copy of ``model`` in the proxies' mode, and ``x`` detached onto its device/dtype."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a batch (B x ...), got shape {tuple(x.shape)}.")
    net = copy.deepcopy(model)
    if dtype is not None:
        net = net.to(dtype=dtype)
    net.train(train)
    for module in net.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()
    for p in net.parameters():
        p.grad = None
    ref = _first_float_param(net)
    x = x.detach()
    if ref is not None:
        x = x.to(device=ref.device, dtype=ref.dtype if x.is_floating_point() else x.dtype)
    return net, x.clone()


def _layer_modules(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, LAYER_TYPES)]


def _layer_weights(net: nn.Module) -> list[torch.Tensor]:
    """The unique weights of the Conv2d/Linear layers of ``net``, made to require grad."""
    weights: list[torch.Tensor] = []
    seen: set[int] = set()
    for module in _layer_modules(net):
        w = module.weight
        if w is None or id(w) in seen:
            continue
        seen.add(id(w))
        w.requires_grad_(True)
        weights.append(w)
    if not weights:
        raise ValueError(
            "the model has no nn.Conv2d or nn.Linear layer; weight-based proxies score the "
            "weights of those layers."
        )
    return weights


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must map x to logits of shape (B, K); got {shape}.")
    return out


def _labels(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must hold one class id per sample, shape ({x.shape[0]},); got {tuple(y.shape)}."
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class ids, got dtype {y.dtype}.")
    return y.to(device=x.device, dtype=torch.long)


def _loss_gradients(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[torch.Tensor],
    *,
    reduction: str = "mean",
    create_graph: bool = False,
) -> list[torch.Tensor | None]:
    loss = F.cross_entropy(_logits(net, x), _labels(y, x), reduction=reduction)
    return list(torch.autograd.grad(loss, weights, create_graph=create_graph, allow_unused=True))


def _to_float(value: torch.Tensor | float) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().double().cpu().item())
    return float(value)


# --------------------------------------------------------------------------------------------
# gradient-based proxies (Abdelfattah et al., ICLR 2021)
# --------------------------------------------------------------------------------------------


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Sum over layers of the Frobenius norm of the loss gradient.

    .. math:: \mathrm{grad\_norm} = \sum_{l} \lVert \partial L / \partial W_l \rVert_F

    with ``L`` the mean cross-entropy on ``(x, y)`` and ``W_l`` the weight of the ``l``-th
    ``nn.Conv2d``/``nn.Linear`` layer (Abdelfattah et al., ICLR 2021). Training mode.

    Parameters
    ----------
    model : nn.Module
        Classifier mapping ``x`` to logits ``(B, K)``; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``.
    y : torch.Tensor
        Integer class ids ``(B,)``.

    Returns
    -------
    float
        The score; higher is predicted better (larger gradients at initialisation).
    """
    with torch.enable_grad():
        net, x = _working_copy(model, x)
        weights = _layer_weights(net)
        grads = _loss_gradients(net, x, y, weights)
        total = sum(g.detach().double().norm() for g in grads if g is not None)
    return _to_float(total)


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    r"""SNIP connection sensitivity summed over all layer weights.

    .. math:: \mathrm{snip} = \sum_{l} \sum_{i} \lvert W_{l,i}\, \partial L / \partial W_{l,i}
              \rvert

    with ``L`` the mean cross-entropy on ``(x, y)`` (Lee et al., ICLR 2019; as a NAS proxy in
    Abdelfattah et al., ICLR 2021). Training mode.

    Parameters
    ----------
    model : nn.Module
        Classifier mapping ``x`` to logits ``(B, K)``; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``.
    y : torch.Tensor
        Integer class ids ``(B,)``.

    Returns
    -------
    float
        The score; higher is predicted better.
    """
    with torch.enable_grad():
        net, x = _working_copy(model, x)
        weights = _layer_weights(net)
        grads = _loss_gradients(net, x, y, weights)
        total = sum(
            (w.detach() * g.detach()).double().abs().sum()
            for w, g in zip(weights, grads)
            if g is not None
        )
    return _to_float(total)


def _hessian_gradient(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    weights = _layer_weights(net)
    grads = _loss_gradients(net, x, y, weights, create_graph=True)
    # z = g . stop_grad(g); dz/dW = H g  (H symmetric).
    z = sum((g * g.detach()).sum() for g in grads if g is not None and g.requires_grad)
    if isinstance(z, torch.Tensor) and z.requires_grad:
        hg = torch.autograd.grad(z, weights, allow_unused=True)
    else:  # the gradient does not depend on the weights: H = 0
        hg = (None,) * len(weights)
    hg_list = [torch.zeros_like(w) if h is None else h.detach() for w, h in zip(weights, hg)]
    return [w.detach() for w in weights], hg_list


def grasp_hessian_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> list[torch.Tensor]:
    r"""The Hessian-gradient product ``H g`` used by :func:`grasp`, one tensor per layer weight.

    ``g = dL/dW`` (mean cross-entropy, training mode) and ``H = d^2 L / dW^2`` over the
    concatenation of all ``nn.Conv2d``/``nn.Linear`` weights (other parameters held fixed).
    ``H g`` is computed by double backward as

    .. math:: H g = \nabla_W \left( g(W) \cdot \mathrm{stop\_grad}(g) \right).

    Parameters
    ----------
    model : nn.Module
        Classifier mapping ``x`` to logits ``(B, K)``; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``.
    y : torch.Tensor
        Integer class ids ``(B,)``.

    Returns
    -------
    list of torch.Tensor
        Detached tensors shaped like the weights, in ``model.modules()`` order.
    """
    with torch.enable_grad():
        net, x = _working_copy(model, x)
        _, hg = _hessian_gradient(net, x, y)
    return hg


def grasp(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    r"""GraSP: minus the weight-weighted Hessian-gradient product.

    .. math:: \mathrm{grasp} = -\sum_{l} \sum_{i} W_{l,i}\, (H g)_{l,i},
              \qquad g = \partial L / \partial W,\quad H = \partial^2 L / \partial W^2

    with ``L`` the mean cross-entropy on ``(x, y)``; ``H g`` comes from double backward, see
    :func:`grasp_hessian_gradient` (Wang et al., ICLR 2020; as a NAS proxy in Abdelfattah et
    al., ICLR 2021). Training mode. Needs every op of the model to support double backward
    (otherwise torch raises a ``RuntimeError``).

    Parameters
    ----------
    model : nn.Module
        Classifier mapping ``x`` to logits ``(B, K)``; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``.
    y : torch.Tensor
        Integer class ids ``(B,)``.

    Returns
    -------
    float
        The score with the sign above (``-W . H g``); higher is predicted better, following
        Abdelfattah et al., who use this quantity directly.
    """
    with torch.enable_grad():
        net, x = _working_copy(model, x)
        weights, hg = _hessian_gradient(net, x, y)
        total = -sum((w * h).double().sum() for w, h in zip(weights, hg))
    return _to_float(total)


def _channel_saliencies(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, reduction: str
) -> list[tuple[torch.Tensor, int]]:
    """Per layer call: ``s_{b,c} = sum_p z_{b,c,p} dL/dz_{b,c,p}`` (float64) and the layer's fan-in.

    ``z`` is the raw output of every ``nn.Conv2d``/``nn.Linear`` call, before any following
    (possibly in-place) activation; ``L`` is the cross-entropy reduced by ``reduction``. The fan-in
    is the number of weights per output channel, ``weight[0].numel()``. Training mode.
    """
    records: list[tuple[torch.Tensor, int]] = []

    def per_channel(z: torch.Tensor, grad: torch.Tensor, is_conv: bool) -> torch.Tensor:
        prod = (z * grad).double()
        if is_conv:
            return prod.flatten(2).sum(dim=2) if prod.ndim > 2 else prod
        # Linear: features on the last axis; sum over any axes between batch and features.
        return prod.reshape(prod.shape[0], -1, prod.shape[-1]).sum(dim=1)

    def forward_hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        if not (isinstance(output, torch.Tensor) and output.requires_grad):
            return
        saved = output.detach().clone()  # survives in-place ops applied after this layer
        is_conv = isinstance(module, nn.Conv2d)
        fan_in = int(module.weight[0].numel())

        def tensor_hook(grad: torch.Tensor) -> None:
            records.append((per_channel(saved, grad.detach(), is_conv), fan_in))

        output.register_hook(tensor_hook)

    with torch.enable_grad():
        net, x = _working_copy(model, x)
        weights = _layer_weights(net)
        handles = [m.register_forward_hook(forward_hook) for m in _layer_modules(net)]
        try:
            _loss_gradients(net, x, y, weights, reduction=reduction)
        finally:
            for handle in handles:
                handle.remove()
    return records


def fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Fisher-information saliency as published for NAS (Abdelfattah et al., ICLR 2021).

    For every call of an ``nn.Conv2d``/``nn.Linear`` layer with raw output ``z`` (before any
    following, possibly in-place, activation) and the batch-mean cross-entropy :math:`L`:

    .. math::

        s_{b,c} = \sum_{p} z_{b,c,p}\, \frac{\partial L}{\partial z_{b,c,p}}, \qquad
        \mathrm{fisher} = \sum_{\text{layers}} \mathrm{fan\_in} \sum_{c} \tfrac12\,
        \frac{1}{B} \sum_{b} s_{b,c}^2

    where ``c`` runs over output channels (axis 1 of a Conv2d output, the last axis of a Linear
    output), ``p`` over the remaining positions, and ``fan_in`` is the number of weights per
    output channel (``in_channels / groups * kh * kw``, or ``in_features``). The authors' code
    computes the per-channel saliency and spreads it over every weight of its channel before
    summing, which is what weights each layer by its fan-in. Theis et al. 2018 / Turner et al.
    2020 define the channel saliency; :func:`fisher_channel` is it without the fan-in weights.
    Training mode. Implemented with forward hooks and tensor gradient hooks.

    Parameters
    ----------
    model : nn.Module
        Classifier mapping ``x`` to logits ``(B, K)``; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``.
    y : torch.Tensor
        Integer class ids ``(B,)``.

    Returns
    -------
    float
        The score; higher is predicted better.
    """
    records = _channel_saliencies(model, x, y, reduction="mean")
    return _to_float(sum(fan_in * 0.5 * s.pow(2).mean(dim=0).sum() for s, fan_in in records))


def fisher_channel(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    r"""The channel saliency summed over channels, without the published fan-in weights.

    :math:`\sum_{\text{layers}} \sum_c \tfrac12 \frac1B \sum_b s_{b,c}^2` with :math:`s` from
    the loss *summed* over the batch (so ``dL/dz_b`` is the per-sample gradient): ncap's
    ``fisher`` before it followed the published measure (:func:`fisher`), kept as a variant.
    """
    records = _channel_saliencies(model, x, y, reduction="sum")
    return _to_float(sum(0.5 * s.pow(2).mean(dim=0).sum() for s, _ in records))


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    r"""SynFlow: synaptic saliency of the absolute-valued network on an all-ones input.

    On a float64 deep copy in eval mode (BatchNorm normalises with its running statistics,
    dropout is off) with every parameter replaced by its absolute value (buffers are left as
    they are), feed the all-ones input ``1`` of the shape of ONE sample of ``x`` (a batch of 1)
    and let :math:`R = \mathbf{1}^\top f_{|\theta|}(\mathbf{1})` be the sum of the outputs; then

    .. math:: \mathrm{synflow} = \sum_{l} \sum_{i} |W_{l,i}|\,
              \partial R / \partial |W_{l,i}|.

    For a bias-free ReLU/linear network ``R`` is homogeneous of degree ``n_layers`` in the
    weights, so the score equals ``n_layers * R`` (Euler). Data- and label-free: only the shape
    of ``x`` is used and ``y`` is ignored. Tanaka et al., NeurIPS 2020; as a NAS proxy in
    Abdelfattah et al., ICLR 2021.

    Parameters
    ----------
    model : nn.Module
        Classifier mapping ``x`` to logits ``(B, K)``; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``; only ``x.shape[1:]`` is used.
    y : torch.Tensor, optional
        Ignored (kept for the common ``proxy(model, x, y)`` signature).

    Returns
    -------
    float
        The score; higher is predicted better. It can overflow to ``inf`` for very deep nets.
    """
    with torch.enable_grad():
        net, x = _working_copy(model, x, train=False, dtype=torch.float64)
        with torch.no_grad():
            for p in net.parameters():
                if p.is_floating_point():
                    p.abs_()
        weights = _layer_weights(net)
        ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
        r = _logits(net, ones).sum()
        grads = torch.autograd.grad(r, weights, allow_unused=True)
        total = sum((w.detach() * g).sum() for w, g in zip(weights, grads) if g is not None)
    return _to_float(total)


# --------------------------------------------------------------------------------------------
# Mellor et al. (ICML 2021)
# --------------------------------------------------------------------------------------------


def jacob_cov(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    r"""Jacobian covariance score of Mellor et al. (arXiv v1 of "NAS without Training").

    Let ``J`` (``B x D``) hold, in row ``b``, the flattened gradient of the sum of all outputs
    with respect to the input sample ``x_b``: :math:`J_b = \partial (\sum f(x)) / \partial x_b`
    (training mode, so BatchNorm's batch statistics couple the samples, as in the paper's
    setting). With ``C`` the correlation matrix of the rows of ``J`` (``np.corrcoef``) and
    :math:`v_1..v_B` its eigenvalues,

    .. math:: \mathrm{jacob\_cov} = -\sum_{i} \left[\log(v_i + k) + (v_i + k)^{-1}\right],
              \qquad k = 10^{-5}.

    Each term is smallest at ``v_i + k = 1``, so the score is highest when the per-sample
    Jacobians are uncorrelated. ``y`` is ignored.

    Parameters
    ----------
    model : nn.Module
        Classifier mapping ``x`` to logits ``(B, K)``; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``.
    y : torch.Tensor, optional
        Ignored (kept for the common ``proxy(model, x, y)`` signature).

    Returns
    -------
    float
        The score; higher is predicted better.

    Raises
    ------
    ValueError
        If a row of ``J`` is constant, which leaves the correlation matrix undefined.
    """
    with torch.enable_grad():
        net, x = _working_copy(model, x)
        if not x.is_floating_point():
            raise ValueError(f"jacob_cov needs a floating-point input, got dtype {x.dtype}.")
        x.requires_grad_(True)
        out = _logits(net, x)
        (jac,) = torch.autograd.grad(out.sum(), x)
    rows = jac.detach().reshape(jac.shape[0], -1).double().cpu().numpy()
    if np.any(np.ptp(rows, axis=1) == 0):
        raise ValueError(
            "a per-sample input gradient is constant (e.g. all zero), so its correlation with "
            "the others is undefined; jacob_cov cannot be computed for this model/batch."
        )
    corr = np.atleast_2d(np.corrcoef(rows))
    eig = np.linalg.eigvalsh(corr)
    shifted = eig + JACOB_COV_K
    return float(-np.sum(np.log(shifted) + 1.0 / shifted))


def naswot_kernel(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    r"""The NASWOT kernel ``K`` (``B x B``) of binary ReLU codes, as a float64 array.

    For every call of every ``nn.ReLU`` module, the output is flattened per sample and turned into
    a binary code ``1[relu output > 0]``; the codes of all calls are concatenated into
    ``c`` (``B x N``, ``N`` = number of ReLU units) and

    .. math:: K = c\, c^\top + (1 - c)(1 - c)^\top,

    i.e. :math:`K_{ab} = N - d_H(c_a, c_b)`, the number of units on which samples ``a`` and ``b``
    agree; the diagonal equals ``N``. ``K`` is accumulated ReLU by ReLU, so ``c`` is never
    stored whole. Training mode (see module conventions), no gradients.

    Only ``nn.ReLU`` modules are seen: ReLUs applied functionally (``F.relu``, ``torch.relu``)
    or other activations do not contribute.

    Parameters
    ----------
    model : nn.Module
        Classifier built with ``nn.ReLU`` modules; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``.

    Returns
    -------
    numpy.ndarray
        ``K``, shape ``(B, B)``, integer-valued float64.

    Raises
    ------
    ValueError
        If the model has no ``nn.ReLU`` module, or none of them is called.
    """
    net, x = _working_copy(model, x)
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(
            "naswot needs nn.ReLU modules (functional relu is invisible to it); the model has none."
        )
    state: dict[str, torch.Tensor | int] = {"K": 0, "calls": 0}

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        codes = (output.detach() > 0).flatten(1).to(torch.float64)
        kernel = codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T
        state["K"] = state["K"] + kernel
        state["calls"] = int(state["calls"]) + 1

    handles = [m.register_forward_hook(hook) for m in relus]
    try:
        with torch.no_grad():
            _logits(net, x)
    finally:
        for handle in handles:
            handle.remove()
    if state["calls"] == 0:
        raise ValueError("the model has nn.ReLU modules but none was called in the forward pass.")
    kernel = state["K"]
    assert isinstance(kernel, torch.Tensor)
    return kernel.cpu().numpy()


def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    r"""NASWOT score of Mellor et al. (ICML 2021, final version): ``log |det K|``.

    .. math:: \mathrm{naswot} = \log \lvert \det K \rvert, \qquad
              K = c\, c^\top + (1 - c)(1 - c)^\top

    with ``c`` the binary codes of the ``nn.ReLU`` outputs, see :func:`naswot_kernel`
    (computed with ``numpy.linalg.slogdet``). The score is ``-inf`` when ``K`` is singular, e.g.
    when two samples share the same activation pattern. The model must use ``nn.ReLU`` modules,
    not functional relu. ``y`` is ignored.

    Parameters
    ----------
    model : nn.Module
        Classifier built with ``nn.ReLU`` modules; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``.
    y : torch.Tensor, optional
        Ignored (kept for the common ``proxy(model, x, y)`` signature).

    Returns
    -------
    float
        The score; higher is predicted better (more distinct activation patterns).

    Raises
    ------
    ValueError
        If the model has no ``nn.ReLU`` module.
    """
    _, logabsdet = np.linalg.slogdet(naswot_kernel(model, x))
    return float(logabsdet)


# --------------------------------------------------------------------------------------------
# size measures
# --------------------------------------------------------------------------------------------


def param_count(model: nn.Module) -> int:
    """Number of parameters of ``model`` (all of them, trainable or not; shared ones once).

    Parameters
    ----------
    model : nn.Module
        Any module.

    Returns
    -------
    int
        ``sum(p.numel() for p in model.parameters())``.
    """
    return int(sum(p.numel() for p in model.parameters()))


def flops(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulate count (MACs) of one forward pass of ONE sample.

    Counted with forward hooks on every ``nn.Conv2d`` and ``nn.Linear`` call while ``x[:1]`` is
    fed through a deep copy of the model in eval mode, without gradients:

    - ``nn.Conv2d``: ``out_h * out_w * out_c * (in_c / groups) * kh * kw``;
    - ``nn.Linear``: ``in * out`` per position (``in * out`` for a ``(B, in)`` input; inputs
      with extra axes multiply by their number of positions).

    Biases, normalisation, activations and pooling are not counted.

    Parameters
    ----------
    model : nn.Module
        Any module made of Conv2d/Linear layers and others; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``; only its first sample is used.

    Returns
    -------
    int
        The MACs of one sample.
    """
    total = 0

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            out_c, out_h, out_w = output.shape[-3:]
            kh, kw = module.kernel_size
            total += int(out_h * out_w * out_c * (module.in_channels // module.groups) * kh * kw)
        else:
            positions = output[0].numel() // module.out_features
            total += int(positions * module.in_features * module.out_features)

    net, x = _working_copy(model, x, train=False)
    handles = [m.register_forward_hook(hook) for m in _layer_modules(net)]
    try:
        with torch.no_grad():
            net(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return total


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

Proxy = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]

#: The zero-cost proxies by name; each is ``proxy(model, x, y) -> float``, higher = better.
PROXIES: dict[str, Proxy] = {
    "grad_norm": grad_norm,
    "snip": snip,
    "grasp": grasp,
    "fisher": fisher,
    "fisher_channel": fisher_channel,
    "synflow": synflow,
    "jacob_cov": jacob_cov,
    "naswot": naswot,
}


def compute_proxies(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: Iterable[str] | None = None,
) -> tuple[dict[str, float | int | None], dict[str, str]]:
    """Compute several zero-cost proxies, plus ``param_count`` and ``flops``, on one minibatch.

    A proxy that raises ``ValueError`` or ``RuntimeError`` (e.g. ``naswot`` on a model without
    ``nn.ReLU``, ``grasp`` on an op without double backward), or that returns NaN, gets
    ``None`` and a reason; other exceptions (bad arguments, ``TypeError``...) propagate.
    Infinite values (``naswot`` on a singular kernel, ``synflow`` overflow) are kept.

    Parameters
    ----------
    model : nn.Module
        Classifier mapping ``x`` to logits ``(B, K)``; not modified.
    x : torch.Tensor
        Input batch ``(B, C, H, W)``.
    y : torch.Tensor
        Integer class ids ``(B,)``.
    names : iterable of str, optional
        Keys of :data:`PROXIES` to compute, in that order; all of them by default.

    Returns
    -------
    values : dict
        ``name -> float`` (or ``None``) for each requested proxy, then ``"param_count"`` and
        ``"flops"`` (ints; ``flops`` is ``None`` if the forward pass fails).
    reasons : dict
        ``name -> "ExceptionType: message"`` for every ``None`` in ``values``.

    Raises
    ------
    KeyError
        If a name is not in :data:`PROXIES`.
    """
    selected = list(PROXIES) if names is None else list(names)
    unknown = [name for name in selected if name not in PROXIES]
    if unknown:
        raise KeyError(f"unknown proxies {unknown}; known: {sorted(PROXIES)}.")
    values: dict[str, float | int | None] = {}
    reasons: dict[str, str] = {}
    for name in selected:
        try:
            value = PROXIES[name](model, x, y)
        except (ValueError, RuntimeError) as exc:
            values[name] = None
            reasons[name] = f"{type(exc).__name__}: {exc}"
            continue
        if math.isnan(value):
            values[name] = None
            reasons[name] = "the proxy evaluated to NaN"
        else:
            values[name] = value
    values["param_count"] = param_count(model)
    try:
        values["flops"] = flops(model, x)
    except (ValueError, RuntimeError) as exc:
        values["flops"] = None
        reasons["flops"] = f"{type(exc).__name__}: {exc}"
    return values, reasons
