"""Fine-tune a backbone under a frozen neural capacitance probe and record its trajectory.

The loop is plain PyTorch: shuffled mini-batches (seeded), an input adapter that gives the backbone
its own input convention (:mod:`ncap.data.inputs`), the probe on top of the backbone's features, softmax
cross-entropy, an optimiser over the backbone only. At the evaluation steps
(:mod:`ncap.training.schedule`) it reads the probe's beta_eff for the interval since the last
evaluation (all tracked variants), the mean training loss of the interval and the validation loss
and accuracy, then starts a new interval.

Batches come from a ``DataLoader`` over the in-memory tensors (pinned memory and worker processes
on CUDA); the order of the samples depends only on the seed, so every device sees the same batches.
With mixed precision (CUDA) only the backbone runs under bfloat16 autocast: the probe, the loss and
the beta_eff bookkeeping stay float32/float64.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ncap.capacitance.probe import NeuralCapacitanceProbe
from ncap.capacitance.variants import VARIANTS
from ncap.data.dataset import ImageDataset
from ncap.data.inputs import InputAdapter, InputSpec, check_channels, is_identity
from ncap.exceptions import CandidateError, CheckpointError, ConfigError, ModelCodeError, NcapError
from ncap.results import Trajectory
from ncap.training.callbacks import Callback, CapacitanceRecorder, StepProgress
from ncap.training.checkpoint import (
    Segment,
    check_compatible,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ncap.training.config import FinetuneConfig
from ncap.training.divergence import DivergenceGuard
from ncap.training.fixed_batch import FixedBatchBetaEff, fixed_probe_batch
from ncap.training.probed import ProbedClassifier
from ncap.training.runtime import Runtime, precision_context
from ncap.training.schedule import eval_plan

__all__ = ["evaluate", "finetune", "make_optimizer", "train_steps"]


def make_optimizer(name: str, params, *, lr: float, momentum: float, weight_decay: float):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch: int = 512,
    device: torch.device | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in eval mode.

    ``(x, y)`` may live on the CPU; each slice is moved to ``device`` (default: where ``x`` is).
    """
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        if device is not None:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        logits = model(xb)
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return loss_sum / len(y), correct / len(y)


