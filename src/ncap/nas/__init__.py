"""Neural architecture search with neural capacitance: a NAS-Bench-201-style space, zero-cost proxies,
and ranking of untrained architectures from their early training (:func:`search`)."""

from ncap.models.nb201 import NB201Network, all_archs, arch_to_str, parse_arch, sample_archs
from ncap.nas.nats import compare_with_nats, nats_accuracies
from ncap.nas.search import search

__all__ = [
    "NB201Network",
    "all_archs",
    "arch_to_str",
    "compare_with_nats",
    "nats_accuracies",
    "parse_arch",
    "sample_archs",
    "search",
]
