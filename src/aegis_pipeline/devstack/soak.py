"""Soak run on the embedded stack: the whole pipeline runs for N minutes on a source that keeps growing and
changing, and whatever could creep (memory, descriptors, latency, table sizes) is sampled once a minute. Used by
bench/soak.py (the issue's 20 minutes) and tests/ops/test_soak.py (one short minute).

What runs, as in production:

- the source: `ChangingSource`, a JSON API on the local sample server offering `rate_per_second` records a
  second, `change_share` of them new revisions of records it offered before (their text changes), so updates
  flow as well as new records;
- the collectors (`aegis-pipeline scheduler`, collecting the source every `collect_every_seconds`) and the hot
  path (`aegis-pipeline hot-path`), long-running processes started by `fault_scenarios.PipelineProcesses`;
- at every minute mark, one batch as the `policy_cold_path` DAG runs it (hourly there): `cold-path run`, then
  `sync run`, then `consistency check`, each a process of its own, as Airflow runs each task (this also keeps
  the soak's own memory out of the figures). A batch still running at the next mark makes that mark's batch
  skipped and counted, not queued (the DAG's `max_active_runs=1`, `catchup=False`).

Sampled at each minute mark; the marks are fixed from the start, so a slow batch never moves them:

- records the source offered that minute (new, changed), and stored in PostgreSQL (new policies, new versions
  of existing ones), and `unstored`, the new records offered so far not stored yet (the backlog);
- events on the events topic that minute, counted by a consumer of no group that reads the topic from its
  beginning for the whole run, as a downstream service would (not the outbox: its rows are deleted once sent);
- dead letters written that minute (table `dead_letters`);
- the hot path's p99 latency that minute: collection to `policy.validated` sent, the histogram
  `pipeline_processing_latency_seconds{path="hot"}` of its /metrics, from the bucket counts added since the last
  mark, interpolated within the bucket as Prometheus's `histogram_quantile` does;
- RSS, open file descriptors and CPU share of the hot path and the scheduler (psutil);
- for each batch command that ended that minute: its duration and peak RSS (the child's `ru_maxrss`, from
  `os.wait4`: a run lives seconds, sampling it would miss its peak); the consistency check's drift;
- size of the main PostgreSQL tables (`TABLES`): `pg_total_relation_size` (with indexes and TOAST) and
  `pg_indexes_size`.

After the last minute the source stops offering and the run drains: it waits until every record the source
offered is stored at its latest revision, lets the batch in hand end, and runs one last batch.

Verdicts (`SoakResult.verdicts`):

- flat: per process, memory and descriptors, and the hot path's p99: the mean of the last 5 minutes is at most
  10% above the mean of minutes 5-10 (after the start-up minutes). Only growth fails: a soak looks for what
  creeps up, and a figure that falls is not a leak. Values under a floor count as the floor, so that noise
  below what matters cannot fail a run. 500 ms for p99: the histogram's buckets (100, 250, 500, 1000 ms...) only
  say which bucket the p99 is in, and the value inside it is interpolated, so a p99 moves between about 250 and
  470 ms from one minute to the next when a few records more or fewer are slower than 250 ms (measured: 248,
  470, 248, 470 ms at 10 records/s); below half the hot path's 1 s target that is noise, not a trend. 20
  descriptors: these processes hold 13-15, and a pool opening a connection or two is not a leak, while one
  descriptor more a minute climbs past it. With fewer than 5 minutes there is nothing after start-up to judge
  (`None`); under 15 minutes the two windows overlap.
  Batch commands' peak RSS is reported, not judged: they end, and what they hold grows with the data they read.
- consistency clean: the last batch's check finds no target differing from PostgreSQL;
- nothing lost: every record the source offered is stored, each at its latest revision;
- processes alive: neither the hot path nor the scheduler ended before the run stopped them.

May import: `devstack`, `settings`, `stores`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

from aegis_pipeline.devstack.fault_scenarios import (
    PIPELINE,
    GrowingSource,
    PipelineProcesses,
    RunOptions,
    sources_document,
)
from aegis_pipeline.devstack.sample_sources import SampleSources
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka, postgres

MB = 1024 * 1024
LONG_RUNNING = ("hot_path", "scheduler")
LATENCY_METRIC = "pipeline_processing_latency_seconds"  # common.metrics; path="hot": collection to event sent
# The tables that grow with records, or should not grow at all (the outbox: rows are deleted once sent).
TABLES = ("policies", "processing_history", "quality_metrics", "policy_fingerprints", "text_embeddings",
          "collected_records", "event_outbox", "dead_letters")
# What devstack.synthetic.make_record writes into the text of a record's revision N: the stored text says which
# revision of a record was stored.
REVISION_PATTERN = "정정 공고 ([0-9]+)차"
FLAT_TOLERANCE = 0.10
BASELINE_MINUTES = (5, 10)
FINAL_MINUTES = 5
LATENCY_FLOOR_MS = 500.0
DESCRIPTOR_FLOOR = 20


@dataclass(frozen=True)
class SoakOptions:
    minutes: int = 20
    minute_seconds: float = 60.0        # shorter only for tests: the batches and sampling keep to these "minutes"
    rate_per_second: float = 10.0       # records the source offers per second, new and changed
    change_share: float = 0.2           # of those, new revisions of records offered before
    collect_every_seconds: float = 5.0  # the source's schedule
    drain_timeout_seconds: float = 300.0
    seed: int = 22


class ChangingSource(GrowingSource):
    """A `GrowingSource` whose records also change: `change(count)` gives existing records a new revision.

    Answers every record new or changed after `since` (the `modified` stamp of the last record the caller has),
    in the order of their last change, in one response. The collectors keep the greatest `modified` they saw as
    the source's cursor (`incremental`), so a run fetches only what is new or changed: its cost stays flat while
    the source grows, as a soak needs. Not in pages: with page numbers, a record that changes while a collector
    pages through leaves an early page and shifts a later record back past the reader (skipped); and a `next`
    link carrying its own query (`?since=...`) is followed without that query by the collectors' HTTP client
    (httpx 0.28 replaces a URL's query with the `params` given, even empty ones), so each run would fetch the
    first page again up to `max_pages`."""

    def __init__(self, prefix: str, seed: int) -> None:
        super().__init__(prefix)
        self.changes = 0
        self._stamp = 0
        self._rng = random.Random(seed)

    def _record(self, number: int, revision: int = 0) -> dict[str, str]:
        # Called with the lock held (by `add` and `change`): stamps are unique and grow in the order served.
        self._stamp += 1
        return {**super()._record(number, revision), "revision": str(revision), "modified": f"{self._stamp:012d}"}

    def change(self, count: int) -> None:
        """A new revision of `count` records picked at random (fewer while the source has fewer records)."""
        with self._lock:
            for number in self._rng.sample(range(len(self._records)), min(count, len(self._records))):
                self._records[number] = self._record(number, int(self._records[number]["revision"]) + 1)
                self.changes += 1

    def revisions(self) -> dict[str, int]:
        """external id -> the revision the source serves now."""
        with self._lock:
            return {record["id"]: int(record["revision"]) for record in self._records}

    def page(self, query: dict[str, str]) -> bytes:
        since = query.get("since", "")
        with self._lock:  # a change replaces a record's dict, never edits it: those taken here stay as they were
            newer = sorted((record for record in self._records if record["modified"] > since),
                           key=itemgetter("modified"))
        return json.dumps({"data": newer}, ensure_ascii=False).encode("utf-8")


def histogram_quantile(quantile: float, buckets: dict[float, float]) -> float | None:
    """The `quantile` of a histogram given as cumulative counts by upper bound (`le`, +Inf included), as
    Prometheus's `histogram_quantile` computes it: the bucket holding that rank, linear within it; the highest
    finite bound when it falls in +Inf. None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = quantile * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (buckets[bound] - below)
        lower, below = bound, buckets[bound]
    return lower


async def _latency_buckets(port: int) -> dict[float, float] | None:
    """The hot path's latency histogram, cumulative counts by upper bound, from its /metrics; None when it does
    not answer."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return None
    return {float(sample.labels["le"]): sample.value for family in text_string_to_metric_families(text)
            if family.name == LATENCY_METRIC for sample in family.samples
            if sample.name == f"{LATENCY_METRIC}_bucket" and sample.labels.get("path") == "hot"}


async def _wait_until_ready(port: int, timeout_seconds: float = 120.0) -> None:
    """Wait until the hot path answers its readiness probe (it has joined its group and holds partitions), so that
    the first minute measures the pipeline, not its start-up."""
    deadline = time.monotonic() + timeout_seconds
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/health/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the hot path was not ready within {timeout_seconds:g} s")


class EventCounter:
    """Events on the events topic by type, as a downstream service sees them: a consumer of no group reading the
    topic from its beginning for the whole run."""

    def __init__(self, settings: Settings) -> None:
        self.counts: Counter[str] = Counter()
        self._settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        """Count until `stop`, then until the topic has been quiet for a second (the last batch's events)."""
        consumer = kafka.create_reader(self._settings, self._settings.kafka_topic_policy_events)
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for message in (message for messages in batch.values() for message in messages):
                    self.counts[json.loads(message.value)["event_type"]] += 1
                if stop.is_set() and not batch:
                    return
        finally:
            await consumer.stop()


@dataclass
class BatchRun:
    """One batch command: how it ended, how long it took, its peak memory; a consistency check's drift."""

    command: str  # cold_path, sync, consistency
    started_minute: int
    exit_code: int
    seconds: float
    peak_rss_mb: float
    consistent: bool | None = None
    drift: dict[str, Any] | None = None  # target -> {missing, stale, orphaned}, as `consistency check --json`


@dataclass
class MinuteRow:
    minute: int
    offered_new: int
    offered_changes: int
    stored_new: int | None      # None: PostgreSQL did not answer at this mark
    stored_updates: int | None  # new versions of policies stored before
    unstored: int | None        # new records offered so far that are not stored yet
    events: int
    events_by_type: dict[str, int]
    dead_letters: int | None
    hot_p99_ms: float | None
    hot_latency_observations: int
    processes: dict[str, dict[str, float] | None]  # name -> rss_mb, fds, cpu_percent; None: not running
    batch_runs: list[BatchRun]                     # the batch commands that ended this minute
    batch_skipped: bool                            # the previous batch still ran at this mark: none started
    postgres_mb: dict[str, dict[str, float]] | None  # table -> {"total", "indexes"}


def _batch_environment(processes: PipelineProcesses) -> dict[str, str]:
    # The fault scenarios' small cold path batches (to kill a run mid-work) would only slow the soak: the default.
    return {**{name: value for name, value in processes.environment.items() if name != "COLD_PATH_BATCH_SIZE"},
            "METRICS_PORT": "0"}


def _run_command(command: str, arguments: list[str], environment: dict[str, str], logs: Path,
                 minute: int) -> BatchRun:
    """One batch command to its end (blocking: run it in a thread). Its stdout is kept in `<command>.out` (the
    last run's), its stderr appended to `<command>.log`."""
    output = logs / f"{command}.out"
    started = time.monotonic()
    with open(logs / f"{command}.log", "ab") as log, open(output, "wb") as out:
        process = subprocess.Popen([PIPELINE, *arguments], env=environment, stdout=out, stderr=log)
    # os.wait4, not Popen.wait: it also gives the child's resource usage, whose ru_maxrss is its peak RSS (KiB).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    run = BatchRun(command=command, started_minute=minute, exit_code=process.returncode,
                   seconds=round(time.monotonic() - started, 1), peak_rss_mb=round(usage.ru_maxrss / 1024, 1))
    if command == "consistency" and process.returncode in (0, 1):  # 1: drift found, the report is printed
        with contextlib.suppress(ValueError, IndexError):
            report = json.loads(output.read_text(encoding="utf-8").strip().splitlines()[-1])
            run.consistent, run.drift = report["consistent"], report["targets"]
    return run


def _flat(values: dict[int, float | None], *, floor: float, minutes: int) -> dict[str, Any] | None:
    """The flatness rule of the module doc on per-minute `values`; None when the run is too short to judge."""
    first, last = BASELINE_MINUTES[0], min(BASELINE_MINUTES[1], minutes)
    final_first = max(1, minutes - FINAL_MINUTES + 1)
    baseline = [value for minute, value in values.items() if first <= minute <= last and value is not None]
    final = [value for minute, value in values.items() if minute >= final_first and value is not None]
    if minutes < first or not baseline or not final:
        return None
    early, late = statistics.fmean(baseline), statistics.fmean(final)
    return {"baseline_minutes": [first, last], "final_minutes": [final_first, minutes],
            "baseline": round(early, 1), "final": round(late, 1), "floor": floor,
            "passed": max(late, floor) <= (1 + FLAT_TOLERANCE) * max(early, floor)}


@dataclass
class SoakResult:
    options: SoakOptions
    source: str
    rows: list[MinuteRow] = field(default_factory=list)
    batches_skipped: int = 0
    final_batch: list[BatchRun] = field(default_factory=list)
    drain_seconds: float | None = None  # from the source's stop until everything it offered was stored
    offered: int = 0
    changes_offered: int = 0
    stored: int = 0
    lost: int = 0   # offered, not stored
    stale: int = 0  # stored, but not at the revision the source serves
    events_by_type: dict[str, int] = field(default_factory=dict)
    unexpected_exits: list[str] = field(default_factory=list)
    logs: str = ""

    def verdicts(self) -> dict[str, Any]:
        minutes = len(self.rows)

        def per_process(figure: str, floor: float) -> dict[str, Any]:
            return {name: _flat({row.minute: (row.processes.get(name) or {}).get(figure) for row in self.rows},
                                floor=floor, minutes=minutes) for name in LONG_RUNNING}

        check = next((run for run in self.final_batch if run.command == "consistency"), None)
        return {
            "memory_flat": per_process("rss_mb", 0.0),
            "descriptors_flat": per_process("fds", DESCRIPTOR_FLOOR),
            "latency_flat": _flat({row.minute: row.hot_p99_ms for row in self.rows}, floor=LATENCY_FLOOR_MS,
                                  minutes=minutes),
            "consistency_clean": {"passed": check is not None and check.consistent is True,
                                  "drift": check.drift if check else None},
            "nothing_lost": {"passed": self.offered > 0 and self.lost == 0 and self.stale == 0,
                             "offered": self.offered, "stored": self.stored, "lost": self.lost, "stale": self.stale},
            "processes_alive": {"passed": not self.unexpected_exits, "exited": self.unexpected_exits},
        }

    def met(self) -> dict[str, bool | None]:
        """Each verdict passed (True), failed (False), or could not be judged in so short a run (None)."""
        met: dict[str, bool | None] = {}
        for name, verdict in self.verdicts().items():
            if name in ("memory_flat", "descriptors_flat"):
                for process, flat in verdict.items():
                    met[f"{name}_{process}"] = None if flat is None else flat["passed"]
            else:
                met[name] = None if verdict is None else verdict["passed"]
        return met

    def as_dict(self) -> dict[str, Any]:
        met = self.met()
        return {**asdict(self), "verdicts": self.verdicts(), "met": met,
                "all_met": all(passed for passed in met.values() if passed is not None)}


class _Soak:
    """One soak run's state: the source, the processes, the previous mark's figures."""

    def __init__(self, settings: Settings, options: SoakOptions, feed: ChangingSource, processes: PipelineProcesses,
                 result: SoakResult, logs: Path) -> None:
        self.settings = settings
        self.options = options
        self.feed = feed
        self.processes = processes
        self.result = result
        self.logs = logs
        self.events = EventCounter(settings)
        self.ended_runs: list[BatchRun] = []  # batch commands ended since the last mark
        self._watched: dict[str, psutil.Process] = {}
        self._previous: dict[str, Any] = {"offered_new": 0, "offered_changes": 0, "stored_new": 0,
                                          "stored_updates": 0, "events": Counter(), "buckets": {}}

    def watch_processes(self) -> None:
        for name in LONG_RUNNING:
            self._watched[name] = psutil.Process(self.processes.processes[name].pid)
            self._watched[name].cpu_percent(None)  # the first call starts its CPU count

    async def offer(self, stop: asyncio.Event) -> None:
        """New records and changes at the options' rate, every quarter second (a stream, not a burst a minute),
        kept to the clock: what a slow step missed is offered in the next."""
        started, added = time.monotonic(), 0
        while not stop.is_set():
            due = self.options.rate_per_second * (time.monotonic() - started)
            changes_due = int(due * self.options.change_share)
            new_due = int(due) - changes_due
            if new_due > added:
                self.feed.add(new_due - added)
                added = new_due
            if changes_due > self.feed.changes:
                self.feed.change(changes_due - self.feed.changes)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)

    async def batch(self, minute: int) -> list[BatchRun]:
        """Cold path, sync, consistency check, one after the other, as the DAG's tasks; each ended run is also
        appended to `ended_runs` as it ends."""
        environment = _batch_environment(self.processes)
        commands = {"cold_path": ["cold-path", "run", "--source", self.result.source], "sync": ["sync", "run"],
                    "consistency": ["consistency", "check", "--json"]}
        runs = []
        for command, arguments in commands.items():
            run = await asyncio.to_thread(_run_command, command, arguments, environment, self.logs, minute)
            self.ended_runs.append(run)
            runs.append(run)
        return runs

    def _process_figures(self) -> dict[str, dict[str, float] | None]:
        figures: dict[str, dict[str, float] | None] = {}
        for name, process in self._watched.items():
            try:
                with process.oneshot():
                    figures[name] = {"rss_mb": round(process.memory_info().rss / MB, 1), "fds": process.num_fds(),
                                     "cpu_percent": round(process.cpu_percent(None), 1)}
            except psutil.Error:  # it ended: the run reports it among the unexpected exits
                figures[name] = None
        return figures

    async def _database_figures(self) -> dict[str, Any] | None:
        try:
            async with postgres.connect(self.settings.postgres_dsn()) as connection:
                stored = await connection.fetchrow(
                    "SELECT count(*) AS records, coalesce(sum(version - 1), 0)::bigint AS updates "
                    "FROM policies WHERE source_system = $1", self.result.source)
                dead_letters = await connection.fetchval("SELECT count(*) FROM dead_letters")
                sizes = await connection.fetch(
                    "SELECT name, pg_total_relation_size(to_regclass(name)) AS total, "
                    "pg_indexes_size(to_regclass(name)) AS indexes FROM unnest($1::text[]) AS name", list(TABLES))
        except Exception:  # an engine that does not answer must not end the soak: this mark has no figures
            return None
        return {"records": stored["records"], "updates": stored["updates"], "dead_letters": dead_letters,
                "sizes": {row["name"]: {"total": round((row["total"] or 0) / MB, 2),
                                        "indexes": round((row["indexes"] or 0) / MB, 2)} for row in sizes}}

    async def sample(self, minute: int, *, batch_skipped: bool) -> MinuteRow:
        previous = self._previous
        offered_new, offered_changes = len(self.feed.ids()), self.feed.changes
        database = await self._database_figures()
        buckets = await _latency_buckets(self.processes.hot_path_metrics_port)
        added = ({bound: count - previous["buckets"].get(bound, 0.0) for bound, count in buckets.items()}
                 if buckets is not None else {})
        p99 = histogram_quantile(0.99, added)
        events = Counter(self.events.counts)
        ended, self.ended_runs = self.ended_runs, []
        row = MinuteRow(
            minute=minute, offered_new=offered_new - previous["offered_new"],
            offered_changes=offered_changes - previous["offered_changes"],
            stored_new=database["records"] - previous["stored_new"] if database else None,
            stored_updates=database["updates"] - previous["stored_updates"] if database else None,
            unstored=offered_new - database["records"] if database else None,
            events=(events - previous["events"]).total(), events_by_type=dict(events - previous["events"]),
            dead_letters=database["dead_letters"] - previous.get("dead_letters", 0) if database else None,
            hot_p99_ms=None if p99 is None else round(p99 * 1000, 1),
            hot_latency_observations=int(max(added.values(), default=0)),  # the +Inf bucket counts every one
            processes=self._process_figures(), batch_runs=ended, batch_skipped=batch_skipped,
            postgres_mb=database["sizes"] if database else None,
        )
        previous.update(offered_new=offered_new, offered_changes=offered_changes, events=events)
        if database:
            previous.update(stored_new=database["records"], stored_updates=database["updates"],
                            dead_letters=database["dead_letters"])
        if buckets is not None:  # otherwise the next mark's p99 covers both minutes
            previous["buckets"] = buckets
        return row

    async def dead_letter_baseline(self) -> None:
        """Dead letters count from the start of this run (a kept stack may hold some from an earlier one)."""
        database = await self._database_figures()
        self._previous["dead_letters"] = database["dead_letters"] if database else 0

    async def stored_revisions(self) -> dict[str, int] | None:
        """external id -> the revision stored of each of the source's records (None: PostgreSQL did not answer)."""
        try:
            async with postgres.connect(self.settings.postgres_dsn()) as connection:
                rows = await connection.fetch(
                    "SELECT external_id, coalesce(substring(content from $2)::int, 0) AS revision "
                    "FROM policies WHERE source_system = $1", self.result.source, REVISION_PATTERN)
        except Exception:  # the next look will do
            return None
        return {row["external_id"]: row["revision"] for row in rows}

    async def drain(self) -> None:
        """Wait until every record offered is stored at the revision the source serves (or the timeout); count
        what is not."""
        started = time.monotonic()
        offered = self.feed.revisions()
        while True:
            stored = await self.stored_revisions() or {}
            lost = offered.keys() - stored.keys()
            stale = [external_id for external_id, revision in stored.items()
                     if external_id in offered and revision != offered[external_id]]
            if not lost and not stale:
                self.result.drain_seconds = round(time.monotonic() - started, 1)
            if (not lost and not stale) or time.monotonic() - started > self.options.drain_timeout_seconds:
                break
            await asyncio.sleep(1.0)
        self.result.offered, self.result.changes_offered = len(offered), self.feed.changes
        self.result.stored, self.result.lost, self.result.stale = len(stored), len(lost), len(stale)


