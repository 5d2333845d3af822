"""Progress bars of a ranking (rich, on stderr): candidates and the steps of the running one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["progress_bars"]


class _Bars:
    """Progress bars for candidates and steps (no-ops when disabled)."""

    def __init__(self, progress, n_candidates: int) -> None:
        self.progress = progress
        if progress is not None:
            self.cand = progress.add_task("candidates", total=n_candidates)
            self.steps = progress.add_task("step", total=1, visible=False)

    def candidate_start(self, name: str) -> None:
        if self.progress is not None:
            self.progress.update(self.cand, description=f"candidates ({name})")
            self.progress.reset(self.steps, total=1, visible=True, description=f"{name} steps")

    def step(self, step: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.steps, completed=step, total=total)

    def candidate_done(self, name: str, *, skipped: bool = False) -> None:
        if self.progress is not None:
            self.progress.advance(self.cand)
            if skipped:
                self.progress.console.log(f"{name}: finished earlier, reused (--resume)")


@contextlib.contextmanager
def progress_bars(enabled: bool, n_candidates: int) -> Iterator[_Bars]:
    if not enabled:
        yield _Bars(None, n_candidates)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        yield _Bars(progress, n_candidates)
