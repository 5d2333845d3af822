"""The ``ncap`` command line: ``ncap demo``, ``ncap rank``, ``ncap zoo``, ``ncap datasets``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncap.capacitance.variants import VARIANTS
from ncap.exceptions import ConfigError, MissingFile
from ncap.predict.capacitance import PredictorSettings

DEMO_OUT = "ncap-out/demo"
_PREDICTOR_DEFAULTS = PredictorSettings()  # one source of truth for the prediction defaults


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _add_training_args(p: argparse.ArgumentParser, *, epochs: float) -> None:
    g = p.add_argument_group("early fine-tuning (the budget)")
    g.add_argument(
        "--epochs",
        type=float,
        default=epochs,
        help="fine-tuning budget in epochs (default: %(default)s)",
    )
    g.add_argument(
        "--steps",
        type=int,
        default=None,
        help="fine-tuning budget in training steps (overrides --epochs)",
    )
    g.add_argument(
        "--eval-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="evaluate every STEPS training steps (default: 8 times per epoch)",
    )
    g.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="mini-batch size (default: %(default)s, as in the paper)",
    )
    g.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="learning rate (default: %(default)s, as in the paper)",
    )
    g.add_argument(
        "--optimizer",
        choices=("adam", "sgd", "adamw"),
        default="adam",
        help="optimiser for the backbone (default: %(default)s)",
    )
    g.add_argument(
        "--weight-decay", type=float, default=0.0, help="weight decay (default: %(default)s)"
    )
    g.add_argument(
        "--probe-hidden",
        type=_csv_ints,
        default=(128, 64, 32),
        metavar="W1,W2,...",
        help="hidden widths of the frozen probe, >= 2 (default: 128,64,32)",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of data order, split and probe (default: %(default)s)",
    )
    g.add_argument(
        "--full-epochs",
        type=float,
        default=None,
        help="also fine-tune to this many epochs and record the true final accuracy",
    )
    g.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="square input size for every model (the paper used 32 for CIFAR/SVHN/Fashion-MNIST); default: each model's own pretrained size",
    )
    g = p.add_argument_group("prediction")
    g.add_argument(
        "--variant",
        choices=VARIANTS,
        default=_PREDICTOR_DEFAULTS.variant,
        help="beta_eff variant used for the prediction (default: %(default)s); all are recorded",
    )
    g.add_argument(
        "--features",
        choices=("linear", "quadratic"),
        default=_PREDICTOR_DEFAULTS.features,
        help="feature map of the Bayesian ridge fit (default: %(default)s)",
    )
    g.add_argument(
        "--burn-in",
        type=int,
        default=_PREDICTOR_DEFAULTS.burn_in,
        help="earliest evaluation points left out of the fit (default: %(default)s)",
    )
    g.add_argument(
        "--link",
        choices=("identity", "logit"),
        default=_PREDICTOR_DEFAULTS.link,
        help="regress accuracy itself (identity, the paper's form) or its logit, which keeps predictions in (0, 1) (default: %(default)s)",
    )
    g = p.add_argument_group("output")
    g.add_argument(
        "--resume",
        action="store_true",
        help="reuse candidates already finished in --out with the same settings",
    )
    g.add_argument("--overwrite", action="store_true", help="discard earlier results in --out")
    g.add_argument(
        "--json", action="store_true", help="print the results JSON to stdout instead of the table"
    )
    g.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    _add_runtime_args(p)


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hardware and scale-out")
    g.add_argument(
        "--device",
        default="cpu",
        help="auto, cpu, cuda or cuda:<index> (default: %(default)s; auto picks CUDA when there is a GPU)",
    )
    g.add_argument(
        "--no-amp",
        action="store_true",
        help="float32 on CUDA instead of bfloat16 mixed precision (matches the CPU to float tolerance)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data-loading worker processes (default: 0 on the CPU, 4 on CUDA)",
    )
    g.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="run candidates in this process (local) or as Ray tasks (ray) (default: %(default)s)",
    )
    g.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (auto, host:6379 or ray://host:10001); default: start a local Ray instance",
    )
    g.add_argument(
        "--gpus-per-candidate",
        type=float,
        default=0.0,
        help="GPUs each Ray task asks for (e.g. 1, or 0.5 to share a GPU) (default: %(default)s)",
    )
    g.add_argument(
        "--cpus-per-candidate",
        type=float,
        default=1.0,
        help="CPUs each Ray task asks for (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ncap",
        description="Predict final accuracy from early fine-tuning with neural capacitance (beta_eff) and rank candidate models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="rank the built-in zoo on a built-in target task (offline)",
        description="Pretrain the built-in zoo on Fashion-MNIST classes 0-4 (once, cached), fine-tune each model briefly on classes 5-9 (scikit-learn digits if Fashion-MNIST is not installed) and rank them by predicted final accuracy.",
    )
    demo.add_argument("--out", default=DEMO_OUT, help="output directory (default: %(default)s)")
    demo.add_argument(
        "--verify",
        action="store_true",
        help="also fine-tune every model to the end and compare predicted with true final accuracy (Kendall tau)",
    )
    _add_training_args(demo, epochs=1.0)
    demo.set_defaults(overwrite=None)

    rank = sub.add_parser(
        "rank",
        help="rank candidate models on a dataset",
        description="Fine-tune each candidate briefly under a frozen random probe, predict its final accuracy from beta_eff and rank.",
    )
    rank.add_argument(
        "--models", required=True, help="comma-separated candidate names (see `ncap zoo`)"
    )
    rank.add_argument(
        "--data",
        required=True,
        help="built-in dataset name (see `ncap datasets`) or an image-folder path",
    )
    rank.add_argument(
        "--n-train", type=int, default=None, help="use at most this many training images"
    )
    rank.add_argument(
        "--n-val", type=int, default=None, help="hold out this many training images for validation"
    )
    rank.add_argument(
        "--data-root",
        default=None,
        help="folder of torchvision datasets (cifar10, cifar100, svhn, mnist, cub200); default: $NCAP_DATA_ROOT or ~/.cache/ncap/data",
    )
    rank.add_argument(
        "--no-download",
        action="store_true",
        help="never download a missing dataset (fail with instructions instead)",
    )
    rank.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize the stored images to this square size (image folders of mixed sizes default to 224)",
    )
    rank.add_argument(
        "--out",
        required=True,
        help="output directory for candidates/*.json, results.json/.csv and plots",
    )
    _add_training_args(rank, epochs=1.0)

    recipe = sub.add_parser(
        "recipe",
        help="run a recipe file: many models on several datasets (e.g. recipes/paper.toml)",
        description="Run every dataset of a recipe (a TOML file naming models, datasets and the fine-tuning budget) through `ncap rank`, one output folder per dataset, and write OUT/recipe.json. recipes/paper.toml is the paper's protocol (docs/recipe.md).",
    )
    recipe.add_argument("path", help="the recipe file (TOML)")
    recipe.add_argument("--out", required=True, help="output folder (one sub-folder per dataset)")
    recipe.add_argument(
        "--data-root", default=None, help="folder of the torchvision datasets (see `ncap rank`)"
    )
    recipe.add_argument(
        "--no-download", action="store_true", help="never download a missing dataset"
    )
    recipe.add_argument(
        "--datasets", default=None, help="comma-separated subset of the recipe's datasets"
    )
    recipe.add_argument(
        "--models", default=None, help="comma-separated subset of the recipe's models"
    )
    recipe.add_argument(
        "--dry-run",
        action="store_true",
        help="check the recipe's model names and print the plan and its compute estimate; run nothing",
    )
    g = recipe.add_argument_group("output")
    g.add_argument("--resume", action="store_true", help="reuse finished candidates in --out")
    g.add_argument("--overwrite", action="store_true", help="discard earlier results in --out")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    _add_runtime_args(recipe)

    nas = sub.add_parser(
        "nas",
        help="rank NAS-Bench-201 architectures trained from scratch",
        description="Train each NAS-Bench-201-style architecture from scratch for the budget under the frozen probe and rank them by predicted final accuracy. Same outputs and --resume as `ncap rank`.",
    )
    nas.add_argument(
        "--archs",
        default=None,
        help="comma-separated architecture strings, e.g. '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|'",
    )
    nas.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help="rank N architectures drawn uniformly from the space (instead of --archs)",
    )
    nas.add_argument(
        "--sample-seed", type=int, default=0, help="seed of --sample (default: %(default)s)"
    )
    nas.add_argument(
        "--data",
        default="fashion-mnist",
        help="built-in dataset name or image-folder path (default: %(default)s)",
    )
    nas.add_argument(
        "--n-train", type=int, default=1024, help="training images (default: %(default)s)"
    )
    nas.add_argument(
        "--n-val",
        type=int,
        default=1000,
        help="validation images held out from training data (default: %(default)s)",
    )
    nas.add_argument(
        "--image-size",
        type=int,
        default=14,
        help="resize images to this size for speed (default: %(default)s)",
    )
    nas.add_argument(
        "--width",
        type=int,
        default=8,
        help="channels of the first stage (NAS-Bench-201: 16; default: %(default)s)",
    )
    nas.add_argument(
        "--cells",
        type=int,
        default=1,
        help="cells per stage (NAS-Bench-201: 5; default: %(default)s)",
    )
    nas.add_argument("--out", required=True, help="output directory")
    nas.add_argument(
        "--nats-path",
        default=None,
        help="folder holding NATS-tss-v1_0-3ffb9-simple: also compare the ranking with NATS-Bench's published accuracies",
    )
    nas.add_argument(
        "--nats-dataset",
        default="cifar10",
        choices=("cifar10", "cifar100", "ImageNet16-120"),
        help="NATS-Bench dataset whose accuracies are read (default: %(default)s)",
    )
    _add_training_args(nas, epochs=2.0)

    bench = sub.add_parser(
        "bench",
        help="build or evaluate the ranking benchmark",
        description="The benchmark: full fine-tuning runs of the zoo on several targets, and the evaluation of neural capacitance against the baselines.",
    )
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="STEP")
    build = bench_sub.add_parser(
        "build",
        help="fine-tune every zoo model on every target to the full budget (resumable)",
        description="Fine-tune every benchmark model on every target task with 2 seeds to the full budget, storing every trajectory. Finished runs are kept in OUT.parts/ and skipped when the command is run again.",
    )
    build.add_argument(
        "--out",
        default="benchmarks/results/bench-v1.json",
        help="results file (default: %(default)s)",
    )
    build.add_argument(
        "--plan",
        choices=("full", "smoke", "nas", "nas-smoke"),
        default="full",
        help="full: 14 pretrained models x 3 targets x 2 seeds; nas: 60 NAS-Bench-201 architectures from scratch x 2 seeds; *-smoke: tiny versions for CI (default: %(default)s)",
    )
    build.add_argument("--smoke", action="store_true", help="shorthand for --plan smoke")
    build.add_argument(
        "--shard",
        default="0/1",
        metavar="K/N",
        help="run only every N-th job starting at the K-th, to share a build between N processes (default: %(default)s)",
    )
    build.add_argument(
        "--targets",
        default=None,
        help="comma-separated subset of the plan's targets to run in this process (to share the work between processes); the results are merged once every run exists",
    )
    build.add_argument("--models", default=None, help="comma-separated subset of the plan's models")
    evaluate = bench_sub.add_parser(
        "evaluate",
        help="score every method on a results file and write the report",
        description="Evaluate neural capacitance (every setting) and the baselines on a benchmark results file: rank correlations, top-1 regret and MAE at early budgets of 2.5/5/10/20%% of T, with the noise ceiling.",
    )
    evaluate.add_argument("results", help="results JSON written by `ncap bench build`")
    evaluate.add_argument(
        "--out",
        default=None,
        help="report directory (default: RESULTS without .json, plus -evaluation)",
    )

    sub.add_parser("zoo", help="list the built-in candidate models")
    sub.add_parser("datasets", help="list the built-in datasets")
    return parser


def _settings_from_args(args, epochs: float):
    """The fine-tuning and prediction settings the shared training flags describe."""
    from ncap.training.config import FinetuneConfig

    config = FinetuneConfig(
        epochs=epochs,
        steps=args.steps,
        eval_every=args.eval_every,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        probe_hidden=tuple(args.probe_hidden),
        seed=args.seed,
        input_size=args.input_size,
    )
    predictor = PredictorSettings(
        variant=args.variant, features=args.features, burn_in=args.burn_in, link=args.link
    )
    return config, predictor


def _execution_from_args(args) -> dict[str, Any]:
    """``runtime=`` and ``executor=`` of rank/search from the hardware flags."""
    from ncap.ranking.executors import make_executor
    from ncap.training.runtime import Runtime

    return {
        "runtime": Runtime(device=args.device, amp=not args.no_amp, workers=args.workers),
        "executor": make_executor(
            args.executor,
            address=args.address,
            gpus_per_candidate=args.gpus_per_candidate,
            cpus_per_candidate=args.cpus_per_candidate,
        ),
    }


def _run_rank(args, models: list[str], data: str, n_train, n_val, epochs: float, full_epochs):
    from ncap.data.registry import load_dataset
    from ncap.ranking.rank import rank

    config, predictor = _settings_from_args(args, epochs)
    execution = _execution_from_args(args)
    dataset = load_dataset(
        data,
        n_train=n_train,
        n_val=n_val,
        seed=config.seed,
        image_size=getattr(args, "image_size", None),
        root=getattr(args, "data_root", None),
        download=not getattr(args, "no_download", False),
    )
    return rank(
        **execution,
        models=models,
        data=dataset,
        out_dir=args.out,
        config=config,
        predictor=predictor,
        full_epochs=full_epochs,
        resume=args.resume,
        overwrite=bool(args.overwrite),
        progress=not args.no_progress and not args.json,
        log=lambda msg: print(f"[ncap] {msg}", file=sys.stderr),
    )


def _run_nas(args):
    from ncap.data.registry import load_dataset
    from ncap.models.nb201 import sample_archs
    from ncap.nas.search import search

    if (args.archs is None) == (args.sample is None):
        raise ConfigError("give either --archs A,B,... or --sample N (not both, not neither).")
    archs = (
        [a.strip() for a in args.archs.split(",") if a.strip()]
        if args.archs
        else sample_archs(args.sample, seed=args.sample_seed)
    )
    dataset = load_dataset(
        args.data,
        n_train=args.n_train,
        n_val=args.n_val,
        seed=args.seed,
        image_size=args.image_size,
    )
    config, predictor = _settings_from_args(args, args.epochs)
    result = search(
        archs,
        dataset,
        out_dir=args.out,
        width=args.width,
        cells=args.cells,
        config=config,
        predictor=predictor,
        full_epochs=args.full_epochs,
        resume=args.resume,
        overwrite=bool(args.overwrite),
        progress=not args.no_progress and not args.json,
        log=lambda msg: print(f"[ncap] {msg}", file=sys.stderr),
        **_execution_from_args(args),
    )
    if args.nats_path is not None:
        from ncap.nas.nats import compare_with_nats
        from ncap.storage import atomic_write_json

        summary = compare_with_nats(result.candidates, args.nats_path, dataset=args.nats_dataset)
        atomic_write_json(summary, Path(result.out_dir) / "nats.json")
        print(
            f"NATS-Bench ({args.nats_dataset}, 200 epochs): Kendall tau {summary['kendall']:+.3f}, "
            f"Spearman {summary['spearman']:+.3f} between ncap's prediction and the published "
            "accuracy",
            file=sys.stderr,
        )
    return result


def _run_recipe(args) -> int:
    from ncap.recipe import check_models, describe_plan, load_recipe, run_recipe

    recipe = load_recipe(args.path)
    problems = check_models(recipe)
    print(describe_plan(recipe))
    if problems:
        for problem in problems:
            print(f"ncap: error: {problem}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0

    def subset(text):
        return None if text is None else [t.strip() for t in text.split(",") if t.strip()]

    results = run_recipe(
        recipe,
        out_dir=args.out,
        data_root=args.data_root,
        download=not args.no_download,
        datasets=subset(args.datasets),
        models=subset(args.models),
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        log=lambda msg: print(f"[ncap] {msg}", file=sys.stderr),
        **_execution_from_args(args),
    )
    for result in results.values():
        _print_table(result)
    ok = any(c["status"] == "ok" for r in results.values() for c in r.candidates)
    return 0 if ok else 1


def _bench(args) -> int:
    if args.bench_command == "build":
        from ncap.bench.build import build_benchmark, plan_for

        models = [m for m in (args.models or "").split(",") if m]
        plan = plan_for("smoke" if args.smoke else args.plan, models=models or None)
        targets = [t for t in (args.targets or "").split(",") if t]
        try:
            shard = tuple(int(v) for v in args.shard.split("/"))
        except ValueError:
            shard = ()
        if len(shard) != 2:
            raise ConfigError(f"--shard must read K/N (e.g. 0/2), got {args.shard!r}.")
        results = build_benchmark(
            args.out,
            plan,
            log=lambda msg: print(msg, file=sys.stderr),
            only_targets=targets,
            shard=shard,
        )
        if results is None:
            return 0
        print(
            f"wrote {args.out}: {len(results['runs'])} runs, "
            f"{results['fine_tuning_seconds_total']:.0f} s of fine-tuning, "
            f"{results['wall_seconds_this_invocation']:.0f} s in this invocation"
        )
        return 0
    from ncap.bench.evaluate import evaluate_results, load, write_report

    results_path = Path(args.results)
    if not results_path.exists():
        raise MissingFile(
            f"results file {results_path} does not exist; run `ncap bench build` first."
        )
    out = Path(args.out) if args.out else results_path.with_name(results_path.stem + "-evaluation")
    evaluation = evaluate_results(load(results_path))
    files = write_report(evaluation, out)
    print(files["markdown"].read_text())
    for key, path in files.items():
        print(f"{key:>9}: {path}")
    return 0


def _print_table(result, **kwargs) -> None:
    from ncap.report.tables import print_table

    print_table(result, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "zoo":
            from ncap.models.builtin import describe_models

            for row in describe_models():
                print(f"{row['name']:14s} {row['family']:10s} {row['description']}")
            print(
                "timm:<name>[@random|@<file>]            any timm model (pretrained unless @random)\n"
                "tv:<name>[@random|@<WEIGHTS>]           any torchvision classification model\n"
                "py:<module>:<callable>[@<state_dict>]   your own factory returning the feature extractor"
            )
            return 0
        if args.command == "datasets":
            from ncap._paths import data_root
            from ncap.data.builtin import DATASETS
            from ncap.data.idx import fashion_mnist_dir
            from ncap.data.registry import list_datasets

            for name in list_datasets():
                if name.startswith("fashion"):
                    note = (
                        ""
                        if fashion_mnist_dir() is not None
                        else " (not installed; downloaded when online)"
                    )
                elif name in DATASETS:
                    note = ""
                else:
                    note = f"  torchvision format under {data_root()} (--data-root); downloaded when online"
                print(f"{name}{note}")
            print("<path>  an image folder: one sub-folder of images per class")
            return 0
        if args.command == "bench":
            return _bench(args)
        if args.command == "recipe":
            return _run_recipe(args)
        if args.command == "nas":
            result = _run_nas(args)
            verify = args.full_epochs is not None
        elif args.command == "demo":
            from ncap.models.builtin import DEMO_MODELS
            from ncap.ranking.demo import demo_task

            task = demo_task(args.epochs)
            data, n_train, n_val, epochs, full = (
                task.data,
                task.n_train,
                task.n_val,
                task.epochs,
                task.full_epochs,
            )
            if args.overwrite is None and not args.resume:
                args.overwrite = (
                    True  # the demo is re-runnable; its cache is the zoo, not the results
                )
            full_epochs = (args.full_epochs or full) if args.verify else args.full_epochs
            result = _run_rank(args, list(DEMO_MODELS), data, n_train, n_val, epochs, full_epochs)
            verify = args.verify or args.full_epochs is not None
        else:
            models = [m.strip() for m in args.models.split(",") if m.strip()]
            result = _run_rank(
                args, models, args.data, args.n_train, args.n_val, args.epochs, args.full_epochs
            )
            verify = args.full_epochs is not None
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        print(
            f"\ninterrupted: finished candidates are saved in {out}/candidates; rerun with --resume to continue.",
            file=sys.stderr,
        )
        return 130
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"ncap: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _print_table(result, verify=verify)
    return 0 if any(c["status"] == "ok" for c in result.candidates) else 1


if __name__ == "__main__":
    raise SystemExit(main())
