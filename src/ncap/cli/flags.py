"""Which flags apply to which command and strategy: one table, one check.

A flag given where it does nothing (a halving setting under the fixed strategy, ``--score``
under halving, a Ray setting with the local executor, an output flag of a dry run that writes
nothing, an empty ``--out``) is an error naming the flag and what to do, rather than being
silently ignored. A flag counts as given when its value differs from its command's default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NamedTuple

from ncap.exceptions import ConfigError

__all__ = ["RULES", "check_flags"]


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
