"""The flags several commands share, and which flags apply to which command and strategy.

The shared flag groups: the fine-tuning flags (generated from :class:`FinetuneConfig`'s fields),
the hold-out check, the prediction, the output, the hardware and scale-out, the strategy and the
source accuracy; :mod:`ncap.cli.parser` adds them to each command's parser.

The rules: one table, one check. A flag given where it does nothing (a halving setting under the
fixed strategy, ``--score`` under halving, a Ray setting with the local executor, an output flag
of a dry run that writes nothing, an empty ``--out``) is an error naming the flag and what to do,
rather than being silently ignored. A flag counts as given when its value differs from its
command's default.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from ncap.capacitance.variants import VARIANTS
from ncap.exceptions import ConfigError
from ncap.predict.settings import FEATURE_MAPS, LINKS, PredictorSettings
from ncap.ranking.rung_scores import DEFAULT_RUNG_SCORE
from ncap.training.config import FinetuneConfig

__all__ = [
    "RULES",
    "add_config_args",
    "add_log_file",
    "add_runtime_args",
    "add_source_accuracy_args",
    "add_strategy_args",
    "add_training_args",
    "check_flags",
]

_PREDICTOR_DEFAULTS = PredictorSettings  # its field defaults: one source of truth, no sklearn


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


def _csv_names(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


_PARSERS = {"int": int, "float": float, "str": str, "ints": _csv_ints, "names": _csv_names}


def add_config_args(group, *, epochs: float) -> None:
    """One flag per :class:`FinetuneConfig` field (``--batch-size`` for ``batch_size``), from the
    field's metadata; defaults are the config's own, except the command's ``epochs``."""
    for f in dataclasses.fields(FinetuneConfig):
        meta = f.metadata
        if not meta["flag"]:
            continue
        default = epochs if f.name == "epochs" else f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=_PARSERS[meta["kind"]],
            default=default,
            choices=meta["choices"] if meta["kind"] != "names" else None,
            metavar=meta["metavar"],
            help=meta["help"] + ("" if shown is None else f" (default: {shown})"),
        )


def add_training_args(p: argparse.ArgumentParser, *, epochs: float) -> None:
    """The flags of a command that fine-tunes and predicts (demo, rank, nas), group by group."""
    add_config_args(p.add_argument_group("early fine-tuning (the budget)"), epochs=epochs)
    _add_holdout_args(p.add_argument_group("hold-out check"))
    _add_prediction_args(p.add_argument_group("prediction"))
    g = p.add_argument_group("output")
    _add_output_args(g)
    add_log_file(g)
    add_runtime_args(p)


def _add_holdout_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--full-epochs",
        type=float,
        default=None,
        help="also fine-tune to this many epochs and record the true final accuracy",
    )
    g.add_argument(
        "--target-epochs",
        type=float,
        default=None,
        metavar="T",
        help="the full budget you would train the chosen model for: the prediction is for T "
        "(the recommended score uses the budget's share of T) and the cost figure compares with "
        "training every candidate to T; nothing is trained for it (default: --full-epochs)",
    )


def _add_prediction_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--variant",
        choices=VARIANTS,
        default=_PREDICTOR_DEFAULTS.variant,
        help="beta_eff variant of the nc extrapolation (predicted_accuracy; default: %(default)s); "
        "it must be tracked (--variants) or measured on a fixed batch (--fixed-batch)",
    )
    g.add_argument(
        "--features",
        choices=FEATURE_MAPS,
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
        choices=LINKS,
        default=_PREDICTOR_DEFAULTS.link,
        help="regress accuracy itself (identity, the paper's form) or its logit, which keeps predictions in (0, 1) (default: %(default)s)",
    )


def _add_output_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--resume",
        action="store_true",
        help="reuse candidates already finished in --out with the same settings",
    )
    g.add_argument("--overwrite", action="store_true", help="discard earlier results in --out")
    g.add_argument(
        "--json", action="store_true", help="print the results JSON to stdout instead of the table"
    )
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (bars on a terminal; plain lines with elapsed time and an estimate "
        "when stderr is redirected)",
    )


def add_log_file(group: argparse._ArgumentGroup) -> None:
    """--log-file (rank and recipe)."""
    group.add_argument(
        "--log-file",
        default=None,
        metavar="PATH",
        help="also append the run's [ncap] lines (notes, failures; the progress lines when stderr is "
        "not a terminal), time-stamped, to this file",
    )


def add_runtime_args(p: argparse.ArgumentParser) -> None:
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


