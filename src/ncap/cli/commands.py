"""The ``ncap`` commands: each parses (:mod:`ncap.cli.parser`, typed by :mod:`ncap.cli.args`), calls
the public API and prints."""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ncap.cli.args import (
    execution_from_args,
    settings_from_args,
    source_accuracy_from_args,
    strategy_from_args,
)
from ncap.cli.demo_imagenet import run_imagenet_demo
from ncap.cli.flags import check_flags
from ncap.cli.parser import build_parser
from ncap.cli.weights import run_weights
from ncap.exceptions import ConfigError, MissingFile, NcapError


def _logger(args):
    """``[ncap] ...`` lines on stderr, also appended with a UTC time stamp to ``--log-file``
    (progress reaches them as plain lines when stderr is not a terminal, ncap.report.progress)."""
    path = getattr(args, "log_file", None)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).touch()  # an unwritable path fails now, before any training

    def log(msg: str) -> None:
        print(f"[ncap] {msg}", file=sys.stderr, flush=True)
        if path is not None:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"{stamp} {msg}\n")

    return log


def _run_rank(
    args, models: list[str], data: str, n_train, n_val, epochs: float, full_epochs, n_test=None
):
    from ncap.data.registry import load_dataset  # lazy: torch, keeps ncap --help fast
    from ncap.ranking.preflight import check_output_dir  # lazy: torch, keeps ncap --help fast
    from ncap.ranking.rank import rank  # lazy: torch, keeps ncap --help fast
    from ncap.ranking.spec import Horizon  # lazy: torch, keeps ncap --help fast

    config, predictor = settings_from_args(args, epochs)
    source_accuracy = source_accuracy_from_args(args, models)  # before loading the data
    horizon = Horizon(target_epochs=getattr(args, "target_epochs", None), full_epochs=full_epochs)
    execution = execution_from_args(args, log=_logger(args))
    strategy = strategy_from_args(args) if hasattr(args, "strategy") else None  # (the demo)
    check_output_dir(args.out, resume=args.resume, overwrite=bool(args.overwrite))  # before loading
    dataset = load_dataset(
        data,
        n_train=n_train,
        n_val=n_val,
        seed=config.seed,
        image_size=getattr(args, "image_size", None),
        root=getattr(args, "data_root", None),
        download=not getattr(args, "no_download", False),
        channels=getattr(args, "channels", None),
    )
    if n_test is not None:
        from ncap.ranking.demo import keep_test  # lazy: torch, keeps ncap --help fast

        dataset = keep_test(dataset, n_test, config.seed)
    return rank(
        models,
        dataset,
        out_dir=args.out,
        config=config,
        predictor=predictor,
        strategy=strategy or "fixed",
        score=args.score if strategy == "fixed" else None,  # (halving ranks by its rung score)
        horizon=horizon,
        source_accuracy=source_accuracy,
        execution=execution,
    )