def _sources_file(work: Path, name: str, url: str, every_seconds: float) -> Path:
    """The fault scenarios' source definition, in one response (no pages) from the source's cursor."""
    document = sources_document(name, url, every_seconds)
    document["sources"][0].update(pagination={"type": "none"},
                                  incremental={"cursor_field": "modified", "request_param": "since"})
    path = work / "sources.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


async def run_soak(settings: Settings, options: SoakOptions, *,
                   on_row: Callable[[MinuteRow], None] = lambda row: None,
                   progress: Callable[[str], None] = lambda line: None) -> SoakResult:
    """Run the soak on the running stack whose settings are `settings` (see the module doc). Its own source,
    topics and consumer group, so a kept stack can run it again."""
    token = uuid.uuid4().hex[:8]
    settings = await kafka.with_own_topics(settings, f"soak-{token}", partitions=settings.kafka_topic_partitions)
    settings = settings.model_copy(update={"kafka_consumer_group": f"soak-{token}"})
    logs = Path(tempfile.mkdtemp(prefix="soak-"))
    result = SoakResult(options=options, source=f"soak_{token}", logs=str(logs))
    # The production values of the collectors' republish grace and the broker check (the fault scenarios shorten
    # them): a soak under load must not republish what is merely still queued.
    process_options = RunOptions(collect_every_seconds=options.collect_every_seconds,
                                 republish_grace_seconds=900.0, broker_check_seconds=30.0)
    with SampleSources(crawl_delay_seconds=0) as server:
        path = f"/soak/{token}/api"
        feed = ChangingSource(prefix=f"S{token}", seed=options.seed)
        url = server.add_payload(path, feed.page, "application/json; charset=utf-8")
        sources_file = _sources_file(logs, result.source, url, options.collect_every_seconds)
        processes = PipelineProcesses(settings, process_options, sources_file, logs, result.source)
        soak = _Soak(settings, options, feed, processes, result, logs)
        offering, counting = asyncio.Event(), asyncio.Event()
        counter = asyncio.create_task(soak.events.run(counting))
        offer: asyncio.Task[None] | None = None
        batch: asyncio.Task[list[BatchRun]] | None = None
        try:
            await soak.dead_letter_baseline()
            processes.start("hot_path")
            processes.start("scheduler")
            soak.watch_processes()
            await _wait_until_ready(processes.hot_path_metrics_port)
            started = time.monotonic()
            offer = asyncio.create_task(soak.offer(offering))
            progress(f"soak: {options.minutes} minutes of {options.minute_seconds:g} s, {options.rate_per_second:g} "
                     f"records/s ({options.change_share:.0%} changes), logs in {logs}")
            for minute in range(1, options.minutes + 1):
                # Marks fixed from the start: however long the sampling or a batch took, no mark moves.
                await asyncio.sleep(max(0.0, started + minute * options.minute_seconds - time.monotonic()))
                overlapping = batch is not None and not batch.done()
                last = minute == options.minutes
                row = await soak.sample(minute, batch_skipped=overlapping and not last)
                result.rows.append(row)
                on_row(row)
                if last:
                    break
                if overlapping:
                    result.batches_skipped += 1  # not queued: the next mark starts the next one
                else:
                    batch = asyncio.create_task(soak.batch(minute))
            offering.set()
            await offer
            progress("soak: the source stopped; draining")
            await soak.drain()
            if batch is not None:
                await batch  # the batch in hand ends on its own, as a DAG run would
            progress("soak: last batch (cold path, sync, consistency check)")
            result.final_batch = await soak.batch(options.minutes)
            soak.ended_runs.clear()  # the last batch is reported on its own
        finally:
            offering.set()
            if offer is not None:
                await offer
            if batch is not None and not batch.done():
                await batch  # a failed run still lets its commands end: nothing is left running
            result.unexpected_exits = processes.dead()
            await asyncio.to_thread(processes.stop_all)
            counting.set()
            await counter
    result.events_by_type = dict(soak.events.counts)
    return result


