"""Model sources for the registry: timm, torchvision, and users' own factories and checkpoints.

Candidate names (``ncap rank --models ...``):

- ``timm:<name>`` -- ``timm.create_model(name, pretrained=True, num_classes=0)``: the classifier is
  removed and the model returns pooled pre-logit features. ``<name>`` may carry a pretrained tag
  (``resnet50.a1_in1k``).
- ``tv:<name>`` -- ``torchvision.models.get_model(name, weights="DEFAULT")`` with the classifier
  (the last layer that outputs the ImageNet classes) replaced by the identity.
- ``py:<module>:<callable>`` -- your factory, called with no arguments; it returns the feature
  extractor (an ``nn.Module``), a ``(module, num_features)`` pair or a :class:`~ncap.models.backbone.Backbone`.

A suffix after ``@`` chooses the weights: ``@random`` (random initialisation, no download),
``@<WEIGHTS_ENUM_NAME>`` for torchvision (e.g. ``tv:resnet50@IMAGENET1K_V2``), or ``@<path>`` to a
local weights file (timm: any file ``timm`` loads; ``py:``: a state dict, loaded strictly except for
extra keys such as an old classifier's).

Pretrained weights come from the libraries' own caches: the Hugging Face hub cache for timm
(``$HF_HOME/hub``), ``$TORCH_HOME/hub/checkpoints`` for torchvision. When they are not cached and the
host cannot be reached, :class:`PretrainedWeightsMissing` says what to download and where to put it.

Input conventions come from the model: timm's ``resolve_model_data_config``, torchvision's
``weights.transforms()`` (so ``tv:inception_v3`` gets 299 pixels, bilinear); a ``py:`` model may
carry a timm-style ``pretrained_cfg`` dict, else it takes the dataset's images as they are stored
(cast to float32).
"""

from __future__ import annotations

import difflib
import importlib
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ncap.data.inputs import InputSpec
from ncap.exceptions import (
    ConfigError,
    MissingDependency,
    MissingFile,
    ModelCodeError,
    NcapError,
    PretrainedWeightsMissing,
)
from ncap.models.backbone import Backbone, backbone_from_factory, parameter_count
from ncap.models.checkpoints import (
    PACKAGED,
    load_packaged,
    locate,
    missing_message,
    packaged_for,
)
from ncap.models.registry import register_source

__all__ = ["PretrainedWeightsMissing", "split_weights", "timm_backbone", "torchvision_backbone"]

IMAGENET_CLASSES = 1000
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def split_weights(name: str) -> tuple[str, str | None]:
    """``"resnet50@IMAGENET1K_V2"`` -> ``("resnet50", "IMAGENET1K_V2")``; no ``@`` -> None."""
    if "@" in name:
        base, weights = name.split("@", 1)
        if not base or not weights:
            raise ConfigError(
                f"bad model name {name!r}: use <name>@<weights>, e.g. resnet18@random."
            )
        return base, weights
    return name, None


