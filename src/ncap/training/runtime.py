"""Where and how a candidate runs: device, mixed precision, data-loading workers.

These settings change speed, not the experiment: they are recorded with every candidate but do not
take part in the resume check. On the CPU (the tested default) everything is float32; on CUDA,
mixed precision autocasts the backbone to bfloat16 while the probe, the loss and beta_eff stay in
float32. With ``amp=False`` a CUDA run is float32 with TF32 disabled, so it matches the CPU path to
float tolerance.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ncap.exceptions import ConfigError

__all__ = ["Runtime", "resolve_device"]

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.

    Raises
    ------
    ValueError
        For another string, or a CUDA device that this machine does not have.
    """
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:<index>.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} was asked for but torch sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu, or install a CUDA build of torch "
                "on a machine with a GPU."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device {name!r} does not exist: this machine has {count} GPU(s) "
                f"(cuda:0..cuda:{count - 1})."
            )
    return device


@dataclass(frozen=True)
class Runtime:
    """Execution settings of a fine-tuning run.

    Parameters
    ----------
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:<index>``.
    amp : bool
        Mixed precision (bfloat16 autocast of the backbone) on CUDA; ignored on the CPU and on GPUs
        without bfloat16 support (those run float32).
    workers : int or None
        DataLoader worker processes; None: 0 on the CPU, 4 on CUDA.
    """

    device: str = "cpu"
    amp: bool = True
    workers: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ConfigError(
                f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:<index>."
            )
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}.")

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def precision(self, device: torch.device) -> str:
        """``"bf16"`` when mixed precision applies on ``device``, else ``"fp32"``."""
        if device.type == "cuda" and self.amp and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"

    def num_workers(self, device: torch.device) -> int:
        if self.workers is not None:
            return self.workers
        return 4 if device.type == "cuda" else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def precision_context(device: torch.device, precision: str) -> Iterator[None]:
    """float32 without TF32 on CUDA (matches the CPU), or nothing to change."""
    if device.type == "cuda" and precision == "fp32":
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, allow_tf32=False):
            previous = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32 = previous
    else:
        yield


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of the backbone's forward pass."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
