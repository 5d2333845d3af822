"""The model registry: a prefix names a source, a source turns a name into a :class:`Backbone`.

A leaf: it imports none of the sources it holds. Sources register themselves when their module is
imported (``ncap.models`` imports ncap's own: the built-in zoo, ``timm:``, ``tv:``, ``py:``,
``nb201:``). ``create_backbone("prefix:rest", **options)`` calls ``source(rest, **options)``;
a name without a prefix goes to the built-in zoo (registered under the empty prefix).

>>> import ncap.models
>>> {"nb201", "py", "timm", "tv"} <= set(list_sources())
True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ncap.exceptions import ConfigError
from ncap.models.backbone import Backbone

__all__ = ["create_backbone", "list_sources", "register_source"]

_SOURCES: dict[str, Callable[..., Backbone]] = {}
_BUILTIN = ""  # the prefix of the built-in zoo: names without a prefix


def register_source(prefix: str, factory: Callable[..., Backbone]) -> None:
    """Register a model source: ``create_backbone(f"{prefix}:{name}", **options)`` calls
    ``factory(name, **options)``, adding ``log=`` when the factory takes it (``prefix=""``: the
    names without a prefix)."""
    _SOURCES[prefix] = factory


def list_sources() -> list[str]:
    """The registered prefixes (without the built-in zoo's empty one)."""
    return sorted(p for p in _SOURCES if p != _BUILTIN)


def create_backbone(
    name: str, *, log: Callable[[str], None] | None = None, **options: Any
) -> Backbone:
    """Resolve a candidate name to a (pretrained) backbone.

    ``"prefix:rest"`` goes to the source registered for ``prefix``; other names are built-in models.
    ``options`` go to the source (e.g. ``pretrain=`` for the built-in zoo, ``width=`` for ``nb201:``).
    """
    if ":" in name and not Path(name).exists():
        prefix, rest = name.split(":", 1)
        if prefix not in _SOURCES or prefix == _BUILTIN:
            builtin = _SOURCES.get(_BUILTIN)
            names = getattr(builtin, "names", list)()
            raise ConfigError(
                f"unknown model source {prefix!r} in {name!r}; known sources: "
                f"{', '.join(list_sources()) or 'none'}; built-in models: {', '.join(names)}."
            )
        return _call(_SOURCES[prefix], rest, log, options)
    return _call(_SOURCES[_BUILTIN], name, log, options)


def _call(factory: Callable[..., Backbone], rest: str, log, options: dict[str, Any]) -> Backbone:
    """``factory(rest, **options)``, with ``log=`` when the factory takes it."""
    params = inspect.signature(factory).parameters.values()
    if log is not None and any(p.name == "log" or p.kind is p.VAR_KEYWORD for p in params):
        options = {"log": log, **options}
    return factory(rest, **options)