# The printed table: one (header, cell of a row) per column, each as wide as its header or its widest value.
Column = tuple[str, Callable[[MinuteRow], Any]]


def _process_columns(name: str, short: str) -> list[Column]:
    def figure(key: str) -> Callable[[MinuteRow], Any]:
        return lambda row: (row.processes.get(name) or {}).get(key)

    return [(f"{short} MB", figure("rss_mb")), (f"{short} fd", figure("fds")), (f"{short} cpu%", figure("cpu_percent"))]


def _run_cell(command: str, key: str) -> Callable[[MinuteRow], Any]:
    return lambda row: next((getattr(run, key) for run in row.batch_runs if run.command == command), None)


def _drift_cell(row: MinuteRow) -> Any:
    check = next((run for run in row.batch_runs if run.command == "consistency"), None)
    if check is None or check.drift is None:
        return None
    return sum(count for counts in check.drift.values() for kind, count in counts.items() if kind != "error")


def _size_cell(table: str) -> Callable[[MinuteRow], Any]:
    def cell(row: MinuteRow) -> Any:
        size = (row.postgres_mb or {}).get(table)
        return None if size is None else f"{size['total']:.1f}/{size['indexes']:.1f}"
    return cell


# The tables printed (all of TABLES are in the JSON), as total/indexes MB.
PRINTED_TABLES = {"policies": "policies", "processing_history": "history", "text_embeddings": "embeddings",
                  "collected_records": "collected", "event_outbox": "outbox", "dead_letters": "dlq"}