class _Batches(torch.utils.data.Dataset):
    """Tensors indexed by a whole batch of indices at once (no per-sample collation)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[idx], self.y[idx]


class _BatchOrder(torch.utils.data.Sampler):
    """Index batches of a seeded shuffle, reshuffled at each epoch; batches ``start`` (0-based)
    up to ``total`` of that one sequence, so a run continued at a step sees the batches an
    uninterrupted run would have seen."""

    def __init__(self, n: int, batch_size: int, total: int, seed: int, start: int = 0) -> None:
        self.n, self.batch_size, self.total, self.seed = n, batch_size, total, seed
        self.start = start

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        order, cursor = torch.randperm(self.n, generator=generator), 0
        for index in range(self.total):
            if cursor >= self.n:
                order, cursor = torch.randperm(self.n, generator=generator), 0
            if index >= self.start:
                yield order[cursor : cursor + self.batch_size]
            cursor += self.batch_size


def batch_loader(
    dataset: ImageDataset,
    config: FinetuneConfig,
    total_steps: int,
    *,
    pin_memory: bool = False,
    workers: int = 0,
    start: int = 0,
) -> torch.utils.data.DataLoader:
    """The training batches of a run: seeded order, optional pinned memory and workers; the
    batches after the first ``start`` ones when a run continues from a checkpoint."""
    return torch.utils.data.DataLoader(
        _Batches(dataset.x_train, dataset.y_train),
        sampler=_BatchOrder(
            len(dataset.y_train), config.batch_size, total_steps, config.seed, start=start
        ),
        batch_size=None,
        pin_memory=pin_memory,
        num_workers=workers,
        persistent_workers=False,
    )


def model_input_spec(
    input_spec: InputSpec | None, dataset: ImageDataset, config: FinetuneConfig
) -> InputSpec | None:
    """The spec the adapter targets: the model's, at ``config.input_size`` when that is set, each
    side capped at ``config.max_input_size``."""
    spec = _sized_spec(input_spec, dataset, config)
    cap = config.max_input_size
    if spec is not None and cap is not None and spec.size is not None and max(spec.size) > cap:
        return spec.with_size((min(spec.size[0], cap), min(spec.size[1], cap)))
    return spec


def _sized_spec(
    input_spec: InputSpec | None, dataset: ImageDataset, config: FinetuneConfig
) -> InputSpec | None:
    if input_spec is not None and config.input_size is not None:
        return input_spec.with_size(config.input_size)
    if input_spec is None and config.input_size is not None:
        return InputSpec(
            channels=dataset.channels,
            size=(config.input_size, config.input_size),
            mean=dataset.mean,
            std=dataset.std,
            source="dataset encoding",
        )
    return input_spec


class _ModelCode(nn.Module):
    """The candidate's own backbone: an error raised inside its forward pass fails the candidate.

    Holds no parameters of its own (the backbone's stay where they are); out-of-memory errors and
    ncap's own errors pass through unchanged.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.module(x)
        except (NcapError, torch.OutOfMemoryError):
            raise
        except Exception as err:
            first = str(err).splitlines()[0] if str(err) else ""
            raise ModelCodeError(f"{type(err).__name__}: {first}") from err


def model_front(dataset: ImageDataset, module: nn.Module, spec: InputSpec | None) -> nn.Module:
    """The backbone behind the input adapter (none when the stored images already fit)."""
    module = _ModelCode(module)
    if spec is not None:
        try:
            check_channels(dataset.channels, spec)
        except ValueError as err:
            raise CandidateError(str(err)) from err
    if is_identity(dataset.mean, dataset.std, dataset.channels, dataset.image_size, spec):
        if not torch.is_floating_point(dataset.x_train):
            return nn.Sequential(_ToFloat(), module)
        return nn.Sequential(module)
    adapter = InputAdapter(data_mean=dataset.mean, data_std=dataset.std, spec=spec)
    return nn.Sequential(adapter, module)


class _ToFloat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()


def place(front: nn.Module, device: torch.device | str) -> nn.Module:
    """``front`` on the run's device; a model that cannot be moved there (parameters on the meta
    device, a ``to`` that raises) is the candidate's failure (:class:`CandidateError`)."""
    try:
        return front.to(device)
    except (RuntimeError, TypeError, ValueError) as err:  # (NotImplementedError: a RuntimeError)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CandidateError(
            f"the model cannot be moved to the run's device {device} ({type(err).__name__}: "
            f"{first}); build it with real weights on the CPU (not on the meta device), ncap "
            "moves it."
        ) from err


def on_device(actual: torch.device, wanted: str | torch.device) -> bool:
    """Whether a tensor on ``actual`` is on the run's device ``wanted``; ``"cuda"`` without an
    index means whichever GPU is current, so ``cuda:0`` is on it.

    >>> on_device(torch.device("cuda:0"), "cuda"), on_device(torch.device("cuda:1"), "cuda:0")
    (True, False)
    >>> on_device(torch.device("cpu"), "cuda")
    False
    """
    wanted = torch.device(wanted)
    return actual.type == wanted.type and (wanted.index is None or actual.index == wanted.index)


def _check_inputs(
    front: nn.Module, num_features: int | None, dataset: ImageDataset, device: torch.device
) -> int:
    """One forward pass on two training images; the feature size (checked, or read off)."""
    dataset.validate()
    with torch.no_grad():
        was_training = front.training
        front.eval()
        try:
            out = front(dataset.x_train[:2].to(device))
        except (RuntimeError, ModelCodeError) as err:
            cause = err.__cause__ if isinstance(err, ModelCodeError) else err
            raise CandidateError(
                f"the backbone cannot take this dataset's inputs of shape "
                f"{tuple(dataset.x_train.shape[1:])}: {str(cause).splitlines()[0]}"
            ) from err
        finally:
            front.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise CandidateError(
            f"the backbone returns a {type(out).__name__}, not a tensor; it must return one "
            "feature tensor (batch, num_features)."
        )
    if not on_device(out.device, device):
        raise CandidateError(
            f"the backbone returns its features on {out.device}, not on the run's device "
            f"{torch.device(device)}; its forward must keep them on its input's device."
        )
    if out.ndim == 2 and out.shape[0] != 2:
        raise CandidateError(
            f"the backbone maps a batch of 2 images to {out.shape[0]} feature rows; it must keep "
            "the batch dimension (no reduction over the batch)."
        )
    if out.ndim != 2:
        raise CandidateError(
            f"the backbone returns features of shape {tuple(out.shape[1:])}; it must return one "
            "feature vector per image (batch, num_features): remove the classifier and pool."
        )
    if num_features is not None and out.shape[1] != num_features:
        raise CandidateError(
            f"the backbone returns features of shape {tuple(out.shape[1:])} but the probe expects "
            f"{num_features}; fix the backbone's declared feature size (num_features)."
        )
    return int(out.shape[1])