def _offline() -> bool:
    return any(
        os.environ.get(k, "").lower() in ("1", "true", "yes")
        for k in ("NCAP_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the download host answers at all (a DNS failure or refusal is immediate).

    Behind a proxy the direct connection says nothing, so the library is left to try.
    """
    if _offline():
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _unknown(kind: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown {kind} architecture {name!r}.{hint} ({len(known)} are available.)")


def _interpolation(value: Any) -> str:
    text = str(getattr(value, "value", value)).lower()
    return text if text in ("bilinear", "bicubic", "nearest") else "bilinear"


def _spec_from_timm_cfg(cfg: dict[str, Any], source: str) -> InputSpec:
    """An InputSpec from a timm-style data config (``input_size``, ``mean``, ``std``, ...)."""
    channels, height, width = cfg["input_size"]
    return InputSpec(
        channels=channels,
        size=(height, width),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        interpolation=_interpolation(cfg.get("interpolation", "bilinear")),
        source=source,
    )


# -- timm --------------------------------------------------------------------------------------------
def _timm_cached_file(cfg: dict[str, Any]) -> tuple[Path | None, str]:
    """The cached weights file of a timm pretrained config, and the instruction to get it."""
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import (  # optional: huggingface_hub (ncap[zoo])
            constants,
            try_to_load_from_cache,
        )

        filename = cfg.get("hf_hub_filename")
        for candidate in [filename] if filename else ["model.safetensors", "pytorch_model.bin"]:
            path = try_to_load_from_cache(hub_id, candidate)
            if isinstance(path, str):
                return Path(path), ""
        return None, (
            f"download it with `huggingface-cli download {hub_id}` on a machine with internet "
            f"(it goes to the Hugging Face cache, here {constants.HF_HUB_CACHE}; copy that folder "
            f"or set HF_HOME), or pass a weights file: timm:{cfg.get('architecture')}@/path/to/"
            "model.safetensors"
        )
    url = cfg.get("url")
    if url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        if path.exists():
            return path, ""
        return None, f"download {url} and put it at {path}"
    return None, "this model has no pretrained weights in timm; use @random or @<file>"


def timm_backbone(spec: str, *, log: Callable[[str], None] | None = None) -> Backbone:
    """A timm model without its classifier (see the module docstring for the name forms)."""
    try:
        import timm  # optional: timm (ncap[zoo])
    except ImportError as err:  # pragma: no cover - the dev install has timm
        raise MissingDependency("timm: models need timm: pip install 'ncap[zoo]'.") from err
    name, weights = split_weights(spec)
    arch = name.split(".", 1)[0]
    if not name.startswith("hf-hub:") and not timm.is_model(arch):
        raise _unknown("timm", name, timm.list_models())
    kwargs: dict[str, Any] = {"num_classes": 0}
    packaged = packaged_for(f"timm:{name}") if weights is None else None
    record: dict[str, Any] = {}
    if weights == "random":
        model = timm.create_model(name, pretrained=False, **kwargs)
        weights_info = "random"
    elif packaged is not None and locate(packaged) is not None:
        model = timm.create_model(name, pretrained=False, **kwargs)
        record = load_packaged(packaged, model)
        weights_info = f"{packaged.package} {packaged.version}"
    else:
        if weights is not None:
            file = Path(weights).expanduser()
            if not file.is_file():
                raise PretrainedWeightsMissing(
                    f"weights file {str(file)!r} for timm:{name} does not exist."
                )
        else:
            pretrained = timm.models.get_pretrained_cfg(name)
            if pretrained is None:
                raise PretrainedWeightsMissing(
                    f"timm has no pretrained weights for {name!r}; use timm:{name}@random or "
                    f"timm:{name}@/path/to/weights."
                )
            cfg = pretrained.to_dict() | {"architecture": arch}
            file, how = _timm_cached_file(cfg)
            if file is None:
                host = (
                    f"https://huggingface.co/{cfg['hf_hub_id']}"
                    if cfg.get("hf_hub_id")
                    else cfg.get("url", "")
                )
                if not host or not _reachable(host):
                    if packaged is not None:
                        raise PretrainedWeightsMissing(missing_message(packaged))
                    raise PretrainedWeightsMissing(
                        f"pretrained weights of timm:{name} are not cached and "
                        f"{host or 'their source'} cannot be reached: {how}. Or use "
                        f"timm:{name}@random for random initialisation."
                    )
        overlay = {"file": str(file)} if file is not None else None
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        weights_info = str(file) if file is not None else "downloaded"
    input_spec = _spec_from_timm_cfg(
        timm.data.resolve_model_data_config(model), "timm resolve_model_data_config"
    )
    info = {
        "family": "timm",
        "source": "timm",
        "architecture": arch,
        "weights": weights_info,
        "pretrained_tag": model.pretrained_cfg.get("tag") if not record else None,
        "parameters": parameter_count(model),
    } | record
    features = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    return Backbone(
        name=f"timm:{spec}",
        module=model,
        num_features=features,
        info=info,
        input_spec=input_spec,
    )


def _packaged_hint(prefix: str, architecture: str) -> str:
    """`` Offline weights of <arch> install with pip: <name> (<install>).`` or ``""``."""
    names = [e for e in PACKAGED.values() if e.name.startswith(f"{prefix}:{architecture}@")]
    return "".join(
        f" Offline weights of this architecture install with pip: {e.name} ({e.install})."
        for e in names
    )


# -- torchvision --------------------------------------------------------------------------------------
def _replace_classifier(model: nn.Module, num_classes: int) -> int:
    """Replace the last Linear/1x1-conv producing ``num_classes`` outputs by the identity.

    Returns its input size (the feature size). Handles ``fc`` (ResNet, Inception), ``classifier``
    (DenseNet), ``classifier[-1]`` (VGG, MobileNet, EfficientNet), ``heads.head`` (ViT) and the
    convolutional classifier of SqueezeNet.
    """
    last = None
    for name, module in model.named_modules():
        if (isinstance(module, nn.Linear) and module.out_features == num_classes) or (
            isinstance(module, nn.Conv2d) and module.out_channels == num_classes
        ):
            last = (name, module)
    if last is None:
        raise ConfigError(
            f"could not find the classifier of {type(model).__name__} (no Linear/Conv2d layer with "
            f"{num_classes} outputs); use a py:<module>:<callable> factory that returns the "
            "feature extractor."
        )
    name, module = last
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.rsplit(".", 1)[-1], nn.Identity())
    return module.in_features if isinstance(module, nn.Linear) else module.in_channels


def _drop_auxiliary_heads(model: nn.Module) -> None:
    """Inception v3 / GoogLeNet: no auxiliary classifiers (their outputs are for ImageNet training)."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for attr in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, attr):
                setattr(model, attr, None)


def _tv_weights(name: str, weights: str | None):
    """The weights enum entry for ``weights`` (None: DEFAULT), or None when there are none."""
    import torchvision  # optional: torchvision (ncap[zoo])

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return None
    if weights in (None, "random", "DEFAULT"):
        return enum.DEFAULT if hasattr(enum, "DEFAULT") else next(iter(enum), None)
    try:
        return enum[weights]
    except KeyError:
        raise ConfigError(
            f"unknown weights {weights!r} for tv:{name}; choose one of "
            f"{', '.join(w.name for w in enum)}, DEFAULT or random."
        ) from None


def torchvision_backbone(spec: str, *, log: Callable[[str], None] | None = None) -> Backbone:
    """A torchvision classifier with its last layer replaced (see the module docstring)."""
    try:
        import torchvision  # optional: torchvision (ncap[zoo])
    except ImportError as err:  # pragma: no cover - the dev install has torchvision
        raise MissingDependency("tv: models need torchvision: pip install 'ncap[zoo]'.") from err
    name, weights = split_weights(spec)
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise _unknown("torchvision", name, known)
    entry = _tv_weights(name, weights)
    kwargs: dict[str, Any] = {}
    if name in ("inception_v3", "googlenet") and (weights == "random" or entry is None):
        kwargs["init_weights"] = True  # torchvision's own initialisation (and no warning)
    packaged = packaged_for(f"tv:{name}@{entry.name}") if entry is not None else None
    record: dict[str, Any] = {}
    if weights == "random" or entry is None:
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        weights_info = "random"
    elif packaged is not None and locate(packaged) is not None:
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        record = load_packaged(packaged, model)  # torch.hub's cache, else the package; sha256
        weights_info = f"{type(entry).__name__}.{entry.name}"
    else:
        path = (
            Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(entry.url).path)
        )
        if not path.exists() and not _reachable(entry.url):
            raise PretrainedWeightsMissing(
                f"pretrained weights {type(entry).__name__}.{entry.name} of tv:{name} are not "
                f"cached and {entry.url} cannot be reached: download that file and put it at "
                f"{path} (torch.hub's cache; set TORCH_HOME to move it), or use tv:{name}@random "
                f"for random initialisation.{_packaged_hint('tv', name)}"
            )
        model = torchvision.models.get_model(name, weights=entry, **kwargs)
        weights_info = f"{type(entry).__name__}.{entry.name}"
    _drop_auxiliary_heads(model)
    num_classes = len(entry.meta["categories"]) if entry is not None else IMAGENET_CLASSES
    num_features = _replace_classifier(model, num_classes)
    input_spec = None
    if entry is not None:
        transform = entry.transforms()
        crop = list(getattr(transform, "crop_size", [224]))
        input_spec = InputSpec(
            channels=3,
            size=(crop[0], crop[-1]),
            mean=tuple(getattr(transform, "mean", IMAGENET_MEAN)),
            std=tuple(getattr(transform, "std", IMAGENET_STD)),
            interpolation=_interpolation(getattr(transform, "interpolation", "bilinear")),
            source=f"torchvision {type(entry).__name__}.{entry.name}.transforms()",
        )
    info = {
        "family": "torchvision",
        "source": "torchvision",
        "architecture": name,
        "weights": weights_info,
        "parameters": parameter_count(model),
    } | record
    return Backbone(
        name=f"tv:{spec}",
        module=model,
        num_features=num_features,
        info=info,
        input_spec=input_spec,
    )


# -- user factories and checkpoints ------------------------------------------------------------------
def _load_state_dict(module: nn.Module, path: Path) -> dict[str, Any]:
    """Load a state dict (or a checkpoint holding one) strictly for the module's own keys."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise MissingFile(f"checkpoint {str(path)!r} {what}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a checkpoint, or refused by weights_only=True
        raise ConfigError(
            f"checkpoint {path} cannot be loaded: {_checkpoint_problem(err)}"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ConfigError(f"{path} does not hold a state dict (got {type(state).__name__}).")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel checkpoints
    state, stripped = _strip_common_prefix(state, set(module.state_dict()))
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that differ, entries that are not tensors
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        detail = lines[0] if lines else str(err).splitlines()[0]
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise ConfigError(
            f"checkpoint {path} does not fit the model: {detail}{more}; make the factory build the "
            "architecture the checkpoint was saved from."
        ) from None
    if result.missing_keys:
        raise ConfigError(
            f"checkpoint {path} lacks {len(result.missing_keys)} of the model's weights (e.g. "
            f"{', '.join(result.missing_keys[:4])}); its keys start with "
            f"{_prefixes(state)}, the model's with {_prefixes(module.state_dict())}: make the "
            "factory build the architecture the checkpoint was saved from (a whole model's "
            "checkpoint: return the same module, or the sub-module the prefix names)."
        )
    out = {"checkpoint": str(path), "ignored_keys": sorted(result.unexpected_keys)}
    return out | ({"stripped_prefix": stripped} if stripped else {})


def _prefixes(keys) -> str:
    """The first components of state-dict keys, as ``features.*, classifier.*`` (at most 4)."""
    heads = sorted({k.split(".", 1)[0] + ".*" for k in keys})
    return ", ".join(heads[:4]) + (" ..." if len(heads) > 4 else "")


def _strip_common_prefix(
    state: dict[str, Any], wanted: set[str]
) -> tuple[dict[str, Any], str | None]:
    """``state`` with the one key prefix (e.g. ``features.`` of a whole model saved where its
    feature extractor is wanted) whose removal yields every key the module wants; unchanged (and
    None) when the keys already fit or no prefix does.

    >>> _strip_common_prefix({"features.0.weight": 1, "head.weight": 2}, {"0.weight"})
    ({'0.weight': 1}, 'features.')
    """
    if not wanted or wanted <= set(state):
        return state, None
    candidates = sorted({k[: i + 1] for k in state for i, ch in enumerate(k) if ch == "."}, key=len)
    for prefix in candidates:
        inner = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if wanted <= set(inner):
            return inner, prefix
    return state, None


def _checkpoint_problem(err: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` refused a file."""
    text = str(err)
    if "Weights only load failed" in text or "weights_only" in text:
        detail = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln), "")
        return (
            "it holds Python objects that weights_only=True refuses to unpickle"
            + (f" ({detail.rstrip('.')})" if detail else "")
            + "; save a plain state dict: torch.save(model.state_dict(), path)"
        )
    if isinstance(err, EOFError) or "unexpected EOF" in text or "truncated" in text.lower():
        return "the file is empty or truncated"
    first = text.splitlines()[0] if text else ""
    return f"not a PyTorch checkpoint, or damaged ({type(err).__name__}{': ' + first if first else ''})"


