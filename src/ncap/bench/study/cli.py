"""``ncap bench evaluate --protocol study``: run the stages, guard the frozen choices, write."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ncap.bench.study.render import render_report, write_study
from ncap.bench.study.render_v3 import render_report_v3, write_study_v3
from ncap.bench.study.stages import (
    REPLICATES,
    data_sha256,
    load_json,
    report_stage,
    selection_stage,
)
from ncap.bench.study.v3 import is_v3, report_stage_v3, selection_stage_v3
from ncap.exceptions import ConfigError, MissingFile

__all__ = ["FROZEN_KEYS", "frozen_differences", "run_study"]

FROZEN_KEYS = (
    "data_sha256", "sigma", "winners", "record_candidates", "q2_winners", "replicates"
)  # fmt: skip


def frozen_differences(committed: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """The frozen choices that differ between a committed selection and a fresh one."""
    diffs = [k for k in FROZEN_KEYS if committed.get(k) != fresh.get(k)]
    rc, rf = committed.get("recalibration", {}), fresh.get("recalibration", {})
    for name in set(rc) | set(rf):
        for f in set(rc.get(name, {})) | set(rf.get(name, {})):
            a, b = rc.get(name, {}).get(f), rf.get(name, {}).get(f)
            if a is None or b is None or any(abs(a[q] - b[q]) > 1e-9 for q in ("68", "95")):
                diffs.append(f"recalibration[{name}][{f}]")
    return diffs


def _progress(label: str):
    def report(done: int, total: int) -> None:
        if done == total or done % 20 == 0:
            print(f"[{label}] scored {done}/{total} runs", file=sys.stderr, flush=True)

    return report


def run_study(
    results_path: Path,
    results: dict[str, Any],
    out: Path,
    *,
    stage: str = "all",
    replicates: int = REPLICATES,
    workers: int | None = None,
) -> int:
    sha = data_sha256(results_path)
    selection_path = out / "selection.json"
    v3 = is_v3(results)  # bench-v3's protocol (docs/benchmark-v3-protocol.md)
    select = selection_stage_v3 if v3 else selection_stage
    evaluate_report = report_stage_v3 if v3 else report_stage
    write = write_study_v3 if v3 else write_study
    if stage in ("selection", "all"):
        fresh = select(results, data_sha=sha, replicates=replicates, workers=workers,
                       progress=_progress("selection"))  # fmt: skip
        if stage == "all" and selection_path.exists():
            committed = load_json(selection_path)
            diffs = frozen_differences(committed, fresh)
            if diffs:
                raise ConfigError(
                    f"the selection recomputed from {results_path} differs from the committed "
                    f"{selection_path} in: {', '.join(diffs)}. Either the data or the code "
                    "changed since the selection was frozen; the report stage only runs with "
                    "the committed choices."
                )
            print(f"the recomputed selection matches {selection_path}", file=sys.stderr)
            selection = committed
        else:
            selection = fresh
            write(out, selection)
            print(f"wrote {selection_path}")
        if stage == "selection":
            print(f"commit {selection_path} before running --stage report.")
            return 0
    else:
        if not selection_path.exists():
            raise MissingFile(
                f"{selection_path} does not exist; run `ncap bench evaluate {results_path} "
                "--stage selection` and commit its output first."
            )
        selection = load_json(selection_path)
    report = evaluate_report(results, selection, data_sha=sha, workers=workers,
                             progress=_progress("report"))  # fmt: skip
    files = write(out, selection, report)
    print((render_report_v3 if v3 else render_report)(report, selection))
    for key, path in files.items():
        print(f"{key:>12}: {path}")
    return 0
