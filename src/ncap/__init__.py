"""ncap: neural capacitance (beta_eff) predicts a network's final accuracy from early training.

Functional core: :func:`beta_eff` (any weighted graph) and :func:`probe_beta_eff` (an MLP block's
line graph, closed form). Stateful wrapper: :class:`NeuralCapacitanceProbe`.
"""

from ncap.edge_stats import VARIANTS, EdgeStatistics, probe_beta_eff
from ncap.graph import beta_eff
from ncap.line_graph import line_graph
from ncap.probe import NeuralCapacitanceProbe

__version__ = "0.1.0"

__all__ = [
    "VARIANTS",
    "EdgeStatistics",
    "NeuralCapacitanceProbe",
    "beta_eff",
    "line_graph",
    "probe_beta_eff",
    "__version__",
]
