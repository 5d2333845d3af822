"""Build the benchmark: fine-tune every zoo model on every target to the full budget, store everything.

For each target task, model and seed the builder fine-tunes the pretrained backbone under the frozen
probe for ``epochs`` epochs, evaluating every quarter epoch, and keeps the whole trajectory (all
beta_eff variants, losses, accuracies, wall times). Before fine-tuning it computes the training-free
scores of the backbone on the target's training images (LogME of its features). Each finished run
is written atomically to ``<out>.parts/`` at once, so an interrupted build resumes where it stopped;
at the end the parts are merged into one versioned JSON file.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ncap._version import __version__
from ncap.bench.plans import FULL_PLAN, BenchPlan, Target, load_target
from ncap.bench.schema import load_results_file
from ncap.data.dataset import ImageDataset
from ncap.exceptions import ConfigError
from ncap.models.backbone import Backbone
from ncap.models.builtin import model_spec
from ncap.predict.proxies import compute_proxies
from ncap.ranking.runner import TrainingJob, build_backbone, train_candidate
from ncap.ranking.training_free import logme_of
from ncap.storage import atomic_write_bytes, atomic_write_json
from ncap.training.fixed_batch import FixedBatchBetaEff, fixed_probe_batch
from ncap.training.runtime import Runtime

__all__ = ["BENCH_FORMAT", "build_benchmark", "merge", "refresh_training_free"]

BENCH_FORMAT = 1


@dataclass
class _Build:
    plan: BenchPlan
    out: Path
    parts: Path = field(init=False)

    def __post_init__(self) -> None:
        self.parts = self.out.with_name(self.out.name + ".parts")

    def part(self, kind: str, target: str, model: str, seed: int | None = None) -> Path:
        suffix = "" if seed is None else f"-s{seed}"
        return self.parts / kind / target / f"{model}{suffix}.json"


def _dataset_for(target: Target, backbone: Backbone) -> ImageDataset:
    """The target as the model takes it: RGB images in grey for a one-channel model."""
    dataset = load_target(target)
    spec = backbone.input_spec
    grey = spec is not None and spec.channels == 1 and dataset.channels == 3
    return load_target(target, grey=True) if grey else dataset


def _training_free(name: str, target: Target, plan: BenchPlan) -> dict[str, Any]:
    """Scores of the model before any fine-tuning: LogME (zoo) or the zero-cost proxies (NAS)."""
    backbone = build_backbone(name, None, plan.model_options(name))  # unseeded, as built
    dataset = _dataset_for(target, backbone)
    start = time.perf_counter()
    out = backbone.info | {"num_features": backbone.num_features}
    if plan.kind == "nas":
        generator = torch.Generator().manual_seed(0)
        head = torch.nn.Linear(backbone.num_features, dataset.num_classes)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            head.reset_parameters()
        idx = torch.randperm(len(dataset.y_train), generator=generator)[: plan.batch_size]
        model = torch.nn.Sequential(backbone.module, head)
        values, reasons = compute_proxies(model, dataset.x_train[idx], dataset.y_train[idx])
        out |= {
            "proxies": values,
            "proxy_failures": reasons,
            "proxy_seconds": time.perf_counter() - start,
        }
    else:
        config = plan.config_for(name, len(dataset.y_train), plan.seeds[0])
        out |= logme_of(backbone, dataset, config)
    return out


def _identity(plan: dict[str, Any]) -> dict[str, Any]:
    """The parts of a plan that define its runs (fields added later default harmlessly)."""
    keys = ("models", "seeds", "epochs", "evals_per_epoch", "batch_size", "lr", "optimizer")
    keys += ("ceiling_models", "dense_until", "probe_batch")
    sizes = {"input_sizes": [list(row) for row in plan.get("input_sizes") or []]}
    sizes["only_on"] = [[m, list(keys)] for m, keys in plan.get("only_on") or []]
    return (
        {k: plan.get(k) for k in (*keys, "probe_hidden")}
        | sizes
        | {
            "targets": [
                (
                    t["key"],
                    t["dataset"],
                    t["n_train"],
                    t["n_val"],
                    t.get("image_size"),
                    t.get("shift"),
                )
                for t in plan["targets"]
            ]
        }
    )


def refresh_training_free(
    out: str | Path, *, log: Callable[[str], None] | None = print
) -> dict[str, Any]:
    """Recompute the training-free scores of a merged results file with the current code.

    LogME (zoo plans) or the zero-cost proxies (NAS plans) of every (target, model) are computed
    again from the pretrained or freshly initialised backbone, exactly as the builder does, and the
    file is rewritten atomically with its runs untouched; ``training_free_refreshed`` records when.
    """
    out = Path(out)
    results = load_results_file(out)
    plan = BenchPlan.from_dict(results["plan"])
    for target in plan.targets:
        for k, model in enumerate(plan.models, 1):
            if not plan.runs_on(model, target.key):
                continue
            results["training_free"][target.key][model] = _training_free(model, target, plan)
            if log:
                log(f"[{k}/{len(plan.models)}] {target.key} {model}: training-free scores")
    results["training_free_refreshed"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_json(results, out, indent=None)
    return results


def build_benchmark(
    out: str | Path,
    plan: BenchPlan = FULL_PLAN,
    *,
    log: Callable[[str], None] | None = print,
    only_targets: Sequence[str] | None = None,
    shard: tuple[int, int] = (0, 1),
    runtime: Runtime | None = None,
    only_models: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """Run (or resume) every fine-tuning run of ``plan`` and write the merged results to ``out``.

    ``only_targets`` (``only_models``) runs just those targets' (models') jobs, leaving the plan
    unchanged (e.g. the cheap models first, so that a partial build is a full grid of them), and
    ``shard=(k, n)`` just every n-th job from the k-th, to share the work between processes (e.g. one per core with ``OMP_NUM_THREADS=1``, or
    several processes on one GPU); the results are merged, and returned, once every part of the
    plan exists, else None. ``runtime`` picks the device (recorded with every run).
    """
    k, n = shard
    if not 0 <= k < n:
        raise ConfigError(f"shard must be k/n with 0 <= k < n, got {k}/{n}.")
    out = Path(out)
    build = _Build(plan, out)
    plan_path = build.parts / "plan.json"
    if plan_path.exists() and _identity(json.loads(plan_path.read_text())) != _identity(
        plan.to_dict()
    ):
        raise ConfigError(
            f"{build.parts} holds a build of a different plan; delete it or choose another output."
        )
    atomic_write_json(plan.to_dict(), plan_path)
    if plan.reuse:
        _seed_from(build, out.with_name(plan.reuse), log)
    if only_targets:
        unknown = set(only_targets) - {t.key for t in plan.targets}
        if unknown:
            raise ConfigError(
                f"unknown target(s) {sorted(unknown)}; the plan has {[t.key for t in plan.targets]}."
            )
    if only_models:
        unknown = set(only_models) - set(plan.models)
        if unknown:
            raise ConfigError(
                f"unknown model(s) {sorted(unknown)}; the plan {plan.name!r} has {list(plan.models)}."
            )
    _check_external_models(build, only_targets, only_models)
    return _run_jobs(build, log, only_targets, shard, runtime or Runtime(), only_models)


def _check_external_models(
    build: _Build, only_targets: Sequence[str] | None, only_models: Sequence[str] | None = None
) -> None:
    """Build every timm:/tv: model that still has runs to do, so that a missing checkpoint
    (PretrainedWeightsMissing, saying what to install) stops the build before any compute."""
    plan = build.plan
    for i, model in enumerate(plan.models):
        if ":" not in model or plan.kind == "nas" or (only_models and model not in only_models):
            continue
        pending = any(
            not build.part("runs", t.key, model, s).exists()
            for t in plan.targets
            if plan.runs_on(model, t.key) and (not only_targets or t.key in only_targets)
            for s in plan.seeds_for(i)
        )
        if pending:
            build_backbone(model, None, plan.model_options(model))


# the settings that define a run, besides its target and model (bench-v2's parts are reused by
# bench-v3 only when every one of them is equal)
_RUN_SETTINGS = (
    "seeds", "epochs", "evals_per_epoch", "batch_size", "lr", "optimizer", "probe_hidden",
    "pretrain_data", "kind", "dense_until", "probe_batch", "nas_width", "nas_cells",
)  # fmt: skip


def _target_identity(t: dict[str, Any]) -> tuple:
    return (t["dataset"], t["n_train"], t["n_val"], t.get("image_size"), t.get("shift"))


def _seed_from(build: _Build, earlier: Path, log: Callable[[str], None] | None) -> int:
    """Copy the finished parts of an earlier build of the same settings into this build's parts.

    Only (target, model, seed) runs both plans hold are copied, and only when the run settings,
    the target's definition and the model's input size are equal; parts already present are kept.
    Returns how many run parts were copied.
    """
    parts = earlier.with_name(earlier.name + ".parts")
    if not (parts / "plan.json").exists():
        if log:
            log(f"{parts} not found: every run of the plan is built here (none reused).")
        return 0
    old = json.loads((parts / "plan.json").read_text())
    new = build.plan.to_dict()
    differ = [k for k in _RUN_SETTINGS if old.get(k) != new.get(k)]
    if differ:
        raise ConfigError(
            f"{parts} was built with other settings ({', '.join(differ)}) than plan "
            f"{build.plan.name!r}; its runs cannot be reused. Remove `reuse` from the plan or "
            "rebuild the earlier benchmark with the same settings."
        )
    old_targets = {t["key"]: t for t in old["targets"]}
    old_sizes, new_sizes = dict(old.get("input_sizes") or []), dict(build.plan.input_sizes)
    old_models = set(old["models"])
    copied = 0
    for target in build.plan.targets:
        if target.key not in old_targets:
            continue
        if _target_identity(old_targets[target.key]) != _target_identity(asdict(target)):
            raise ConfigError(
                f"target {target.key!r} of {parts} is defined differently "
                f"({old_targets[target.key]}) than in plan {build.plan.name!r} ({target}); rename "
                "one of them."
            )
        for i, model in enumerate(build.plan.models):
            if model not in old_models or old_sizes.get(model) != new_sizes.get(model):
                continue
            if not build.plan.runs_on(model, target.key):
                continue
            for kind, seed in [("training-free", None)] + [
                ("runs", s) for s in build.plan.seeds_for(i)
            ]:
                source = parts / kind / target.key / build.part(kind, "", model, seed).name
                dest = build.part(kind, target.key, model, seed)
                if source.exists() and not dest.exists():
                    atomic_write_bytes(source.read_bytes(), dest)
                    copied += kind == "runs"
    if log:
        log(f"reused {copied} finished run(s) of {parts} (same settings).")
    return copied


def _run_jobs(
    build: _Build,
    log: Callable[[str], None] | None,
    only_targets: Sequence[str] | None,
    shard: tuple[int, int],
    runtime: Runtime,
    only_models: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    plan = build.plan
    start = time.perf_counter()
    all_jobs = [
        (t, m, s)
        for t in plan.targets
        for i, m in enumerate(plan.models)
        if plan.runs_on(m, t.key)
        for s in plan.seeds_for(i)
    ]
    jobs = [
        j
        for index, j in enumerate(all_jobs)
        if (not only_targets or j[0].key in only_targets)
        and (not only_models or j[1] in only_models)
        and index % shard[1] == shard[0]
    ]
    for k, (target, model, seed) in enumerate(jobs, 1):
        run_path = build.part("runs", target.key, model, seed)
        free_path = build.part("training-free", target.key, model)
        if run_path.exists() and free_path.exists():
            continue
        if not free_path.exists():
            atomic_write_json(_training_free(model, target, plan), free_path)
        t0 = time.perf_counter()
        backbone = build_backbone(model, None, plan.model_options(model))  # unseeded, as built
        dataset = _dataset_for(target, backbone)
        n_train = len(dataset.y_train)
        config = plan.config_for(model, n_train, seed)
        callbacks = []
        if plan.probe_batch:  # the same seeded images for every run of the target
            x_fixed, y_fixed = fixed_probe_batch(dataset, plan.probe_batch, seed=0)
            callbacks.append(FixedBatchBetaEff(x_fixed, y_fixed, variants=config.variants))
        job = TrainingJob(
            init_seed=None,  # the plans' runs were built so: a resumed build stays valid
            model_options=plan.model_options(model),
            backbone=backbone,
            runtime=runtime,
            extra_eval_steps=plan.extra_eval_steps(n_train),
            callbacks=callbacks,
            failures=(),  # a failing run stops the build
        )
        traj = train_candidate(model, dataset, config, job).trajectory
        run = {
            "target": target.key,
            "model": model,
            "seed": seed,
            "steps_per_epoch": traj.steps_per_epoch,
            "total_steps": traj.total_steps,
            "seconds": traj.seconds,
            "points": traj.points,
        }
        if plan.probe_batch or runtime.device != "cpu":  # bench-v1 runs keep their format
            run["runtime"] = traj.runtime
        atomic_write_json(run, run_path)
        if log:
            log(
                f"[{k}/{len(jobs)}] {target.key} {model} seed {seed}: final val acc "
                f"{traj.points[-1]['val_accuracy']:.3f} in {time.perf_counter() - t0:.1f} s"
            )
    missing = [j for j in all_jobs if not build.part("runs", j[0].key, j[1], j[2]).exists()]
    if missing:
        if log:
            log(f"{len(missing)} run(s) of the plan are not finished yet; results not merged.")
        return None
    return merge(build, wall_seconds=time.perf_counter() - start)


def merge(build: _Build, *, wall_seconds: float) -> dict[str, Any]:
    """Merge the parts of a finished build into the versioned results file."""
    plan = build.plan
    runs, models = [], {}
    for target in plan.targets:
        for i, model in enumerate(plan.models):
            if not plan.runs_on(model, target.key):
                continue
            models.setdefault(target.key, {})[model] = json.loads(
                build.part("training-free", target.key, model).read_text()
            )
            for seed in plan.seeds_for(i):
                runs.append(json.loads(build.part("runs", target.key, model, seed).read_text()))
    # each model's record from the first target it ran on
    first = {
        m: next(models[t.key][m] for t in plan.targets if m in models[t.key]) for m in plan.models
    }
    zoo = {
        m: {"family": plan.model_family(m) or first[m].get("family")}
        | {"parameters": first[m].get("parameters")}
        | ({"pretrain_epochs": model_spec(m).pretrain_epochs} if plan.name.startswith("v2") else {})
        | (
            {"source_accuracy": first[m]["source_accuracy"]}
            if "source_accuracy" in first[m]
            else {}
        )
        | ({"description": model_spec(m).description} if ":" not in m else {})
        | ({"source_task": plan.source_task(m)} if plan.name.startswith("v3") else {})
        | ({"input_size": dict(plan.input_sizes)[m]} if m in dict(plan.input_sizes) else {})
        for m in plan.models
    }
    run_seconds = sum(r["seconds"] for r in runs)
    results = {
        "format": BENCH_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(shlex.quote(a) for a in ["ncap", *sys.argv[1:]])
        if Path(sys.argv[0]).name == "ncap"
        else None,
        "wall_seconds_this_invocation": wall_seconds,
        "fine_tuning_seconds_total": run_seconds,
        "environment": {
            "ncap": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "processor": platform.processor(),
        },
        "plan": plan.to_dict(),
        "zoo": zoo,
        "training_free": models,
        "runs": runs,
    }
    atomic_write_json(results, build.out, indent=None)
    return results
