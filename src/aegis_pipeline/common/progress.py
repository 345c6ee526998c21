"""Progress of long work (sync, consistency check and repair, collection, cold path, benchmarks), shown where a
person or a log reader can follow it:

- on a terminal, a live `rich` bar per block of work: what, how far (done/total), how fast and how long still
  (with no total known: a spinner, the count and the rate); the finished line stays on screen;
- anywhere else (Airflow task logs, CI, a pipe), one structured log line `progress` with the same figures
  (`task`, `done`, `total`, `unit`, `rate_per_second`, `eta_seconds`, `elapsed_seconds`, `final`) at most every
  `log_every_seconds`, plus a final line when the block ends, even when it ends with an exception.

    with progress("sync vectors", total=changed) as bar:
        for batch in batches:
            ...
            bar.advance(len(batch))

The rate is the mean since the block began and the remaining time is what is left at that rate, on the bar and
in the log line alike. No thread of ours: `advance` only counts (and, off a terminal, reads the clock), the bar
is redrawn by rich's own refresh thread, and a log line is written by the `advance` that finds one due, so
a block that stops advancing logs nothing until it advances again or ends.

Known limit: log lines written to the terminal while a bar is drawn are not routed above it (the logging
handlers hold the real stderr, see `common.logging`), so they interleave with the bar.

May import the standard library, `common.logging` (structlog) and rich.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn
from rich.progress import Progress as RichProgress
from rich.table import Column
from rich.text import Text

from aegis_pipeline.common.logging import get_logger

# The default of the PROGRESS_LOG_SECONDS setting (settings.py, which this bottom layer may not import): callers
# that hold the settings pass `log_every_seconds=settings.progress_log_seconds`.
DEFAULT_LOG_EVERY_SECONDS = 5.0

log = get_logger(__name__)


class Progress:
    """How far one block of work has come; `progress()` makes one and shows it.

    `advance` is called per record or per batch, so it does as little as it can: on a terminal one addition (the
    bar reads `done` when it redraws), elsewhere one addition and one clock read (about 0.2 s per million calls
    on the 2-core host). The clock is read on every call rather than every N calls: with one call per slow batch,
    any N would hold a due line back for N batches.
    """

    def __init__(self, task: str, total: int | None, unit: str) -> None:
        self.task = task
        self.total = total
        self.unit = unit
        self.done = 0
        self._started_at = time.monotonic()
        self._ended_at: float | None = None

    def advance(self, amount: int = 1) -> None:
        """Count `amount` more units done (default 1)."""
        self.done += amount

    def set_total(self, total: int | None) -> None:
        """The total once it is known (or known better); None: unknown again."""
        self.total = total

    def _end(self) -> None:
        """Freeze the figures at the block's end (the finished bar keeps the rate it ended with)."""
        if self._ended_at is None:
            self._ended_at = time.monotonic()

    def figures(self) -> dict[str, Any]:
        """The figures the bar shows and the log line carries: rate since the start, remaining time at that rate."""
        elapsed = (self._ended_at if self._ended_at is not None else time.monotonic()) - self._started_at
        rate = self.done / elapsed if elapsed > 0 else None
        eta: float | None = None
        if self.total is not None:
            remaining = max(self.total - self.done, 0)
            if remaining == 0:
                eta = 0.0
            elif rate:
                eta = round(remaining / rate, 3)
        return {"task": self.task, "done": self.done, "total": self.total, "unit": self.unit,
                "rate_per_second": None if rate is None else round(rate, 1), "eta_seconds": eta,
                "elapsed_seconds": round(elapsed, 3)}


class _LoggedProgress(Progress):
    """Off a terminal: a `progress` log line when `advance` finds one due, and a final one at the end."""

    def __init__(self, task: str, total: int | None, unit: str, log_every_seconds: float) -> None:
        super().__init__(task, total, unit)
        self._log_every_seconds = log_every_seconds
        self._next_line_at = self._started_at + log_every_seconds

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        now = time.monotonic()
        if now >= self._next_line_at:
            self._next_line_at = now + self._log_every_seconds
            log.info("progress", **self.figures(), final=False)

    def _end(self) -> None:
        super()._end()
        log.info("progress", **self.figures(), final=True)


def _clock(seconds: float) -> str:
    minutes, whole_seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{whole_seconds:02d}"


def _block(task: Task) -> Progress:
    block: Progress = task.fields["block"]
    return block


class _BarOrSpinnerColumn(ProgressColumn):
    """A bar where the total is known, a spinner where it is not. The bar takes the width the figures leave (up to
    30 columns): on a narrow terminal it shrinks rather than the figures wrap."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(min_width=4, max_width=30))
        self._bar = BarColumn(bar_width=None)
        self._spinner = SpinnerColumn(finished_text="")

    def render(self, task: Task) -> Any:
        return self._bar(task) if task.total is not None else self._spinner(task)


class _FiguresColumn(ProgressColumn):
    """A column of text that is cut rather than wrapped onto a second line, which would break the live display."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True))


