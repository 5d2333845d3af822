"""``ncap demo --imagenet``: four real ImageNet checkpoints and their random twins, ranked."""

from __future__ import annotations

import json
import time

from ncap.cli.parser import DEMO_OUT

__all__ = ["run_imagenet_demo"]


def run_imagenet_demo(args, run_rank, print_table) -> int:
    """Rank the task's models (``run_rank`` is the command line's ranking call), print the table
    and how each real checkpoint did against its twin."""
    from ncap.ranking.demo import imagenet_demo_task, twin_comparison  # lazy: torch

    task = imagenet_demo_task(args.epochs, args.input_size)
    args.input_size = task.input_size
    if args.out == DEMO_OUT:
        args.out = f"{DEMO_OUT}-imagenet"
    if args.overwrite is None and not args.resume:
        args.overwrite = True  # re-runnable, as the zoo demo
    start = time.perf_counter()
    result = run_rank(
        args,
        list(task.models),
        task.data,
        task.n_train,
        task.n_val,
        task.epochs,
        args.full_epochs,
        n_test=task.n_test,
    )
    seconds = time.perf_counter() - start
    rows = twin_comparison(result.candidates, result.ranking)
    if args.json:
        print(json.dumps(result.to_dict() | {"twins": rows, "seconds": seconds}, indent=2))
    else:
        print_table(result, verify=args.full_epochs is not None)
        print(_twin_lines(rows, task, seconds))
    return 0 if any(c["status"] == "ok" for c in result.candidates) else 1


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _twin_lines(rows: list[dict], task, seconds: float) -> str:
    lines = [
        f"real checkpoints against their random twins ({task.data}, {task.input_size} px, "
        f"{task.n_train or 'all'} training images, {task.epochs:g} epoch):"
    ]
    for row in rows:
        real, twin = row["real"], row["twin"]
        if real["status"] != "ok" or twin["status"] != "ok":
            lines.append(f"  {row['model']}: {real['status']}; twin {twin['status']}")
            continue
        verdict = "above" if row["ranked_above_twin"] else "NOT above"
        lines.append(
            f"  {row['model']}: rank {real['rank']}, observed {_pct(real['observed_accuracy'])}, "
            f"predicted {_pct(real['predicted_accuracy'])}; twin rank {twin['rank']}, observed "
            f"{_pct(twin['observed_accuracy'])}, predicted {_pct(twin['predicted_accuracy'])}: "
            f"{verdict} its twin"
        )
    above = sum(r["ranked_above_twin"] for r in rows)
    lines.append(
        f"{above} of {len(rows)} real checkpoints ranked above their twins; the demo took "
        f"{seconds:.0f} s."
    )
    return "\n".join(lines)
