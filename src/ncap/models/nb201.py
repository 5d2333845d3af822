"""A NAS-Bench-201-style cell search space, scaled so that networks train on a laptop CPU.

A cell is a directed acyclic graph of 4 nodes; node ``j`` is the sum of one operation applied to every
earlier node ``i < j`` (6 edges). Each edge is one of ``OPS``. Architectures are written in the
NAS-Bench-201 string form, one group per node, each entry ``op~i`` naming the operation and the
source node::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

The macro skeleton follows NAS-Bench-201: a 3x3 conv stem, three stages of ``cells`` cells with
``width``, ``2 width`` and ``4 width`` channels separated by residual reduction blocks (stride 2), a
final BN-ReLU and global average pooling. The network returns the pooled ``4 width`` features, so it is
a backbone for :class:`ncap.NeuralCapacitanceProbe`. NAS-Bench-201 uses width 16 and 5 cells per
stage on 32x32 RGB images; ncap's defaults (width 8, 1 cell) train in seconds on 28x28 grayscale.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ncap.data.dataset import MEAN, STD
from ncap.data.inputs import InputSpec
from ncap.exceptions import ConfigError
from ncap.models.backbone import Backbone, parameter_count
from ncap.models.registry import register_source

__all__ = [
    "OPS",
    "PREFIX",
    "NB201Network",
    "all_archs",
    "nb201_backbone",
    "arch_to_str",
    "parse_arch",
    "sample_archs",
]

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
N_NODES = 4
EDGES = tuple((j, i) for j in range(1, N_NODES) for i in range(j))  # (target, source), 6 edges

Arch = tuple[str, ...]  # the 6 operations in EDGES order


def parse_arch(text: str) -> Arch:
    """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` into the 6 operations in edge order.

    Raises
    ------
    ValueError
        Naming the malformed part: wrong number of nodes or inputs, an unknown operation, or a
        source index that does not match its position.
    """
    text = text.strip()
    groups = text.split("+")
    if len(groups) != N_NODES - 1:
        raise ConfigError(
            f"architecture {text!r} has {len(groups)} node groups separated by '+'; a NAS-Bench-201 "
            f"cell has {N_NODES - 1}, e.g. |nor_conv_3x3~0|+|none~0|skip_connect~1|+"
            "|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
        )
    ops: list[str] = []
    for j, group in enumerate(groups, start=1):
        entries = [e for e in group.strip().split("|") if e]
        if len(entries) != j:
            raise ConfigError(f"node {j} of {text!r} must have {j} input(s) 'op~i', got {entries}.")
        for i, entry in enumerate(entries):
            op, sep, source = entry.partition("~")
            if not sep or source != str(i):
                raise ConfigError(
                    f"entry {entry!r} of node {j} in {text!r} must read 'op~{i}' (input from node {i})."
                )
            if op not in OPS:
                raise ConfigError(f"unknown operation {op!r} in {text!r}; choose from {OPS}.")
            ops.append(op)
    return tuple(ops)


def arch_to_str(ops: Sequence[str]) -> str:
    """The NAS-Bench-201 string of 6 operations in edge order."""
    if len(ops) != len(EDGES) or any(op not in OPS for op in ops):
        raise ConfigError(f"an architecture is {len(EDGES)} operations from {OPS}, got {ops!r}.")
    groups, k = [], 0
    for j in range(1, N_NODES):
        groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    return "+".join(groups)


def all_archs() -> Iterator[str]:
    """Every architecture of the space (5^6 = 15625), in a fixed order."""
    for ops in itertools.product(OPS, repeat=len(EDGES)):
        yield arch_to_str(ops)


def sample_archs(n: int, *, seed: int = 0) -> list[str]:
    """``n`` distinct architectures drawn uniformly without replacement (seeded)."""
    total = len(OPS) ** len(EDGES)
    if not 1 <= n <= total:
        raise ConfigError(f"n must be between 1 and {total}, got {n}.")
    picks = np.random.default_rng(seed).choice(total, size=n, replace=False)
    out = []
    for index in picks:
        digits = [(int(index) // len(OPS) ** k) % len(OPS) for k in range(len(EDGES))]
        out.append(arch_to_str([OPS[d] for d in digits]))
    return out


class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _op(name: str, c: int) -> nn.Module:
    if name == "none":
        return _Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return _ReLUConvBN(c, c, 1)
    if name == "nor_conv_3x3":
        return _ReLUConvBN(c, c, 3)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class _Cell(nn.Module):
    def __init__(self, ops: Arch, c: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(_op(op, c) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for j in range(1, N_NODES):
            nodes.append(sum(self.edges[k + i](nodes[i]) for i in range(j)))
            k += j
        return nodes[-1]


class _Reduction(nn.Module):
    """NAS-Bench-201's residual reduction block: two ReLU-conv-BN (stride 2, 1) plus a pooled 1x1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.a = _ReLUConvBN(c_in, c_out, 3, stride=2)
        self.b = _ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    """A NAS-Bench-201 macro network for ``arch``, returning pooled features of size ``4 width``.

    Parameters
    ----------
    arch : str
        The architecture string (see :func:`parse_arch`).
    width : int
        Channels of the first stage (NAS-Bench-201: 16).
    cells : int
        Cells per stage (NAS-Bench-201: 5).
    in_channels : int
        Input channels (1 for grayscale, 3 for RGB).
    """

    def __init__(self, arch: str, *, width: int = 8, cells: int = 1, in_channels: int = 1) -> None:
        super().__init__()
        if width < 1 or cells < 1:
            raise ConfigError(f"width and cells must be >= 1, got width={width}, cells={cells}.")
        self.arch = arch_to_str(parse_arch(arch))
        ops = parse_arch(arch)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
        ]
        c = width
        for stage in range(3):
            if stage > 0:
                layers.append(_Reduction(c, 2 * c))
                c *= 2
            layers += [_Cell(ops, c) for _ in range(cells)]
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.num_features = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# -- the nb201: model source -------------------------------------------------------------------------
PREFIX = "nb201"


def nb201_backbone(
    arch: str,
    *,
    log: Callable[[str], None] | None = None,
    width: int = 8,
    cells: int = 1,
    in_channels: int = 1,
    seed: int = 0,
) -> Backbone:
    """``nb201:<arch>``: the architecture with these macro settings, initialised from ``seed``.

    The options travel with every ``create_backbone`` call (and so to Ray workers): nothing to
    register again in another process.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = NB201Network(arch, width=width, cells=cells, in_channels=in_channels)
    info = {
        "family": "nb201",
        "arch": net.arch,
        "parameters": parameter_count(net),
        "width": width,
        "cells": cells,
        "init_seed": seed,
    }
    return Backbone(
        name=f"{PREFIX}:{net.arch}",
        module=net,
        num_features=net.num_features,
        info=info,
        input_spec=InputSpec(
            channels=in_channels, size=None, mean=(MEAN,), std=(STD,), source="ncap nb201"
        ),
    )


register_source(PREFIX, nb201_backbone)