COLUMNS: list[Column] = [
    ("min", lambda row: row.minute),
    ("in new", lambda row: row.offered_new), ("in chg", lambda row: row.offered_changes),
    ("st new", lambda row: row.stored_new), ("st upd", lambda row: row.stored_updates),
    ("unstored", lambda row: row.unstored), ("events", lambda row: row.events), ("dlq", lambda row: row.dead_letters),
    ("p99 ms", lambda row: row.hot_p99_ms), *_process_columns("hot_path", "hot"),
    *_process_columns("scheduler", "sched"),
    ("cold s", _run_cell("cold_path", "seconds")), ("cold MB", _run_cell("cold_path", "peak_rss_mb")),
    ("sync s", _run_cell("sync", "seconds")), ("sync MB", _run_cell("sync", "peak_rss_mb")),
    ("check s", _run_cell("consistency", "seconds")), ("drift", _drift_cell),
    ("skip", lambda row: "yes" if row.batch_skipped else ""),
    *[(f"{short} MB", _size_cell(table)) for table, short in PRINTED_TABLES.items()],
]
SIZE_HEADERS = {f"{short} MB" for short in PRINTED_TABLES.values()}
WIDTHS = [max(len(header), 9 if header in SIZE_HEADERS else 5) for header, _ in COLUMNS]  # a size: "123.4/12.3"


