"""Candidate models: one registry, one ``create_backbone(name, **options)``.

Importing this package registers ncap's model sources (as timm's ``models/__init__.py`` does): the
built-in zoo (names without a prefix), ``timm:``, ``tv:``, ``py:``, ``nb201:`` and ``obj:``
(Python objects passed to ``ncap.rank``).
"""

from ncap.models import nb201, objects, pretrain, sources  # noqa: F401  (they register themselves)
from ncap.models.backbone import Backbone, parameter_count
from ncap.models.builtin import DEMO_MODELS, describe_models, list_models
from ncap.models.pretrain import PretrainSpec, default_pretrain
from ncap.models.registry import create_backbone, list_sources, register_source

__all__ = [
    "DEMO_MODELS",
    "Backbone",
    "PretrainSpec",
    "create_backbone",
    "default_pretrain",
    "describe_models",
    "list_models",
    "list_sources",
    "parameter_count",
    "register_source",
]
