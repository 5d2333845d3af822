"""Neural architecture search with neural capacitance: a NAS-Bench-201-style space, zero-cost proxies,
and ranking of untrained architectures from their early training (:func:`search`)."""

from ncap.nas.search import nats_accuracies, register_nb201, search
from ncap.nas.space import NB201Network, all_archs, arch_to_str, parse_arch, sample_archs

__all__ = [
    "NB201Network",
    "all_archs",
    "arch_to_str",
    "nats_accuracies",
    "parse_arch",
    "register_nb201",
    "sample_archs",
    "search",
]