def table_header() -> str:
    return " ".join(header.rjust(width) for (header, _), width in zip(COLUMNS, WIDTHS, strict=True))


def table_row(row: MinuteRow) -> str:
    values = [cell(row) for _, cell in COLUMNS]
    return " ".join(("-" if value is None else str(value)).rjust(width)
                    for value, width in zip(values, WIDTHS, strict=True))


def verdict_lines(result: SoakResult) -> list[str]:
    """One line per verdict, for people (the JSON has the same)."""
    verdicts = result.verdicts()
    lines = []

    def flat_line(label: str, flat: dict[str, Any] | None, unit: str) -> str:
        if flat is None:
            return f"{label}: not judged (fewer than {BASELINE_MINUTES[0]} minutes)"
        first, last = flat["baseline_minutes"]
        final_first, final_last = flat["final_minutes"]
        return (f"{label}: minutes {first}-{last} mean {flat['baseline']} {unit}, minutes {final_first}-{final_last} "
                f"mean {flat['final']} {unit} (floor {flat['floor']:g}): {'pass' if flat['passed'] else 'FAIL'}")

    for name in LONG_RUNNING:
        lines.append(flat_line(f"memory flat, {name}", verdicts["memory_flat"][name], "MB"))
        lines.append(flat_line(f"descriptors flat, {name}", verdicts["descriptors_flat"][name], "fds"))
    lines.append(flat_line("latency flat, hot path p99", verdicts["latency_flat"], "ms"))
    check = verdicts["consistency_clean"]
    lines.append(f"consistency clean at the end: {check['drift']}: {'pass' if check['passed'] else 'FAIL'}")
    lost = verdicts["nothing_lost"]
    lines.append(f"nothing lost: offered {lost['offered']} records ({result.changes_offered} changes), stored "
                 f"{lost['stored']}, lost {lost['lost']}, stale {lost['stale']}: "
                 f"{'pass' if lost['passed'] else 'FAIL'}")
    alive = verdicts["processes_alive"]
    lines.append(f"processes alive: {'pass' if alive['passed'] else 'FAIL, exited: ' + ', '.join(alive['exited'])}")
    return lines