def add_strategy_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("strategy (docs/halving.md)")
    g.add_argument(
        "--strategy",
        choices=("fixed", "halving"),
        default="fixed",
        help="fixed: every candidate gets --epochs; halving: successive halving, the top 1/eta of each rung continue from their checkpoints (default: %(default)s)",
    )
    g.add_argument(
        "--eta", type=float, default=2.0, help="halving: keep the top 1/eta per rung (default: 2)"
    )
    g.add_argument(
        "--min-budget",
        type=float,
        default=None,
        metavar="EPOCHS",
        help="halving: budget of the first rung in epochs (default: the maximum / eta^2)",
    )
    g.add_argument(
        "--max-budget",
        type=float,
        default=None,
        metavar="EPOCHS",
        help="halving: budget of the last rung in epochs (default: --epochs)",
    )
    g.add_argument(
        "--rung-score",
        default=DEFAULT_RUNG_SCORE,
        metavar="NAME",
        help="halving: what the candidates of a rung are ranked by: any --score name, "
        "last-observed (what ASHA/Hyperband use) or predicted (the extrapolation to beta_eff = 0) "
        "(default: %(default)s, the score bench-v3's study adopted at the rung's budget)",
    )
    g.add_argument(
        "--score",
        default=None,
        metavar="NAME",
        help="fixed: what candidates are ranked by. Default: 'recommended', what the "
        "pre-registered study on bench-v3 adopted at the budget's share of T: logme at about "
        "2.5%%, ravg/lo+logme+dyn/interval/mean-abs (the rank average of the last observed "
        "accuracy, LogME and beta_eff's early decay) at 5-10%%, last-observed from 20%% "
        "(docs/benchmark.md); 'paper': the paper's extrapolation to beta_eff = 0; 'fit/base': "
        "bench-v2's fitted default; or any score by name, e.g. last-observed, "
        "nc/interval/abs-mean/quadratic/b0/logit, ravg/lo+params",
    )
    g.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="halving: keep OUT/checkpoints/*.pt of dropped and finished candidates",
    )


def add_source_accuracy_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "source accuracy (read only by scores that read one, e.g. fit/base; the default, "
        "chosen on bench-v3, reads none)"
    )
    g.add_argument(
        "--source-accuracy",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="a candidate's accuracy on its pretraining task as a fraction in (0, 1], e.g. "
        "timm:resnet50=0.761 for ImageNet top-1 76.1%%; repeatable or comma-separated. ncap's own "
        "zoo records its own; other models have none. A value given replaces a recorded one; "
        "results.json records it (settings.source_accuracy)",
    )
    g.add_argument(
        "--source-accuracy-file",
        default=None,
        metavar="PATH",
        help="source accuracies from a file: .csv with the columns candidate,source_accuracy "
        '(other columns ignored, empty values skipped) or .json {"name": fraction, ...}',
    )


class Rule(NamedTuple):
    dest: str  # the argparse destination
    applies: Callable[[argparse.Namespace], bool]
    where: str  # where the flag applies
    fix: str  # what to do instead


def _halving(args) -> bool:
    return getattr(args, "strategy", None) == "halving"


def _fixed(args) -> bool:
    return getattr(args, "strategy", "fixed") == "fixed"


def _ray(args) -> bool:
    return getattr(args, "executor", None) == "ray"


def _runs(args) -> bool:
    return not getattr(args, "dry_run", False)


_HALVING = "only with --strategy halving"
RULES: tuple[Rule, ...] = (
    *(
        Rule(dest, _halving, _HALVING, "add --strategy halving, or drop it")
        for dest in ("eta", "min_budget", "max_budget", "rung_score", "keep_checkpoints")
    ),
    Rule("score", _fixed, "only with --strategy fixed", "halving ranks each rung by --rung-score"),
    *(
        Rule(dest, _ray, "only with --executor ray", "add --executor ray, or drop it")
        for dest in ("address", "gpus_per_candidate", "cpus_per_candidate")
    ),
    *(
        Rule(dest, _runs, "only when the recipe runs", "a --dry-run writes nothing; drop it")
        for dest in ("resume", "overwrite", "no_progress")
    ),
)


def _defaults(parser: argparse.ArgumentParser, command: str) -> dict[str, object]:
    """The defaults of ``command``'s own parser (each sub-command has its own)."""
    for action in parser._subparsers._group_actions:  # (argparse keeps them there)
        sub = getattr(action, "choices", {}).get(command)
        if sub is not None:
            return {a.dest: a.default for a in sub._actions} | sub._defaults
    return {}


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """ConfigError for the first flag of ``args`` that its command and strategy ignore."""
    out = getattr(args, "out", None)
    if isinstance(out, str) and not out.strip():
        raise ConfigError("--out is empty; name an output folder, e.g. --out runs/first.")
    defaults = _defaults(parser, args.command)
    for rule in RULES:
        if rule.dest not in defaults or rule.applies(args):  # (not a flag of this command)
            continue
        if getattr(args, rule.dest) != defaults.get(rule.dest):
            flag = "--" + rule.dest.replace("_", "-")
            raise ConfigError(f"{flag} applies {rule.where}; {rule.fix}.")
