"""Progress of a ranking: rich bars on a terminal, plain log lines anywhere else.

On a terminal (stderr is a TTY) the candidates and the steps of the running one are rich progress
bars. Redirected to a file, a pipe, nohup or a cluster job's log, bars would print nothing useful,
so each candidate's start and end, and each quarter of its steps, become one plain line with the
elapsed time and an estimate of what is left (:class:`ProgressLines`), written through the run's
``log`` (``[ncap] ...`` on stderr, and ``--log-file``).

>>> clock = iter([0.0, 0.0, 5.0, 10.0, 10.0]).__next__
>>> lines = []
>>> p = ProgressLines(2, lines.append, clock=clock)
>>> p.candidate_start("a"); p.step(2, 4); p.candidate_done("a")
>>> lines
['candidate 1/2: a started (0 s elapsed)', 'a: step 2/4 (50%), 5 s, about 5 s left for a', \
'candidate 1/2: a done in 10 s (10 s elapsed; about 10 s left for 1 more, from the mean so far)']
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["ProgressLines", "progress_bars"]


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


class ProgressLines:
    """Plain progress lines: per candidate (start, done, elapsed, estimate) and per quarter of
    its steps. ``total`` is the number of candidate runs expected (successive halving: all rungs).
    """

    def __init__(
        self,
        total: int,
        write: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.write = write
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.spent: list[float] = []  # seconds of each candidate run that finished here
        self.current: str | None = None
        self.current_start = self.start
        self.quarter = 0

    def candidate_start(self, name: str) -> None:
        now = self.clock()
        self.current, self.current_start, self.quarter = name, now, 0
        self.write(
            f"candidate {self.done + 1}/{self.total}: {name} started "
            f"({_seconds(now - self.start)} elapsed)"
        )

    def step(self, step: int, total: int) -> None:
        if total <= 0 or self.current is None:
            return
        quarter = min(4 * step // total, 3)
        if quarter <= self.quarter:
            return
        self.quarter = quarter
        spent = self.clock() - self.current_start
        left = spent * (total - step) / max(step, 1)
        self.write(
            f"{self.current}: step {step}/{total} ({100 * step // total}%), {_seconds(spent)}, "
            f"about {_seconds(left)} left for {self.current}"
        )

    def candidate_done(self, name: str, *, skipped: bool = False) -> None:
        now = self.clock()
        self.done += 1
        if skipped:
            self.write(f"candidate {self.done}/{self.total}: {name} finished earlier, reused")
            return
        took = now - self.current_start if self.current == name else 0.0
        self.spent.append(took)
        more = max(self.total - self.done, 0)
        text = (
            f"candidate {self.done}/{self.total}: {name} done in {_seconds(took)} "
            f"({_seconds(now - self.start)} elapsed"
        )
        if more:
            mean = sum(self.spent) / len(self.spent)
            text += f"; about {_seconds(mean * more)} left for {more} more, from the mean so far"
        self.write(text + ")")
        self.current = None


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
def progress_bars(
    enabled: bool,
    n_candidates: int,
    *,
    log: Callable[[str], None] | None = None,
    terminal: bool | None = None,
) -> Iterator[_Bars | ProgressLines]:
    """Bars when ``enabled`` on a terminal (``terminal``: default, whether stderr is a TTY);
    plain lines through ``log`` (default: stderr) when ``enabled`` elsewhere; nothing otherwise.
    ``n_candidates`` is the number of candidate runs expected."""
    if not enabled:
        yield _Bars(None, n_candidates)
        return
    if not (sys.stderr.isatty() if terminal is None else terminal):
        write = log or (lambda msg: print(f"[ncap] {msg}", file=sys.stderr, flush=True))
        yield ProgressLines(n_candidates, write)
        return

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        yield _Bars(progress, n_candidates)