class _CountColumn(_FiguresColumn):
    def render(self, task: Task) -> Text:
        block = _block(task)
        total = f"/{block.total:,}" if block.total is not None else ""
        return Text(f"{block.done:,}{total} {block.unit}", style="progress.download")


class _RateColumn(_FiguresColumn):
    def render(self, task: Task) -> Text:
        block = _block(task)
        rate = block.figures()["rate_per_second"]
        if rate is None:
            return Text("")
        return Text(f"{rate:,.1f} {block.unit}/s" if rate < 10 else f"{rate:,.0f} {block.unit}/s",
                    style="progress.data.speed")


class _RemainingColumn(_FiguresColumn):
    def render(self, task: Task) -> Text:
        block = _block(task)
        if block.total is None:
            return Text("")
        eta = block.figures()["eta_seconds"]
        return Text(f"eta {_clock(eta) if eta is not None else '-:--:--'}", style="progress.remaining")


class _LiveBars(RichProgress):
    """The live display of one terminal stream, shared by every block open on it at once (the consistency check
    runs its targets concurrently; two rich displays on one terminal would draw over each other).

    Rows are brought up to date from each open block's count when rich redraws (10 times a second, in its own
    thread), so `advance` never touches rich. stdout and stderr are not redirected into the display: a command's
    stdout must stay where it goes (a pipe, `--json`), and log lines (their handlers hold the real stderr) could
    not be redirected anyway.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream_key = id(stream)
        self._open: dict[TaskID, Progress] = {}  # set first: rich's constructor already renders
        super().__init__(
            _BarOrSpinnerColumn(),
            TextColumn("[progress.description]{task.description}", table_column=Column(no_wrap=True)),
            _CountColumn(), _RateColumn(), _RemainingColumn(),
            console=Console(file=stream, force_terminal=True), redirect_stdout=False, redirect_stderr=False,
        )

    @classmethod
    def on(cls, stream: TextIO) -> _LiveBars:
        """The display already drawing on `stream`, or a new one, started."""
        bars = _displays.get(id(stream))
        if bars is None:
            bars = _displays[id(stream)] = cls(stream)
            bars.start()
        return bars

    def open(self, block: Progress) -> TaskID:
        task_id = self.add_task(block.task, total=block.total, block=block)
        self._open[task_id] = block
        return task_id

    def close(self, task_id: TaskID, *, succeeded: bool) -> None:
        """Draw the block's last state; the display stops (its lines stay) when no block is open on it any more.
        A block that ended well with no total shows as complete, one that raised keeps its spinner."""
        block = self._open.pop(task_id)
        self._sync(task_id, block, total=block.total if block.total is not None or not succeeded else block.done)
        if not self._open:
            del _displays[self._stream_key]
            self.stop()

    def _sync(self, task_id: TaskID, block: Progress, *, total: int | None) -> None:
        task = next(task for task in self.tasks if task.id == task_id)
        task.total = total  # assigned, not through `update`, which cannot set it back to None
        self.update(task_id, completed=block.done)

    def get_renderables(self) -> Any:
        for task_id, block in tuple(self._open.items()):  # a snapshot: blocks open and close in the main thread
            self._sync(task_id, block, total=block.total)
        yield from super().get_renderables()


_displays: dict[int, _LiveBars] = {}  # id(stream) -> the display drawing on it


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextlib.contextmanager
def progress(task: str, *, total: int | None = None, unit: str = "records", log_every_seconds: float | None = None,
             stream: TextIO | None = None) -> Iterator[Progress]:
    """Show the progress of the work done inside the block; advance the yielded `Progress` as it goes.

    `task` names the work in a few words ("sync vectors", "consistency check graph"); `total` is how many `unit`s
    there are, if known (None: a spinner, no remaining time; `set_total` can tell it later). When `stream`
    (default: sys.stderr) is a terminal, a live bar is drawn on it; otherwise `progress` log lines are written
    (through the configured logging, wherever it writes) at most every `log_every_seconds` (default
    DEFAULT_LOG_EVERY_SECONDS, the PROGRESS_LOG_SECONDS default), plus one when the block ends.
    """
    interval = DEFAULT_LOG_EVERY_SECONDS if log_every_seconds is None else log_every_seconds
    if interval <= 0:
        raise ValueError(f"log_every_seconds must be > 0, not {interval}")
    stream = sys.stderr if stream is None else stream
    if not _is_terminal(stream):
        logged = _LoggedProgress(task, total, unit, interval)
        try:
            yield logged
        finally:
            logged._end()
        return
    block = Progress(task, total, unit)
    bars = _LiveBars.on(stream)
    task_id = bars.open(block)
    succeeded = False
    try:
        yield block
        succeeded = True
    finally:
        block._end()
        bars.close(task_id, succeeded=succeeded)