def _spec_from_pretrained_cfg(module: nn.Module) -> InputSpec | None:
    cfg = getattr(module, "pretrained_cfg", None)
    if not isinstance(cfg, dict) or "input_size" not in cfg:
        return None
    return _spec_from_timm_cfg(cfg, "the model's pretrained_cfg")


def _first_line(err: BaseException) -> str:
    """``TypeError: f() missing 1 required positional argument`` (the first line only)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _current_directory_importable(module_name: str) -> None:
    """Put the current directory on ``sys.path`` when it holds ``module_name`` (``py:my_models:f``
    next to the user's own my_models.py works without PYTHONPATH=., as ``python -m`` would)."""
    top = module_name.split(".", 1)[0]
    cwd = Path.cwd()
    if (cwd / f"{top}.py").is_file() or (cwd / top / "__init__.py").is_file():
        if str(cwd) not in sys.path and "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, str(cwd))


def factory_backbone(spec: str, *, log: Callable[[str], None] | None = None) -> Backbone:
    """``module:callable[@state_dict]`` -> the backbone the factory builds (and the weights)."""
    target, weights = split_weights(spec)
    if target.count(":") != 1:
        raise ConfigError(
            f"bad factory {target!r}: write py:<module>:<callable>, e.g. py:my_models:make_backbone."
        )
    module_name, attr = target.split(":")
    _current_directory_importable(module_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"cannot import {module_name!r} for py:{target} ({err}); put it on PYTHONPATH or "
            "install it."
        ) from err
    except (Exception, SystemExit) as err:  # the module's own code failed while importing
        raise ModelCodeError(
            f"importing {module_name!r} for py:{target} raised {_first_line(err)}"
        ) from err
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}.") from None
    if not callable(factory):
        raise ConfigError(f"py:{target} is a {type(factory).__name__}, not a callable factory.")
    try:
        built = factory()
    except NcapError:
        raise
    except (Exception, SystemExit) as err:  # the user's own code: this candidate fails, not the run
        raise ModelCodeError(f"py:{target} raised {_first_line(err)}") from err
    backbone = backbone_from_factory(built, f"py:{target}")
    backbone.name = f"py:{spec}"
    backbone.info = {
        "family": "user",
        "source": target,
        "parameters": parameter_count(backbone.module),
    } | backbone.info
    if weights is not None and weights != "random":
        backbone.info |= _load_state_dict(backbone.module, Path(weights).expanduser())
    if backbone.input_spec is None:
        backbone.input_spec = _spec_from_pretrained_cfg(backbone.module)
    return backbone


register_source("timm", timm_backbone)
register_source("tv", torchvision_backbone)
register_source("py", factory_backbone)
