"""ncap's probe read on the feature layer of a model that someone else's loop trains.

:class:`ProbeTap` puts a forward hook on the user's feature layer (named, e.g. ``"backbone"``, or
found by a function, e.g. ``lambda model: model.encoder``). Each training forward pass hands it the
layer's output; :meth:`ProbeTap.observe` pairs those features, detached from the user's graph,
with the batch's labels and queues them. Every ``QUEUE_BATCHES`` batches (and before a read) the
queued batches go through a frozen :class:`~ncap.capacitance.probe.NeuralCapacitanceProbe` as one
chunk: its forward pass and the per-sample errors of its own softmax cross-entropy, by hand (the
backward pass of :mod:`ncap.capacitance.mlp`, with no autograd graph and no hooks), added to the
probe's line-graph statistics. The probe is frozen and the statistics are sums over samples, so the
chunk gives what batch-by-batch passes would, for a fraction of the per-operation cost that
dominates a small model's step. :meth:`ProbeTap.read` gives beta_eff over the samples since the
last read (:meth:`~ncap.capacitance.probe.NeuralCapacitanceProbe.beta_eff`), which equals the
closed form :func:`ncap.probe_beta_eff` on the same features and labels. Nothing before a read
waits for the device (labels on an accelerator are range-checked on the first chunk only).

The user's model, loss and gradients are untouched: the probe is a side head here, not the
classifier that ``ncap rank`` fine-tunes through (its errors come from its own loss on the user's
features), and what it costs is one forward and backward pass of a small MLP per batch plus the
statistics (the overhead figures are in docs/integrations.md).

Features of more than two dimensions are reduced to ``(batch, channels)``: a 4-d map
``(B, C, H, W)`` by its spatial mean (global average pooling), a 3-d sequence ``(B, T, D)`` by its
mean over ``T``; pass ``reduce`` to choose otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ncap.capacitance.mlp import derivative_from_output
from ncap.capacitance.probe import NeuralCapacitanceProbe
from ncap.capacitance.statistics import QUEUE_BATCHES
from ncap.exceptions import ConfigError
from ncap.training.config import CHEAP_VARIANTS

__all__ = ["ProbeTap", "default_reduce", "find_layer"]

FeatureLayer = str | Callable[[nn.Module], nn.Module]


def default_reduce(features: torch.Tensor) -> torch.Tensor:
    """``(B, F)`` from a layer's output: 4-d maps are averaged over space, 3-d sequences over
    tokens, anything else flattened after the batch dimension."""
    if features.ndim == 4:
        return features.mean(dim=(2, 3))
    if features.ndim == 3:
        return features.mean(dim=1)
    return features.flatten(1)


def find_layer(model: nn.Module, layer: FeatureLayer) -> nn.Module:
    """The feature layer ``layer`` names (a dotted submodule name) or returns (a function)."""
    if callable(layer) and not isinstance(layer, str):
        found = layer(model)
        if not isinstance(found, nn.Module):
            raise ConfigError(
                f"the feature_layer function returned {type(found).__name__}, not an nn.Module; "
                "return the submodule whose output are the features (e.g. lambda m: m.backbone)."
            )
        return found
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:12]
        raise ConfigError(
            f"the model has no submodule {layer!r}; name the feature layer as "
            f"model.named_modules() does (e.g. {', '.join(names)}), or pass a function."
        ) from None


def _first_tensor(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    for key in ("pooler_output", "last_hidden_state"):
        value = getattr(output, key, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ConfigError(
        f"the feature layer returned {type(output).__name__}; name a layer whose output is a "
        "tensor (or a tuple/ModelOutput starting with one)."
    )


def _add_batch(probe: NeuralCapacitanceProbe, x: torch.Tensor, y: torch.Tensor) -> None:
    """Add one batch to ``probe``'s statistics: its forward pass and the per-sample errors of the
    softmax cross-entropy, by hand (:mod:`ncap.capacitance.mlp`'s conventions): the quantities
    the probe's autograd hooks would collect, without building a graph."""
    layers = probe.layers
    last = len(layers) - 1
    hs, ds = [x], []
    z = x
    for a, layer in enumerate(layers):
        z = F.linear(hs[a], layer.weight, layer.bias)
        if a < last:
            h = torch.relu(z) if probe.activation == "relu" else torch.tanh(z)
            hs.append(h)
            ds.append(derivative_from_output(h, probe.activation))
    e = torch.softmax(z, dim=1) - F.one_hot(y, z.shape[1]).to(z.dtype)
    es: list[torch.Tensor | None] = [e]
    for a in range(last - 1, 0, -1):  # e^{a+1} = d^{a+1} * (e^{a+2} W^{a+2}); e^1 is not used
        es.insert(0, ds[a] * (es[0] @ layers[a + 1].weight))
    probe.statistics.update(hs, ds, [None, *es], error_scale=1.0)


class ProbeTap:
    """A frozen probe on a model's feature layer (module docstring).

    Parameters
    ----------
    feature_layer : str or callable
        The submodule whose output are the features: a name from ``model.named_modules()`` or a
        function ``model -> submodule``.
    num_classes : int
        The number of classes of the labels passed to :meth:`observe`.
    hidden, activation, seed, variants
        The probe's (:class:`~ncap.capacitance.probe.NeuralCapacitanceProbe`); by default those
        of ``ncap rank`` (hidden 128, 64, 32; ReLU; seed 0; the variants cheap to track per step).
    lr : float
        The learning rate that scales beta_eff (use the training's).
    reduce : callable
        ``(B, ...) -> (B, F)`` (default :func:`default_reduce`).
    """

    def __init__(
        self,
        feature_layer: FeatureLayer,
        num_classes: int,
        *,
        hidden: Sequence[int] = (128, 64, 32),
        activation: str = "relu",
        seed: int = 0,
        lr: float = 1e-3,
        variants: str | Iterable[str] = CHEAP_VARIANTS,
        reduce: Callable[[torch.Tensor], torch.Tensor] = default_reduce,
    ) -> None:
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        if not isinstance(feature_layer, str) and not callable(feature_layer):
            raise ConfigError(
                "feature_layer must be a submodule name or a function model -> submodule, got "
                f"{type(feature_layer).__name__}."
            )
        self.feature_layer, self.num_classes = feature_layer, num_classes
        self.probe_options = {
            "hidden": tuple(hidden),
            "activation": activation,
            "seed": seed,
            "lr": lr,
            "variants": variants,
        }
        self.reduce = reduce
        self.probe: NeuralCapacitanceProbe | None = None
        self.pending: list[torch.Tensor] = []  # features captured, waiting for their labels
        self.queued: list[tuple[torch.Tensor, torch.Tensor]] = []  # (features, labels) to add
        self.enabled = True
        self._handle = None
        self._width: int | None = None  # the feature width of the first batch
        self._labels_checked = False  # accelerator labels: checked once (a check is a host sync)

    # -- the hook --------------------------------------------------------------------------------
    def attach(self, model: nn.Module) -> ProbeTap:
        """Hook the feature layer of ``model`` (once; a second call re-hooks)."""
        self.detach()
        layer = find_layer(model, self.feature_layer)
        self._handle = layer.register_forward_hook(self._hook)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, inputs, output) -> None:
        if self.enabled and module.training and torch.is_grad_enabled():
            self.pending.append(self.reduce(_first_tensor(output)).detach())

    def clear(self) -> None:
        """Forget features captured but not observed (e.g. a forward pass without a step)."""
        self.pending.clear()

    # -- the probe -------------------------------------------------------------------------------
    def _build(self, features: torch.Tensor) -> NeuralCapacitanceProbe:
        self.probe = NeuralCapacitanceProbe(
            features.shape[1], self.num_classes, **self.probe_options
        ).to(features.device)
        return self.probe

    @property
    def num_features(self) -> int | None:
        """The feature width (None before the first observed batch)."""
        return self._width

    def observe(self, labels: torch.Tensor | Sequence[torch.Tensor]) -> int:
        """Pair the captured features with their ``labels`` (one tensor per captured forward pass
        or one for all, in order) and queue them for the probe (module doc); returns the samples
        added."""
        if not self.pending:
            return 0
        if isinstance(labels, torch.Tensor):
            labels = [labels]
        feats = self.pending
        self.pending = []
        sizes = [f.shape[0] for f in feats]
        if len(labels) == 1 and len(feats) > 1 and labels[0].shape[0] == sum(sizes):
            labels = list(torch.split(labels[0], sizes))
        if len(labels) != len(feats) or any(
            f.shape[0] != y.shape[0] for f, y in zip(feats, labels)
        ):
            raise ConfigError(
                f"the labels ({[tuple(y.shape) for y in labels]}) do not match the captured "
                f"feature batches ({[tuple(f.shape) for f in feats]}); pass the batch's labels."
            )
        added = 0
        for f, y in zip(feats, labels):
            if f.ndim != 2:
                raise ConfigError(
                    f"reduce gave features of shape {tuple(f.shape)}; the probe needs "
                    "(batch, features)."
                )
            self._width = self._width or f.shape[1]
            if f.shape[1] != self._width:
                raise ConfigError(
                    f"the feature layer gave {f.shape[1]} features after {self._width} before; "
                    "name a layer whose output width does not change."
                )
            self.queued.append((f, y))
            added += f.shape[0]
        if len(self.queued) >= QUEUE_BATCHES:
            self.flush()
        return added

    def flush(self) -> None:
        """Add the queued batches to the probe's statistics now, as one chunk (a read does)."""
        queued, self.queued = self.queued, []
        if not queued:
            return
        f = queued[0][0] if len(queued) == 1 else torch.cat([q[0] for q in queued])
        y = queued[0][1] if len(queued) == 1 else torch.cat([q[1].to(f.device) for q in queued])
        with torch.no_grad():
            probe = self.probe or self._build(f)
            y = y.to(f.device).long()
            self._check_labels(y)
            _add_batch(probe, f.float(), y)
            probe.statistics.flush()  # the chunk is large already: add it now, keep nothing

    def _check_labels(self, y: torch.Tensor) -> None:
        """Labels in ``[0, num_classes)``: every chunk on the CPU; on an accelerator the first
        chunk only, since reading a device tensor's range waits for the device."""
        if y.device.type != "cpu":
            if self._labels_checked:
                return
            self._labels_checked = True
        if y.numel() == 0:
            return
        low, high = (int(v) for v in torch.aminmax(y))
        if low < 0 or high >= self.num_classes:
            raise ConfigError(
                f"labels must lie in [0, {self.num_classes}); got {low}..{high}: set num_classes "
                "to the task's."
            )

    def read(self) -> dict[str, float] | None:
        """beta_eff per variant over the samples observed since the last read (None if none),
        then start a new interval."""
        self.flush()
        if self.probe is None or self.probe.n_samples == 0:
            return None
        out = self.probe.beta_eff()
        self.probe.reset_statistics()
        return dict(out)