def _run_nas(args):
    from ncap.data.registry import load_dataset  # lazy: torch, keeps ncap --help fast
    from ncap.models.nb201 import parse_arch, sample_archs  # lazy: torch, keeps ncap --help fast
    from ncap.nas.search import search  # lazy: torch, keeps ncap --help fast
    from ncap.ranking.spec import Horizon  # lazy: torch, keeps ncap --help fast

    if (args.archs is None) == (args.sample is None):
        raise ConfigError("give either --archs A,B,... or --sample N (not both, not neither).")
    archs = (
        [a.strip() for a in args.archs.split(",") if a.strip()]
        if args.archs
        else sample_archs(args.sample, seed=args.sample_seed)
    )
    for arch in archs:  # a malformed architecture fails before the data is loaded
        parse_arch(arch)
    dataset = load_dataset(
        args.data,
        n_train=args.n_train,
        n_val=args.n_val,
        seed=args.seed,
        image_size=args.image_size,
    )
    config, predictor = settings_from_args(args, args.epochs)
    result = search(
        archs,
        dataset,
        out_dir=args.out,
        width=args.width,
        cells=args.cells,
        config=config,
        predictor=predictor,
        score=args.score,
        horizon=Horizon(target_epochs=args.target_epochs, full_epochs=args.full_epochs),
        execution=execution_from_args(args, log=_logger(args)),
    )
    if args.nats_path is not None:
        from ncap.nas.nats import compare_with_nats  # lazy: torch, keeps ncap --help fast
        from ncap.storage import atomic_write_json  # lazy: torch, keeps ncap --help fast

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
    from ncap.recipe import check_models, describe_plan, load_recipe, run_recipe  # lazy: torch
    from ncap.recipe.run import select  # lazy: torch, keeps ncap --help fast

    def subset(text):
        return None if text is None else [t.strip() for t in text.split(",") if t.strip()]

    recipe = load_recipe(args.path)
    # what would run: the plan, the check and the estimate of --models/--datasets' part
    part = select(recipe, datasets=subset(args.datasets), models=subset(args.models))
    problems = check_models(part)
    print(describe_plan(part))
    if problems:
        for problem in problems:
            print(f"ncap: error: {problem}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0

    results = run_recipe(
        recipe,
        out_dir=args.out,
        data_root=args.data_root,
        download=not args.no_download,
        datasets=subset(args.datasets),
        models=subset(args.models),
        execution=execution_from_args(args, log=_logger(args)),
    )
    for result in results.values():
        _print_table(result)
    ok = any(c["status"] == "ok" for r in results.values() for c in r.candidates)
    return 0 if ok else 1


def _bench(args) -> int:
    """``ncap bench STEP``: the step's function."""
    return _BENCH_STEPS[args.bench_command](args)


def _bench_build(args) -> int:
    """``ncap bench build``: fine-tune the plan's runs (resumable), merge them when all exist."""
    from ncap.bench.build import build_benchmark  # lazy: torch, keeps ncap --help fast
    from ncap.bench.plans import plan_for  # lazy: torch, keeps ncap --help fast

    models = [m for m in (args.models or "").split(",") if m]
    plan = plan_for("smoke" if args.smoke else args.plan, models=models or None)
    targets = [t for t in (args.targets or "").split(",") if t]
    try:
        shard = tuple(int(v) for v in args.shard.split("/"))
    except ValueError:
        shard = ()
    if len(shard) != 2:
        raise ConfigError(f"--shard must read K/N (e.g. 0/2), got {args.shard!r}.")
    from ncap.training.runtime import Runtime  # lazy: torch, keeps ncap --help fast

    default_out = {
        "full": "bench-v1.json",
        "v2": "bench-v2.json",
        "v3": "bench-v3.json",
        "nas": "nas-v1.json",
    }
    args.out = args.out or "benchmarks/results/" + default_out.get(
        plan.name, f"bench-{plan.name}.json"
    )
    results = build_benchmark(
        args.out,
        plan,
        log=lambda msg: print(msg, file=sys.stderr),
        only_targets=targets,
        shard=shard,
        runtime=Runtime(device=args.device),
        only_models=[m.strip() for m in (args.only_models or "").split(",") if m.strip()],
    )
    if results is None:
        return 0
    print(
        f"wrote {args.out}: {len(results['runs'])} runs, "
        f"{results['fine_tuning_seconds_total']:.0f} s of fine-tuning, "
        f"{results['wall_seconds_this_invocation']:.0f} s in this invocation"
    )
    return 0


def _bench_simulate(args) -> int:
    """``ncap bench simulate``: replay successive halving on a results file."""
    from ncap.bench.evaluate import load  # lazy: torch, keeps ncap --help fast
    from ncap.bench.simulate import (  # lazy: torch, keeps ncap --help fast
        DEFAULT_METHODS,
        SimulationPlan,
        simulate_results,
        write_simulation,
    )

    results_path = Path(args.results)
    if not results_path.exists():
        raise MissingFile(
            f"results file {results_path} does not exist; run `ncap bench build` first."
        )
    methods = [m for m in (args.methods or "").split(",") if m] or DEFAULT_METHODS
    sigma = None
    if args.study_selection:
        selection = Path(args.study_selection)
        if not selection.exists():
            raise MissingFile(
                f"study selection {selection} does not exist; run `ncap bench evaluate "
                "--protocol study --stage selection` first."
            )
        sigma = json.loads(selection.read_text())["sigma"]
    plan = SimulationPlan(
        methods, replicates=args.replicates, sigma=sigma, refit=not args.fixed_fit
    )
    sim = simulate_results(load(results_path), plan, workers=args.workers)
    out = args.out or results_path.with_name(results_path.stem + "-simulation")
    sim["command"] = " ".join(
        ["ncap bench simulate", str(args.results), "--methods", ",".join(sim["methods"]),
         "--replicates", str(args.replicates), "--out", str(out)]
        + (["--study-selection", str(args.study_selection)] if args.study_selection else [])
        + (["--fixed-fit"] if args.fixed_fit else [])
    )  # fmt: skip
    files = write_simulation(sim, out)
    print(files["markdown"].read_text())
    for key, path in files.items():
        print(f"{key:>9}: {path}")
    return 0


def _bench_refresh_free(args) -> int:
    """``ncap bench refresh-free``: recompute a results file's training-free scores."""
    from ncap.bench.build import refresh_training_free  # lazy: torch, keeps ncap --help fast

    refresh_training_free(args.results, log=lambda msg: print(msg, file=sys.stderr))
    print(f"rewrote the training-free scores of {args.results}")
    return 0


def _bench_export_recommended(args) -> int:
    """``ncap bench export-recommended``: write what ``ncap rank`` ships."""
    from ncap.bench.evaluate import load  # lazy: torch, keeps ncap --help fast
    from ncap.bench.study.export import export_recommended  # lazy: torch

    results_path = Path(args.results)
    if not results_path.exists():
        raise MissingFile(f"results file {results_path} does not exist.")
    study = Path(args.study or results_path.with_name(results_path.stem + "-study"))
    if not (study / "report.json").exists():
        raise MissingFile(
            f"{study / 'report.json'} does not exist; run `ncap bench evaluate "
            f"{results_path}` (both stages) first."
        )
    files = export_recommended(results_path, load(results_path), study, Path(args.out))
    for key, path in files.items():
        print(f"{key:>12}: {path}")
    return 0


def _bench_evaluate(args) -> int:
    """``ncap bench evaluate``: the study (or the legacy evaluation) of a results file."""
    from ncap.bench.evaluate import evaluate_results, load, write_report  # lazy: torch

    results_path = Path(args.results)
    if not results_path.exists():
        raise MissingFile(
            f"results file {results_path} does not exist; run `ncap bench build` first."
        )
    results = load(results_path)
    if _protocol(args.protocol, results) == "study":
        from ncap.bench.study.cli import run_study  # lazy: torch, keeps ncap --help fast

        out = Path(args.out) if args.out else results_path.with_name(results_path.stem + "-study")
        return run_study(results_path, results, out, stage=args.stage,
                         replicates=args.replicates, workers=args.workers)  # fmt: skip
    out = Path(args.out) if args.out else results_path.with_name(results_path.stem + "-evaluation")
    evaluation = evaluate_results(results)
    files = write_report(evaluation, out)
    print(files["markdown"].read_text())
    for key, path in files.items():
        print(f"{key:>9}: {path}")
    return 0


_BENCH_STEPS = {
    "build": _bench_build,
    "simulate": _bench_simulate,
    "refresh-free": _bench_refresh_free,
    "export-recommended": _bench_export_recommended,
    "evaluate": _bench_evaluate,
}


def _protocol(choice: str, results: dict) -> str:
    if choice != "auto":
        return choice
    plan = results.get("plan", {})
    return (
        "study"
        if plan.get("kind", "zoo") == "zoo" and len(plan.get("seeds", [])) == 2
        else "legacy"
    )


def _print_table(result, **kwargs) -> None:
    from ncap.report.tables import print_table  # lazy: torch, keeps ncap --help fast

    print_table(result, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_flags(parser, args)
        if args.command == "zoo":
            from ncap.models.builtin import describe_models  # lazy: torch, keeps ncap --help fast

            for row in describe_models():
                print(f"{row['name']:14s} {row['family']:10s} {row['description']}")
            print(
                "timm:<name>[@random|@<file>]            any timm model (pretrained unless @random)\n"
                "tv:<name>[@random|@<WEIGHTS>]           any torchvision classification model\n"
                "py:<module>:<callable>[@<state_dict>]   your own factory returning the feature extractor"
            )
            return 0
        if args.command == "datasets":
            from ncap.data.registry import describe_datasets  # lazy: torch, keeps ncap --help fast

            for name, note in describe_datasets():
                print(f"{name}{note}")
            print("<path>  an image folder: one sub-folder of images per class")
            return 0
        if args.command == "weights":
            return run_weights(args)
        if args.command == "bench":
            return _bench(args)
        if args.command == "recipe":
            return _run_recipe(args)
        if args.command == "nas":
            result = _run_nas(args)
            verify = args.full_epochs is not None
        elif args.command == "demo" and args.imagenet:
            return run_imagenet_demo(args, _run_rank, _print_table)
        elif args.command == "demo":
            from ncap.models.builtin import DEMO_MODELS  # lazy: torch, keeps ncap --help fast
            from ncap.ranking.demo import demo_task  # lazy: torch, keeps ncap --help fast

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
            # T: --target-epochs, else the --verify budget, else assumed as rank() assumes it
            # (the budget = 10% of T), and the table's title says which
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
    except NcapError as err:  # ncap's own refusals; anything else is a bug and shows its traceback
        print(f"ncap: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _print_table(result, verify=verify)
    return 0 if any(c["status"] == "ok" for c in result.candidates) else 1


if __name__ == "__main__":
    raise SystemExit(main())