def train_steps(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | None = None,
    on_nonfinite: Callable[[int, float], None] | None = None,
    callbacks: Sequence[Callback] = (),
    first_step: int = 1,
) -> int:
    """The one training loop (fine-tuning and the zoo's pretraining): for each batch, softmax
    cross-entropy, backward, an optimiser step, then every callback's ``on_step_end``.

    ``on_nonfinite(step, loss)`` is called before the backward pass of a NaN/inf loss (it may
    raise). Steps are numbered from ``first_step`` (a run continued from a checkpoint goes on
    with its numbering). Returns the number of the last step taken (``first_step - 1`` if none).
    """
    step = first_step - 1
    for step, (xb, yb) in enumerate(batches, start=first_step):
        if device is not None:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss_value = float(loss.detach())
        if on_nonfinite is not None and not math.isfinite(loss_value):
            on_nonfinite(step, loss_value)
        loss.backward()
        optimizer.step()
        for callback in callbacks:
            callback.on_step_end(step, loss_value, len(yb))
    return step


def finetune(
    module: nn.Module,
    num_features: int | None,
    dataset: ImageDataset,
    config: FinetuneConfig,
    *,
    input_spec: InputSpec | None = None,
    runtime: Runtime | None = None,
    on_step: Callable[[int, int], None] | None = None,
    extra_eval_steps: Sequence[int] = (),
    evaluate_test: bool = False,
    callbacks: Sequence[Callback] = (),
    segment: Segment | None = None,
) -> Trajectory:
    """Fine-tune ``module`` under a frozen random probe; return the recorded trajectory.

    Parameters
    ----------
    module : nn.Module
        Backbone mapping a batch of model inputs to ``(batch, num_features)`` features. It is
        trained in place (and moved to the run's device).
    num_features : int or None
        The backbone's feature size (the probe's input size); None reads it off a forward pass.
    dataset : ImageDataset
    config : FinetuneConfig
    input_spec : InputSpec, optional
        The backbone's input convention; the stored images are adapted to it per batch. None feeds
        them as they are.
    runtime : Runtime, optional
        Device, mixed precision and loader workers (default: CPU, float32, no workers).
    on_step : callable(step, total_steps), optional
        Progress callback after every training step (a :class:`StepProgress`).
    callbacks : sequence of Callback
        Called once with the model before training (``on_train_start``), after every step
        (``on_step_end``) and after every evaluation (``on_evaluate``, with the recorded point,
        e.g. :class:`ncap.training.fixed_batch.FixedBatchBetaEff` adds beta_eff on a fixed batch).
    extra_eval_steps : sequence of int
        Steps to evaluate at (on the full validation images) besides the config's schedule and
        the last step (:mod:`ncap.training.schedule`; a longer run uses this to evaluate where a
        shorter budget ends, so its prefix equals the short run).
    evaluate_test : bool
        Also evaluate the test split (when the dataset has one) at the end of the run (of this
        call, when it stops early).
    segment : Segment, optional
        The part of the run this call trains (:class:`ncap.training.checkpoint.Segment`): stop at
        a step, continue from a checkpoint, write one where it stops (default: the whole run).

    Raises
    ------
    CheckpointError
        When ``segment.resume_from`` cannot continue this run (unreadable, other settings,
        another owner, past ``segment.stop_at``, or state that does not fit the model); nothing
        is trained then.
    CandidateError
        For a run that diverges (:mod:`ncap.training.divergence`: a NaN/inf loss or beta_eff, a
        loss far above its start), inputs the backbone cannot take (channels, size), or a
        feature size that does not match ``num_features``.
    """
    runtime, segment = runtime or Runtime(), segment or Segment()
    device = runtime.torch_device()
    precision = runtime.precision(device)
    spec = model_input_spec(input_spec, dataset, config)
    front = place(model_front(dataset, module, spec), device)
    with precision_context(device, precision):
        num_features = _check_inputs(front, num_features, dataset, device)
        probe = _probe(num_features, dataset, config, device)
        model = ProbedClassifier(front, probe, device=device, precision=precision)
        optimizer = _optimizer(module, config)
        n = len(dataset.y_train)
        traj = Trajectory(
            steps_per_epoch=config.steps_per_epoch(n),
            total_steps=config.total_steps(n),
            num_features=num_features,
            runtime={
                "device": str(device),
                "precision": precision,
                "workers": runtime.num_workers(device),
                "input": None if spec is None else spec.to_dict(),
            },
        )
        state, first, last = _resume_point(segment, config, traj.total_steps)
        loader = batch_loader(dataset, config, last, pin_memory=device.type == "cuda",
                              workers=runtime.num_workers(device), start=first)  # fmt: skip
        callbacks = _with_fixed_batch(callbacks, dataset, config)
        guard = DivergenceGuard(dataset.num_classes, lr=config.lr)
        recorder = CapacitanceRecorder(
            traj,
            model=model,
            probe=probe,
            validation=(dataset.x_val, dataset.y_val),
            device=device,
            plan=eval_plan(
                config, n, len(dataset.y_val), total=traj.total_steps, extra=extra_eval_steps
            ),  # fmt: skip
            evaluate=evaluate,
            read_beta=_read_beta,
            listeners=[guard, *callbacks],
            record_images=config.val_share is not None,
        )
        progress = [StepProgress(on_step, traj.total_steps)] if on_step is not None else []
        for callback in callbacks:
            callback.on_train_start(model)
        traj.first_step = first
        run = _TrainingState(model, optimizer, probe, recorder, guard, callbacks, traj)
        if state is not None:
            run.restore(state, segment.resume_from)
        start = recorder.start if state is None else time.perf_counter()
        model.train()
        batches = iter(loader)  # (creating the iterator draws from the global generator)
        if state is not None:
            set_rng_state(state["rng"], device)

        def diverged(step: int, loss: float) -> None:
            raise CandidateError(
                f"training diverged at step {step}: the loss is {loss}; lower the "
                f"learning rate (now {config.lr}) or check the data for NaN/inf values."
            )

        traj.last_step = train_steps(model, batches, optimizer, device=device,
                                     on_nonfinite=diverged,
                                     callbacks=[guard, *callbacks, *progress, recorder],
                                     first_step=first + 1)  # fmt: skip
        traj.seconds = time.perf_counter() - start
        if segment.checkpoint_to is not None:
            run.save(segment, config, device)
        if evaluate_test and dataset.x_test is not None:
            test_loss, test_acc = evaluate(model, dataset.x_test, dataset.y_test, device=device)
            traj.test = {"step": traj.last_step, "test_loss": test_loss, "test_accuracy": test_acc}
    return traj


