"""Candidates given as Python objects: ``nn.Module``s and factories (with arguments) as well as names.

:func:`candidate_names` turns what :func:`ncap.rank` was given into registry names. A string stays
as it is; an ``nn.Module``, a factory (a callable returning an ``nn.Module``, a
``(module, num_features)`` pair or a :class:`~ncap.models.backbone.Backbone`), a
``functools.partial`` of one (a factory with arguments), a ``(name, object)`` pair or a
``{name: object}`` mapping become ``obj:<name>``, a source that lives in this process only. Each
run gets a fresh deep copy of a module (the object you passed is never trained) and a fresh call
of a factory. Ray workers cannot see them: use a ``py:module:factory`` name there.

>>> from torch import nn
>>> candidate_names(["lenet", nn.Linear(4, 2), ("wide", nn.Linear(4, 8))])
['lenet', 'obj:Linear', 'obj:wide']
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from ncap.exceptions import ConfigError, ModelCodeError, NcapError
from ncap.models.backbone import Backbone, backbone_from_factory, parameter_count
from ncap.models.registry import register_source

__all__ = ["PREFIX", "candidate_names", "object_backbone"]

PREFIX = "obj"
_OBJECTS: dict[str, Any] = {}


def _default_name(obj: Any) -> str:
    if isinstance(obj, functools.partial):
        args = [repr(a) for a in obj.args] + [f"{k}={v!r}" for k, v in obj.keywords.items()]
        return f"{_default_name(obj.func)}({','.join(args)})"
    if isinstance(obj, nn.Module):
        return type(obj).__name__
    return getattr(obj, "__name__", type(obj).__name__)


def candidate_names(models: Iterable[Any] | Mapping[str, Any]) -> list[str]:
    """Registry names for ``models`` (module docstring); objects are registered under
    ``obj:<name>`` (a second object of the same default name gets ``-2``, ``-3``, ...)."""
    items = list(models.items()) if isinstance(models, Mapping) else list(models)
    names: list[str] = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
            continue
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, obj = item
        else:
            name, obj = _default_name(item), item
        if not (isinstance(obj, nn.Module) or callable(obj)):
            raise ConfigError(
                f"candidate {item!r} is neither a name, an nn.Module nor a factory; pass a model "
                "name (see `ncap zoo`), a module, or a callable that returns one."
            )
        base, k = name, 2
        while f"{PREFIX}:{name}" in names:
            name, k = f"{base}-{k}", k + 1
        _OBJECTS[name] = obj
        names.append(f"{PREFIX}:{name}")
    return names


def object_backbone(name: str, **_: Any) -> Backbone:
    """The backbone of an object registered by :func:`candidate_names` (a fresh copy or call)."""
    if name not in _OBJECTS:
        raise ConfigError(
            f"no object registered as {PREFIX}:{name} in this process (objects passed to "
            "ncap.rank live in the process that passed them; on Ray use py:<module>:<factory>)."
        )
    obj = _OBJECTS[name]
    if isinstance(obj, nn.Module):
        built: Any = copy.deepcopy(obj)
    else:
        try:
            built = obj()
        except NcapError:
            raise
        except Exception as err:  # the user's own code: this candidate fails, not the run
            raise ModelCodeError(f"{PREFIX}:{name}'s factory raised {err!r}") from err
    backbone = backbone_from_factory(built, f"{PREFIX}:{name}'s factory")
    backbone.name = f"{PREFIX}:{name}"
    backbone.info = {
        "family": "user",
        "source": "python object",
        "parameters": parameter_count(backbone.module),
    } | backbone.info
    return backbone


register_source(PREFIX, object_backbone)
