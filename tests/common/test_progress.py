"""Progress of long work (`common.progress`): off a terminal, `progress` log lines at most once per interval plus
one at the end, with the documented fields; on a terminal, a live bar with the rate and the remaining time; cheap
enough to advance per record. A fake clock stands in for `time.monotonic`, so nothing sleeps."""

from __future__ import annotations

import io
import logging
import re
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from aegis_pipeline.collectors import run as collectors_run
from aegis_pipeline.common.progress import DEFAULT_LOG_EVERY_SECONDS, progress
from aegis_pipeline.settings import CoreSettings, SettingsError, load_core_settings

START = 1000.0
FIELDS = ("task", "done", "total", "unit", "rate_per_second", "eta_seconds", "elapsed_seconds", "final")
ANSI_CODE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class TerminalStream(io.StringIO):
    """What rich draws on, standing in for a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(time, "monotonic", fake)
    return fake


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> TerminalStream:
    """A terminal 100 columns wide, whatever the one running the tests (rich asks the real one otherwise)."""
    monkeypatch.setenv("COLUMNS", "100")
    return TerminalStream()


@pytest.fixture
def logs(restore_logging: None) -> LogCapture:
    """Every log line written while the test runs, as its fields (INFO and up, as the CLI logs by default)."""
    capture = LogCapture()
    structlog.configure(processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                        cache_logger_on_first_use=False)
    return capture


def progress_lines(logs: LogCapture) -> list[dict[str, Any]]:
    return [{name: entry[name] for name in FIELDS} for entry in logs.entries if entry["event"] == "progress"]


def last_rows(output: str, rows: int = 1) -> list[str]:
    """The last `rows` lines rich drew, as text (its frames are separated by carriage returns and cursor moves)."""
    lines = [line.rstrip() for line in re.split(r"[\r\n]", ANSI_CODE.sub("", output)) if line.strip()]
    return lines[-rows:]


def test_off_a_terminal_a_line_at_most_every_interval_and_one_at_the_end(
        clock: FakeClock, logs: LogCapture) -> None:
    stream = io.StringIO()
    with progress("sync vectors", total=100, log_every_seconds=5, stream=stream) as shown:
        for second in (1, 4.9, 5.0, 6, 9.9, 10.0):  # one advance per batch of 10 records
            clock.now = START + second
            shown.advance(10)
        clock.now = START + 12
    assert progress_lines(logs) == [
        {"task": "sync vectors", "done": 30, "total": 100, "unit": "records", "rate_per_second": 6.0,
         "eta_seconds": 11.667, "elapsed_seconds": 5.0, "final": False},
        {"task": "sync vectors", "done": 60, "total": 100, "unit": "records", "rate_per_second": 6.0,
         "eta_seconds": 6.667, "elapsed_seconds": 10.0, "final": False},
        {"task": "sync vectors", "done": 60, "total": 100, "unit": "records", "rate_per_second": 5.0,
         "eta_seconds": 8.0, "elapsed_seconds": 12.0, "final": True},
    ]
    assert stream.getvalue() == ""  # no bar drawn on a stream that is not a terminal


def test_a_block_that_raises_still_logs_its_final_line(clock: FakeClock,
                                                       logs: LogCapture) -> None:
    with pytest.raises(RuntimeError), progress("collect", unit="sources", stream=io.StringIO()) as shown:
        shown.advance(3)
        raise RuntimeError("source crashed")
    assert progress_lines(logs) == [
        {"task": "collect", "done": 3, "total": None, "unit": "sources", "rate_per_second": None,
         "eta_seconds": None, "elapsed_seconds": 0.0, "final": True}]


@pytest.mark.parametrize(
    ("total", "done", "elapsed", "rate", "eta"),
    [
        pytest.param(None, 5, 10.0, 0.5, None, id="total unknown: no remaining time"),
        pytest.param(10, 5, 10.0, 0.5, 10.0, id="half done"),
        pytest.param(10, 10, 10.0, 1.0, 0.0, id="all done"),
        pytest.param(10, 12, 10.0, 1.2, 0.0, id="more than counted (late commits): nothing left"),
        pytest.param(10, 0, 10.0, 0.0, None, id="nothing done yet: remaining time unknown"),
        pytest.param(10, 0, 0.0, None, None, id="no time elapsed: rate unknown"),
    ],
)
def test_rate_and_remaining_time(clock: FakeClock, total: int | None, done: int, elapsed: float,
                                 rate: float | None, eta: float | None) -> None:
    with progress("consistency repair graph", total=total, stream=io.StringIO()) as shown:
        shown.advance(done)
        clock.now = START + elapsed
        figures = shown.figures()
    assert (figures["rate_per_second"], figures["eta_seconds"], figures["elapsed_seconds"]) == (rate, eta, elapsed)


def test_a_total_told_later_gives_the_remaining_time(clock: FakeClock) -> None:
    with progress("cold path", stream=io.StringIO()) as shown:
        shown.advance(20)
        clock.now = START + 4
        shown.set_total(100)
        assert shown.figures()["eta_seconds"] == 16.0


def test_advance_is_cheap_and_never_logs_per_call(logs: LogCapture) -> None:
    started = time.perf_counter()
    with progress("benchmark", stream=io.StringIO()) as shown:
        for _ in range(1_000_000):
            shown.advance()
    seconds = time.perf_counter() - started
    assert seconds < 1.0, f"1,000,000 advance() calls took {seconds:.2f} s"
    lines = progress_lines(logs)
    assert lines[-1]["done"] == 1_000_000 and lines[-1]["final"] is True
    assert len(lines) <= 1 + seconds / DEFAULT_LOG_EVERY_SECONDS


def test_on_a_terminal_a_bar_with_done_rate_and_remaining_time(clock: FakeClock, terminal: TerminalStream,
                                                               logs: LogCapture) -> None:
    stream = terminal
    with progress("sync vectors", total=1000, log_every_seconds=0.001, stream=stream) as shown:
        clock.now = START + 5
        shown.advance(500)
    [row] = last_rows(stream.getvalue())
    assert row.endswith("sync vectors 500/1,000 records 100 records/s eta 0:00:05"), row
    assert "━" in row  # the bar
    assert progress_lines(logs) == []  # the bar, not log lines


def test_on_a_terminal_blocks_open_at_once_share_one_display(clock: FakeClock, terminal: TerminalStream) -> None:
    """As the consistency check's targets do; the one without a total shows its count and rate, and ends as a full
    bar without a remaining time."""
    stream = terminal
    with progress("consistency check vectors", total=1024, unit="buckets", stream=stream) as vectors, \
            progress("consistency check graph", unit="buckets", stream=stream) as graph:
        clock.now = START + 2
        vectors.advance(1024)
        graph.advance(7)
    rows = last_rows(stream.getvalue(), rows=2)
    assert [row.split(" consistency")[1] for row in rows] == [
        " check vectors 1,024/1,024 buckets 512 buckets/s eta 0:00:00",
        " check graph   7 buckets           3.5 buckets/s",
    ]


def test_the_interval_is_a_setting_and_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CoreSettings.model_fields["progress_log_seconds"].default == DEFAULT_LOG_EVERY_SECONDS
    monkeypatch.setenv("PROGRESS_LOG_SECONDS", "0")
    with pytest.raises(SettingsError, match="PROGRESS_LOG_SECONDS"):
        load_core_settings()
    with pytest.raises(ValueError, match="log_every_seconds"), progress("sync graph", log_every_seconds=0):
        pass


async def test_collect_once_counts_the_sources_done_even_one_that_crashed(monkeypatch: pytest.MonkeyPatch,
                                                                          logs: LogCapture) -> None:
    """`collect --once`'s progress, in sources (their record counts are known only once fetched)."""

    async def collect_source(source: SimpleNamespace, context: object) -> collectors_run.SourceResult:
        if source.name == "broken":
            raise RuntimeError("a bug in one source")
        return collectors_run.SourceResult(source=source.name, fetched=5, published=5)

    monkeypatch.setattr(collectors_run, "collect_source", collect_source)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, even under `pytest -s` in one
    context = SimpleNamespace(settings=load_core_settings(progress_log_seconds=60))
    sources = [SimpleNamespace(name=name) for name in ("bizinfo", "broken", "kstartup")]
    results = await collectors_run.collect_once(context, sources)  # type: ignore[arg-type]
    assert [result.status for result in results] == ["ok", "failed", "ok"]
    [line] = progress_lines(logs)
    assert {key: line[key] for key in ("task", "done", "total", "unit", "final")} == {
        "task": "collect", "done": 3, "total": 3, "unit": "sources", "final": True}