def _probe(
    num_features: int, dataset: ImageDataset, config: FinetuneConfig, device: torch.device
) -> NeuralCapacitanceProbe:
    """The frozen random probe (seeded by the config; the global generator is seeded too)."""
    torch.manual_seed(config.seed)
    try:
        return NeuralCapacitanceProbe(
            num_features,
            dataset.num_classes,
            hidden=config.probe_hidden,
            activation=config.probe_activation,
            seed=config.seed,
            lr=config.lr,
            variants=config.variants,
        ).to(device)
    except ValueError as err:  # the maths layer raises plain ValueErrors for bad settings
        raise ConfigError(str(err)) from err


def _optimizer(module: nn.Module, config: FinetuneConfig) -> torch.optim.Optimizer:
    """The config's optimiser over the backbone's trainable parameters (there must be some)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        raise CandidateError(
            "the backbone has no trainable parameters (all frozen or none at all); fine-tuning "
            "needs some: unfreeze at least its last layers."
        )
    return make_optimizer(config.optimizer, trainable, lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)  # fmt: skip


def _resume_point(
    segment: Segment, config: FinetuneConfig, total_steps: int
) -> tuple[dict[str, Any] | None, int, int]:
    """The checkpoint ``segment`` continues from (checked against the run; None: the start), the
    step it is at and the step this call stops at."""
    state = None
    if segment.resume_from is not None:
        state = load_checkpoint(segment.resume_from)
        check_compatible(state, config.to_dict(), total_steps, segment.resume_from,
                         owner=segment.owner)  # fmt: skip
    first = 0 if state is None else int(state["step"])
    last = total_steps if segment.stop_at is None else min(segment.stop_at, total_steps)
    if last < first:
        raise CheckpointError(
            f"cannot stop at step {segment.stop_at}: the checkpoint {segment.resume_from} is at "
            f"step {first}."
        )
    return state, first, last


def _with_fixed_batch(
    callbacks: Sequence[Callback], dataset: ImageDataset, config: FinetuneConfig
) -> list[Callback]:
    """``callbacks``, plus the fixed-batch measurement of the variants not tracked per step when
    the config asks for one (the costly variants at evaluations only)."""
    fixed = [v for v in VARIANTS if v not in config.variants]
    if config.fixed_batch is None or not fixed:
        return list(callbacks)
    x_fixed, y_fixed = fixed_probe_batch(dataset, config.fixed_batch, seed=config.seed)
    return [*callbacks, FixedBatchBetaEff(x_fixed, y_fixed, variants=fixed)]


@dataclass
class _TrainingState:
    """What a checkpoint holds besides the step and the generators: the model, the optimiser, the
    probe's statistics, the recorder, the divergence guard, the callbacks and the points."""

    model: ProbedClassifier
    optimizer: torch.optim.Optimizer
    probe: NeuralCapacitanceProbe
    recorder: CapacitanceRecorder
    guard: DivergenceGuard
    callbacks: Sequence[Callback]
    traj: Trajectory

    def restore(self, state: dict[str, Any], source: str | os.PathLike | None) -> None:
        """Load ``state`` (read from ``source``); a CheckpointError when it does not fit."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.probe.statistics.load_state_dict(state["statistics"])
            self.recorder.load_state_dict(state["recorder"])
            if "guard" in state:  # (checkpoints of ncap 0.3 did not keep it)
                self.guard.load_state_dict(state["guard"])
            for callback, callback_state in zip(self.callbacks, state["callbacks"], strict=True):
                callback.load_state_dict(callback_state)
            self.traj.points = list(state["points"])
        except (KeyError, ValueError, TypeError, RuntimeError) as err:  # another model's
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise CheckpointError(
                f"checkpoint {source} does not fit this model ({type(err).__name__}: "
                f"{first_line}); delete it to start the candidate over."
            ) from err

    def save(self, segment: Segment, config: FinetuneConfig, device: torch.device) -> None:
        """Write the checkpoint ``segment.checkpoint_to`` at the step reached."""
        save_checkpoint(
            {
                "step": self.traj.last_step,
                "total_steps": self.traj.total_steps,
                "config": config.to_dict(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "statistics": self.probe.statistics.state_dict(),
                "recorder": self.recorder.state_dict(),
                "guard": self.guard.state_dict(),
                "callbacks": [callback.state_dict() for callback in self.callbacks],
                "points": self.traj.points,
                "rng": rng_state(device),
            }
            | ({} if segment.owner is None else {"owner": segment.owner}),
            segment.checkpoint_to,
        )


def _read_beta(probe: NeuralCapacitanceProbe) -> dict[str, float | None]:
    """beta_eff of every tracked variant; None where it is undefined (zero total arc weight)."""
    values: dict[str, float | None] = {}
    for variant in probe.variants:
        try:
            values[variant] = float(probe.beta_eff(variant))
        except ValueError:
            values[variant] = None
    return values
