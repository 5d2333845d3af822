"""From the parsed command line to typed objects: the fine-tuning and prediction settings, the
execution, the strategy and the source accuracies (the parsers are :mod:`ncap.cli.parser`)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ncap.predict.settings import PredictorSettings
from ncap.ranking.source_accuracy import check_source_accuracy, from_sources
from ncap.training.config import FinetuneConfig

__all__ = [
    "config_from_args",
    "execution_from_args",
    "settings_from_args",
    "source_accuracy_from_args",
    "strategy_from_args",
]


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """The FinetuneConfig the flags of :func:`ncap.cli.flags.add_config_args` describe."""
    return FinetuneConfig(
        **{
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(FinetuneConfig)
            if f.metadata["flag"]
        }
    )


def settings_from_args(args, epochs: float):
    """The fine-tuning and prediction settings the shared training flags describe."""
    config = dataclasses.replace(config_from_args(args), epochs=epochs)
    predictor = PredictorSettings(
        variant=args.variant, features=args.features, burn_in=args.burn_in, link=args.link
    )
    return config, predictor


def source_accuracy_from_args(args, models) -> dict[str, float]:
    """The ``--source-accuracy`` items and ``--source-accuracy-file`` as one checked mapping
    (names among ``models``); raises before any data is loaded."""
    pairs = getattr(args, "source_accuracy", None) or ()
    file = getattr(args, "source_accuracy_file", None)
    return check_source_accuracy(from_sources(pairs, file), models)


def strategy_from_args(args) -> Any:
    """rank's ``strategy=``: "fixed", or the halving strategy the flags set."""
    if args.strategy == "fixed":
        return "fixed"
    from ncap.ranking.halving import HalvingSettings  # lazy: torch, keeps ncap --help fast
    from ncap.ranking.strategies import Halving  # lazy: torch, keeps ncap --help fast

    return Halving(
        HalvingSettings(
            eta=args.eta,
            min_budget=args.min_budget,
            max_budget=args.max_budget,
            score=args.rung_score,
            keep_checkpoints=args.keep_checkpoints,
        )
    )


def execution_from_args(args, log=None) -> Any:
    """rank's, search's and run_recipe's ``execution=`` from the hardware flags, --resume /
    --overwrite and --no-progress (no bars with --json)."""
    from ncap.ranking.executors import make_executor  # lazy: torch, keeps ncap --help fast
    from ncap.ranking.spec import Execution  # lazy: torch, keeps ncap --help fast
    from ncap.training.runtime import Runtime  # lazy: torch, keeps ncap --help fast

    return Execution.from_flags(
        resume=args.resume,
        overwrite=bool(args.overwrite),
        runtime=Runtime(device=args.device, amp=not args.no_amp, workers=args.workers),
        executor=make_executor(
            args.executor,
            address=args.address,
            gpus_per_candidate=args.gpus_per_candidate,
            cpus_per_candidate=args.cpus_per_candidate,
        ),
        progress=not args.no_progress and not getattr(args, "json", False),
        log=log,
    )
