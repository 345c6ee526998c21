"""Fault scenarios on the embedded stack: records flow through the real collectors (the `scheduler` process),
the hot path (a `hot-path` process) and PostgreSQL while an engine is stopped or a process is killed; then what
was collected is compared with what was stored and announced. Used by tests/devstack/test_faults.py (short
outages) and bench/faults.py (the issue's durations).

A scenario is a small declarative entry (`Scenario`): which engine to stop and for how long, or which process to
kill with SIGKILL and how many times. `run_scenario` gives each run its own source, topics and consumer group,
so runs on one stack never see each other's records:

- the source is a JSON API on the local sample server (`SampleSources.add_payload`), growing by
  `rate_per_second` records while the scenario runs; every record it offered is one "sent";
- the collectors run as `aegis-pipeline scheduler` on a sources file with this one source every
  `collect_every_seconds`; the hot path as `aegis-pipeline hot-path`. Neither is restarted by hand: only a
  process a scenario kills is started again, as a supervisor would;
- after the fault, records keep flowing for `settle_seconds`, then the run waits until every record the source
  offered is stored (or `timeout_seconds`), stops the processes with SIGTERM and reads the events topic from
  its beginning, as a new downstream consumer would.

Counted per scenario: sent, stored (records in `policies`), lost (sent, not stored), duplicated (a stored record
with more than one hot-path write or a version above 1: it was stored twice), events missing (of the events
expected below, those not on the topic), recovery time (from the end of the fault until every record offered
by then is stored), unexpected exits (a process that died on its own).

Events, per event type (`EventFigures`), by event id (each is derived from its fact, so the id says which event
is which, however often it was sent): expected, one per fact the scenario stored: `policy.validated` of each
stored policy's version, `data.quality_updated` of each stored policy's current scoring (the cold path's),
`data.sync_completed` of each sync run the scenario recorded; found on the topic at the end; missing. When the
broker is the engine stopped (it restarts empty), also how many of the expected events were on the topic just
before it stopped: all of them were lost with it and had to be announced again (`hot_path.broker_watch`). The
broker scenario scores and syncs once before the fault (`every_event_type_before_fault`), so that the broker
loses events of all three types.
Noted besides: the hot path's cache writes by outcome (from its /metrics) and how many stored policies are in
the Redis cache at the end (a Redis restart empties it: what was cached before is gone; what was stored while
it was down must be there, refilled).

May import: `devstack`, `settings`, `stores`, `schemas`, `hot_path`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from aegis_pipeline.common.errors import PipelineError
from aegis_pipeline.devstack import faults, stack
from aegis_pipeline.devstack.sample_sources import SampleSources
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.hot_path.cache import cache_key
from aegis_pipeline.hot_path.processor import policy_validated_event_id
from aegis_pipeline.schemas.events import EventType
from aegis_pipeline.schemas.fact_events import quality_updated_event_id, sync_completed_event_id
from aegis_pipeline.settings import ENGINE_FIELDS, CoreSettings, Settings
from aegis_pipeline.stores import cache, kafka, outbox, postgres

PIPELINE = str(Path(sys.executable).parent / "aegis-pipeline")
PAGE_SIZE = 100
BROKER_ENGINE = "kafka"  # the engine whose restart loses every event it held (the embedded broker keeps them in memory)


@dataclass(frozen=True)
class Scenario:
    """One fault: stop `engine` for `outage_seconds`, or SIGKILL `process` `kills` times at random points."""

    name: str
    engine: str | None = None
    outage_seconds: float = 0.0
    process: str | None = None  # "hot_path" or "cold_path"
    kills: int = 0
    # Run the cold path too (`aegis-pipeline cold-path run --source ...`, one run after the other, as its DAG
    # would): then every stored policy must also end scored, with its `data.quality_updated`.
    cold_path: bool = False
    # Sync the targets too (`sync.run.run_sync`, one run after the other, in this process as its DAG would): at
    # the end, after one more sync and a repair, every target must agree with PostgreSQL.
    sync: bool = False
    # Also publish records straight to the raw topic while the fault lasts, as a collector run already under way
    # would: without Redis the scheduler skips its runs (it cannot claim them), so the hot path would otherwise
    # have nothing to do while Redis is down.
    publish_during_fault: bool = False
    # Pause the hot path (SIGSTOP) this long before the engine stops, resume it right after: the broker then holds
    # records it acknowledged that nobody stored yet (a consumer lag), as it would under load.
    lag_seconds: float = 0.0
    # Before the fault, one cold-path run and one sync, their events sent: the topic then holds events of every
    # type when the fault comes (for the broker: events of every type lost, to be announced again).
    every_event_type_before_fault: bool = False

    def describe(self) -> str:
        if self.engine is not None:
            return f"{self.engine} stopped {self.outage_seconds:g} s"
        return f"{self.process} killed (SIGKILL) {self.kills}x"


# The scenarios at the durations (bench/faults.py); the tests shorten the outages.
SCENARIOS: dict[str, Scenario] = {
    "broker": Scenario("broker", engine=BROKER_ENGINE, outage_seconds=30, lag_seconds=5,
                       every_event_type_before_fault=True),
    "postgres": Scenario("postgres", engine="postgres", outage_seconds=60),
    "redis": Scenario("redis", engine="redis", outage_seconds=30, publish_during_fault=True),
    "hot_path_kill": Scenario("hot_path_kill", process="hot_path", kills=3),
    "cold_path_kill": Scenario("cold_path_kill", process="cold_path", kills=3, cold_path=True),
    "vectors_target": Scenario("vectors_target", engine="milvus", outage_seconds=30, cold_path=True, sync=True),
    "search_target": Scenario("search_target", engine="search", outage_seconds=30, cold_path=True, sync=True),
}


@dataclass
class EventFigures:
    """One event type's events of a scenario, counted by event id."""

    expected: int = 0                   # one per fact the scenario stored
    lost_with_broker: int | None = None  # of those, on the topic just before the broker stopped (broker faults)
    found: int = 0                      # of those, on the topic at the end
    missing: int = 0                    # expected, not found: the target is 0


@dataclass
class ScenarioResult:
    scenario: str
    fault: str
    sent: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    events_missing: int = 0  # the sum of `events`' missing
    recovery_seconds: float | None = None
    unexpected_exits: list[str] = field(default_factory=list)
    targets_converged: bool | None = None  # with sync: every target agrees with PostgreSQL after sync and repair
    events: dict[str, EventFigures] = field(default_factory=dict)  # by event type
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def nothing_lost(self) -> bool:
        return (self.sent > 0 and self.lost == 0 and self.duplicated == 0 and self.events_missing == 0
                and self.stored == self.sent and not self.unexpected_exits and self.targets_converged is not False)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "nothing_lost": self.nothing_lost}


@dataclass(frozen=True)
class RunOptions:
    rate_per_second: float = 20.0       # new records the source offers per second
    warmup_seconds: float = 5.0         # flowing before the fault
    settle_seconds: float = 5.0         # still flowing after the fault
    collect_every_seconds: float = 2.0  # the source's schedule
    republish_grace_seconds: float = 10.0
    broker_check_seconds: float = 3.0
    timeout_seconds: float = 180.0      # for everything offered to be stored after the fault
    seed: int | None = None


class GrowingSource:
    """A JSON API whose list grows while a scenario runs (`page`/`perPage`, oldest first, so that records added
    between two page requests do not shift the pages of one run)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._records: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            start = len(self._records)
            self._records.extend(self._record(number) for number in range(start, start + count))

    def _record(self, number: int, revision: int = 0) -> dict[str, str]:
        """Record `number` as the source serves it: the synthetic generator's texts (varied, so the cold path does
        not take them for duplicates of each other), open for applications; a `revision` above 0 changes its text."""
        record = make_record(number, source=self._prefix, revision=revision)
        return {"id": f"{self._prefix}-{number:06d}", "title": record.title, "content": record.content,
                "org": record.issuing_organization, "region": "@".join(record.target_region),
                "industry": "@".join(record.target_industry), "funding": record.funding_type or "",
                "period": "2026-11-01 ~ 2027-12-31", "url": record.original_url or ""}

    def ids(self) -> list[str]:
        with self._lock:
            return [record["id"] for record in self._records]

    def page(self, query: dict[str, str]) -> bytes:
        page, per_page = int(query.get("page", "1")), int(query.get("perPage", str(PAGE_SIZE)))
        with self._lock:
            chosen = self._records[(page - 1) * per_page: page * per_page]
        return json.dumps({"data": chosen}, ensure_ascii=False).encode("utf-8")


def sources_document(name: str, url: str, every_seconds: float) -> dict[str, Any]:
    return {"sources": [{
        "name": name, "kind": "json_api", "url": url,
        "pagination": {"type": "page_number", "page_param": "page", "size_param": "perPage",
                       "page_size": PAGE_SIZE},
        "records_path": "data", "id_field": "id", "max_pages": 1000,
        "fields": {"title": {"path": "title", "parser": "text"}, "content": {"path": "content", "parser": "text"},
                   "issuing_organization": {"path": "org", "parser": "strip"},
                   "target_region": {"path": "region", "parser": "list"},
                   "target_industry": {"path": "industry", "parser": "list"},
                   "funding_type": {"path": "funding", "parser": "strip"},
                   "application_start_date": {"path": "period", "parser": "date_range_start"},
                   "application_end_date": {"path": "period", "parser": "date_range_end"},
                   "original_url": {"path": "url", "parser": "url"}},
        "schedule": {"interval_hours": every_seconds / 3600},
        "rate_limit": {"requests_per_second": 200, "retry_after_seconds": 0.2},
    }]}


class PipelineProcesses:
    """The scheduler and the hot path as separate processes, configured for one scenario run."""

    def __init__(self, settings: Settings, options: RunOptions, sources_file: Path, logs: Path,
                 source_name: str) -> None:
        self.source_name = source_name
        engine_variables = {name.upper() for names in ENGINE_FIELDS.values() for name in names}
        self.environment = {
            **{name: value for name, value in os.environ.items() if name.upper() not in engine_variables},
            "AEGIS_DATA_DIR": str(settings.aegis_data_dir),
            "KAFKA_TOPIC_RAW_POLICIES": settings.kafka_topic_raw_policies,
            "KAFKA_TOPIC_POLICY_EVENTS": settings.kafka_topic_policy_events,
            "KAFKA_TOPIC_POLICY_STATE": settings.kafka_topic_policy_state,
            "KAFKA_TOPIC_DLQ": settings.kafka_topic_dlq, "KAFKA_CONSUMER_GROUP": settings.kafka_consumer_group,
            "KAFKA_BROKER_CHECK_SECONDS": str(options.broker_check_seconds),
            "COLLECTOR_REPUBLISH_GRACE_SECONDS": str(options.republish_grace_seconds),
            "HOT_PATH_BATCH_SIZE": "200", "COLD_PATH_BATCH_SIZE": "20", "METRICS_PORT": "0", "LOG_LEVEL": "WARNING",
        }
        self._sources_file = sources_file
        self._logs = logs
        self.hot_path_metrics_port = stack.free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.kills = 0
        self.cold_path_exit_code: int | None = None
        self.cold_path_running = asyncio.Event()
        self.closed = False

    def start(self, name: str) -> None:
        if self.closed:  # stopped for good (a failed run): a runner still looping must not start anything
            return
        command = {"hot_path": [PIPELINE, "hot-path"],
                   "scheduler": [PIPELINE, "scheduler", "--sources-file", str(self._sources_file)],
                   "cold_path": [PIPELINE, "cold-path", "run", "--source", self.source_name]}[name]
        environment = {**self.environment,
                       "METRICS_PORT": str(self.hot_path_metrics_port) if name == "hot_path" else "0"}
        with open(self._logs / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.kills += 1

    def running(self, name: str) -> bool:
        return name in self.processes and self.processes[name].poll() is None

    def dead(self) -> list[str]:
        """The long-running processes that are no longer running (the cold path is a batch job: it ends)."""
        return [name for name, process in self.processes.items()
                if name != "cold_path" and process.poll() is not None]

    async def run_cold_path_until(self, stop: asyncio.Event) -> None:
        """One cold path run after the other until `stop` (a killed run is followed by the next, as under its
        DAG's schedule); then one last run to its end."""
        while not stop.is_set():
            self.start("cold_path")
            self.cold_path_running.set()
            await asyncio.to_thread(self.processes["cold_path"].wait)
            self.cold_path_running.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        self.start("cold_path")
        self.cold_path_exit_code = await asyncio.to_thread(self.processes["cold_path"].wait)

    def stop_all(self) -> dict[str, int | None]:
        self.closed = True
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait(timeout=10)
        return codes


async def _stored(settings: Settings, source: str) -> dict[str, dict[str, Any]]:
    """external id -> {policy_id, version, hot_writes} of the source's stored policies (the database may be down:
    then nothing is known yet)."""
    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch(
            """
            SELECT p.external_id, p.id::text AS policy_id, p.version, p.status, p.scored_version, p.scored_at,
                   (SELECT count(*) FROM processing_history h
                    WHERE h.policy_id = p.id AND h.processing_path = 'hot') AS hot_writes,
                   (SELECT count(*) FROM processing_history h
                    WHERE h.policy_id = p.id AND h.processing_path = 'cold') AS cold_writes
            FROM policies p WHERE p.source_system = $1
            """,
            source,
        )
    return {row["external_id"]: dict(row) for row in rows}


async def _stored_or_none(settings: Settings, source: str) -> dict[str, dict[str, Any]] | None:
    try:
        return await _stored(settings, source)
    except Exception:  # the database is the fault being injected, or still starting
        return None


async def _wait_until_stored(settings: Settings, source: str, ids: list[str], timeout_seconds: float) -> bool:
    wanted = set(ids)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        stored = await _stored_or_none(settings, source)
        if stored is not None and wanted <= stored.keys():
            return True
        await asyncio.sleep(0.5)
    return False


async def read_events(settings: Settings, *, idle_seconds: float = 3.0) -> list[dict[str, Any]]:
    """Every event on the events topic, read from its beginning by a consumer of no group."""
    consumer = kafka.create_reader(settings, settings.kafka_topic_policy_events)
    await consumer.start()
    events: list[dict[str, Any]] = []
    try:
        while batch := await consumer.getmany(timeout_ms=int(idle_seconds * 1000), max_records=5000):
            events.extend(json.loads(message.value) for messages in batch.values() for message in messages)
    finally:
        await consumer.stop()
    return events


async def _cache_writes(port: int) -> dict[str, float]:
    """The hot path's `policy_cache_writes_total` by status, from its /metrics."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return {sample.labels["status"]: sample.value for family in text_string_to_metric_families(text)
            if family.name == "policy_cache_writes" for sample in family.samples
            if sample.name == "policy_cache_writes_total"}


async def _uncached(settings: Settings, policy_ids: list[str]) -> list[str]:
    """The policies of `policy_ids` not in the Redis cache."""
    client = cache.create_client(settings)
    try:
        uncached: list[str] = []
        for start in range(0, len(policy_ids), 500):
            chunk = policy_ids[start:start + 500]
            async with client.pipeline(transaction=False) as pipeline:
                for policy_id in chunk:
                    pipeline.exists(cache_key(policy_id))
                found = await pipeline.execute()
            uncached += [policy_id for policy_id, exists in zip(chunk, found, strict=True) if not exists]
        return uncached
    finally:
        await client.aclose()


async def _publish_directly(settings: Settings, source: str, rate_per_second: float, start: asyncio.Event,
                            until: asyncio.Event, published: list[str]) -> None:
    """Records of `source` straight onto the raw topic at `rate_per_second`, from `start` until `until` is set;
    their external ids are appended to `published` once the broker acknowledged them."""
    producer = kafka.create_producer(settings)
    await producer.start()
    try:
        # Only once the fault is in place: a record stored just before it (cached in the Redis about to stop)
        # is not one "stored while Redis was down", and the restart rightly empties it from the cache.
        await start.wait()
        index = 0
        while not until.is_set():
            records = [make_record(index + offset, source=source) for offset in range(max(1, int(rate_per_second / 4)))]
            index += len(records)
            for record in records:
                await producer.send_and_wait(settings.kafka_topic_raw_policies, record.model_dump_json().encode(),
                                             key=record.collection_metadata.record_key.encode())
                published.append(record.collection_metadata.external_id)
            await asyncio.sleep(0.25)
    finally:
        await producer.stop()


async def _published_unstored(settings: Settings, source: str) -> int:
    """Records the collector published (the broker acknowledged them) that are not stored yet."""
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return await connection.fetchval(
            "SELECT count(*) FROM collected_records c WHERE c.source_system = $1 AND NOT EXISTS (SELECT 1 FROM "
            "policies p WHERE p.source_system = c.source_system AND p.external_id = c.external_id "
            "AND p.published_hash = c.content_hash)", source)  # as collectors.state.CollectorState.unstored


async def _cold_runs(settings: Settings, source: str, status: str) -> int:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return await connection.fetchval(
            "SELECT count(*) FROM pipeline_metadata WHERE processing_path = 'cold' AND status = $2 "
            "AND metadata->'parameters'->>'source' = $1", source, status)


async def _cold_run_started(settings: Settings, source: str, *, timeout_seconds: float) -> bool:
    """Wait until the cold path run of `source` just started has recorded its start (is past its start-up, into
    its work): one more `running` row than before (killed runs stay `running`), or one more finished."""
    running, finished = await _cold_runs(settings, source, "running"), await _cold_runs(settings, source, "succeeded")
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if (await _cold_runs(settings, source, "running") > running
                or await _cold_runs(settings, source, "succeeded") > finished):
            return True
        await asyncio.sleep(0.05)
    return False


async def _sync_until(settings: Settings, stop: asyncio.Event, notes: dict[str, Any], run_ids: list[str]) -> None:
    """Sync runs one after the other until `stop`; counts the runs and the target results that failed, and adds
    the id of each run recorded to `run_ids`."""
    from aegis_pipeline.sync.run import run_sync

    runs = failed = 0
    while not stop.is_set():
        try:
            report = await run_sync(settings)
            run_ids.append(report.run_id)
            failed += sum(1 for target in report.results if not target.success)
        except PipelineError:  # PostgreSQL unreachable: the next run catches up
            failed += 1
        runs += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    notes["sync_runs"], notes["sync_target_failures"] = runs, failed


async def _converge_targets(settings: Settings, notes: dict[str, Any], sync_run_ids: list[str]) -> bool:
    """The next sync, then a repair, then a check: True when every target agrees with PostgreSQL."""
    from aegis_pipeline.sync.consistency import check_consistency, repair
    from aegis_pipeline.sync.run import run_sync

    report = await run_sync(settings)
    sync_run_ids.append(report.run_id)
    notes["final_sync_failed_targets"] = [target.target for target in report.results if not target.success]
    repaired = await repair(settings)
    notes["repaired"] = {name: counts for name, counts in repaired.fixed.items() if any(counts.values())}
    check = await check_consistency(settings)
    notes["drift_after_repair"] = {name: target.summary() for name, target in check.targets.items()
                                   if not target.consistent}
    return check.consistent


async def _score_and_sync_once(settings: Settings, processes: PipelineProcesses, notes: dict[str, Any],
                               sync_run_ids: list[str]) -> None:
    """One cold-path run of the scenario's source (the command sends its events when it is done) and one sync
    (its event sent here): `data.quality_updated` and `data.sync_completed` events on the topic, as well as the
    hot path's `policy.validated`. The sync writes the graph target only: one target is enough for an event, and
    the graph has no server and no embeddings to wait for."""
    from aegis_pipeline.sync.run import run_sync

    processes.start("cold_path")
    notes["cold_path_before_fault_exit_code"] = await asyncio.to_thread(processes.processes["cold_path"].wait)
    report = await run_sync(settings, targets=["graph"])
    sync_run_ids.append(report.run_id)
    await outbox.send_pending_events(settings)


async def _inject(scenario: Scenario, core: CoreSettings, settings: Settings, processes: PipelineProcesses,
                  rng: random.Random, notes: dict[str, Any], in_place: asyncio.Event,
                  event_ids_before_loss: set[str]) -> None:
    """The scenario's fault; `in_place` is set once it is in effect (the engine stopped, the first kill done).
    Stopping the broker, adds the ids of the events on the topic just before to `event_ids_before_loss`."""
    if scenario.engine is not None:
        paused_at = time.monotonic()
        if scenario.lag_seconds:
            processes.processes["hot_path"].send_signal(signal.SIGSTOP)
        try:
            if scenario.engine == BROKER_ENGINE:  # what the broker holds when it goes (it comes back empty)
                event_ids_before_loss.update(event["event_id"] for event in await read_events(settings))
            if scenario.lag_seconds:
                await asyncio.sleep(max(0.0, scenario.lag_seconds - (time.monotonic() - paused_at)))
                notes["published_unstored_when_stopped"] = await _published_unstored(settings,
                                                                                     processes.source_name)
            await asyncio.to_thread(faults.stop_engine, core, scenario.engine)
        finally:
            if scenario.lag_seconds:
                processes.processes["hot_path"].send_signal(signal.SIGCONT)
        in_place.set()
        started = time.monotonic()
        try:
            await asyncio.sleep(scenario.outage_seconds)
        finally:  # whatever happens, the stack is left running
            started = time.monotonic()
            await asyncio.to_thread(faults.start_engines, core)
        notes["engine_restart_seconds"] = round(time.monotonic() - started, 2)
        return
    assert scenario.process is not None
    if scenario.process == "cold_path":  # a batch job: killed in the middle of a run; the next run follows
        while processes.kills < scenario.kills:
            await processes.cold_path_running.wait()
            if await _cold_run_started(settings, processes.source_name, timeout_seconds=15):
                await asyncio.sleep(rng.uniform(0.0, 0.3))  # a random point of its work
                if processes.running("cold_path"):
                    processes.kill("cold_path")
                    in_place.set()
            while processes.running("cold_path"):  # missed: this run ended first; wait for the next  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        return
    for _ in range(scenario.kills):
        await asyncio.sleep(rng.uniform(1.0, 4.0))  # a random point of its work
        processes.kill(scenario.process)
        in_place.set()
        processes.start(scenario.process)  # as a supervisor (Kubernetes) would


async def _stream_through_fault(scenario: Scenario, core: CoreSettings, settings: Settings, options: RunOptions,
                                feed: GrowingSource, processes: PipelineProcesses, result: ScenarioResult,
                                rng: random.Random, progress: Callable[[str], None], sync_run_ids: list[str],
                                event_ids_before_loss: set[str]) -> tuple[list[str], list[str]]:
    """Records flowing, the fault, the wait for everything offered to be stored, the cold path's and the sync's
    last runs, then the processes stopped. Returns the external ids of every record offered, and of those
    published straight to the raw topic while the fault lasted; adds the id of every sync run recorded to
    `sync_run_ids`, and, for a broker fault, the ids of the events it lost to `event_ids_before_loss`."""
    source_name = processes.source_name
    cold_path_stop, sync_stop = asyncio.Event(), asyncio.Event()
    cold_path_runs: asyncio.Task[None] | None = None
    sync_runs: asyncio.Task[None] | None = None
    flowing = asyncio.Event()
    flowing.set()

    async def generate() -> None:
        owed = 0.0
        while flowing.is_set():
            owed += options.rate_per_second * 0.25
            if owed >= 1:
                feed.add(int(owed))
                owed -= int(owed)
            await asyncio.sleep(0.25)

    generator = asyncio.create_task(generate())
    published_directly: list[str] = []
    try:
        processes.start("hot_path")
        processes.start("scheduler")
        if scenario.cold_path:
            cold_path_runs = asyncio.create_task(processes.run_cold_path_until(cold_path_stop))
        if scenario.sync:
            sync_runs = asyncio.create_task(_sync_until(settings, sync_stop, result.notes, sync_run_ids))
        progress(f"{scenario.name}: records flowing")
        await asyncio.sleep(options.warmup_seconds)
        if not await _wait_until_stored(settings, source_name, feed.ids()[:1], options.timeout_seconds):
            raise RuntimeError(f"{scenario.name}: nothing was stored before the fault")
        if scenario.every_event_type_before_fault:
            progress(f"{scenario.name}: scoring and syncing before the fault")
            await _score_and_sync_once(settings, processes, result.notes, sync_run_ids)
        progress(f"{scenario.name}: fault: {scenario.describe()}")
        fault_in_place, fault_over = asyncio.Event(), asyncio.Event()
        direct = asyncio.create_task(_publish_directly(settings, source_name, options.rate_per_second,
                                                       fault_in_place, fault_over, published_directly)
                                     ) if scenario.publish_during_fault else None
        try:
            await _inject(scenario, core, settings, processes, rng, result.notes, fault_in_place,
                          event_ids_before_loss)
        finally:
            fault_over.set()
            fault_in_place.set()  # when the injection failed: the publisher sees the fault over and stops
            if direct is not None:
                await direct
        fault_ended = time.monotonic()
        offered_by_then = feed.ids() + published_directly
        if await _wait_until_stored(settings, source_name, offered_by_then, options.timeout_seconds):
            result.recovery_seconds = round(time.monotonic() - fault_ended, 1)
        progress(f"{scenario.name}: recovered in {result.recovery_seconds} s")
        await asyncio.sleep(max(0.0, options.settle_seconds - (time.monotonic() - fault_ended)))
    finally:
        flowing.clear()
        await generator
    offered = feed.ids() + published_directly
    await _wait_until_stored(settings, source_name, offered, options.timeout_seconds)
    if cold_path_runs is not None:
        cold_path_stop.set()
        await cold_path_runs  # its last run scores what is left
        result.notes["cold_path_last_exit_code"] = processes.cold_path_exit_code
        result.notes["cold_runs_killed_mid_run"] = await _cold_runs(settings, source_name, "running")
    if sync_runs is not None:
        sync_stop.set()
        await sync_runs
        result.targets_converged = await _converge_targets(settings, result.notes, sync_run_ids)
    result.unexpected_exits = processes.dead()
    if "hot_path" not in result.unexpected_exits:
        result.notes["cache_writes"] = await _cache_writes(processes.hot_path_metrics_port)
    result.notes["exit_codes"] = await asyncio.to_thread(processes.stop_all)
    result.notes["kills"] = processes.kills
    return offered, published_directly


async def run_scenario(core: CoreSettings, settings: Settings, scenario: Scenario, options: RunOptions,
                       *, progress: Callable[[str], None] = lambda line: None) -> ScenarioResult:
    """Run one scenario on the running stack of `core` (`settings` are its settings); see the module doc."""
    token = uuid.uuid4().hex[:8]
    source_name = f"fault_{scenario.name}_{token}"
    settings = await kafka.with_own_topics(settings, f"fault-{token}", partitions=settings.kafka_topic_partitions)
    settings = settings.model_copy(update={"kafka_consumer_group": f"fault-{token}"})
    result = ScenarioResult(scenario=scenario.name, fault=scenario.describe())
    feed = GrowingSource(prefix=f"F{token}")
    work = Path(tempfile.mkdtemp(prefix=f"fault-{scenario.name}-"))
    with SampleSources(crawl_delay_seconds=0) as server:
        url = server.add_payload(f"/fault/{token}/api", feed.page, "application/json; charset=utf-8")
        sources_file = work / "sources.yaml"
        sources_file.write_text(yaml.safe_dump(sources_document(source_name, url, options.collect_every_seconds),
                                               allow_unicode=True), encoding="utf-8")
        processes = PipelineProcesses(settings, options, sources_file, work, source_name)
        sync_run_ids: list[str] = []
        event_ids_before_loss: set[str] = set()
        try:
            offered, published_directly = await _stream_through_fault(
                scenario, core, settings, options, feed, processes, result, random.Random(options.seed), progress,
                sync_run_ids, event_ids_before_loss)
        finally:
            await asyncio.to_thread(processes.stop_all)  # after a failure too: nothing is left running
    stored = await _stored(settings, source_name)
    on_topic = {event["event_id"] for event in await read_events(settings)}
    result.sent = len(offered)
    result.stored = len(stored)
    result.lost = len(set(offered) - stored.keys())
    result.duplicated = sum(1 for row in stored.values() if row["version"] > 1 or row["hot_writes"] > 1)
    broker_lost = event_ids_before_loss if scenario.engine == BROKER_ENGINE else None
    for event_type, expected in (await _expected_event_ids(settings, stored, sync_run_ids)).items():
        result.events[event_type] = EventFigures(
            expected=len(expected), lost_with_broker=None if broker_lost is None else len(expected & broker_lost),
            found=len(expected & on_topic), missing=len(expected - on_topic))
    result.events_missing = sum(figures.missing for figures in result.events.values())
    if scenario.cold_path:
        result.notes["unscored"] = sum(1 for row in stored.values() if row["status"] == "pending_validation")
        result.notes["statuses"] = dict(Counter(row["status"] for row in stored.values()))
        result.notes["scored_more_than_once"] = sum(1 for row in stored.values() if row["cold_writes"] > 1)
    policy_ids = [row["policy_id"] for row in stored.values()]
    uncached_ids = set(await _uncached(settings, policy_ids))
    result.notes["cached"] = len(policy_ids) - len(uncached_ids)
    if published_directly:  # stored while the fault lasted: in the cache at the end, whatever happened to it
        during_fault = [stored[external_id]["policy_id"] for external_id in published_directly if external_id in stored]
        uncached = [policy_id for policy_id in during_fault if policy_id in uncached_ids]
        result.notes["published_during_fault"] = len(published_directly)
        result.notes["cached_of_published_during_fault"] = len(during_fault) - len(uncached)
        result.notes["uncached_of_published_during_fault"] = uncached[:10]  # to look up in the logs
    result.notes["logs"] = str(work)
    return result


async def _expected_event_ids(settings: Settings, stored: dict[str, dict[str, Any]],
                              sync_run_ids: list[str]) -> dict[str, set[str]]:
    """By event type, the ids of the events the scenario's stored facts must have on the topic: each stored
    policy's version, each stored policy's current scoring, each sync run recorded (by `sync_run_ids`)."""
    async with postgres.connect(settings.postgres_dsn()) as connection:
        sync_runs = await connection.fetch(
            "SELECT pipeline_run_id, completed_at FROM pipeline_metadata "
            "WHERE metadata->>'kind' = 'sync' AND pipeline_run_id = ANY($1::text[])", sync_run_ids)
    return {
        EventType.POLICY_VALIDATED.value: {policy_validated_event_id(row["policy_id"], row["version"])
                                           for row in stored.values()},
        # What the broker watch announces again after a loss: a scoring of the current version (one of an older
        # version was superseded by the newer version's policy.validated).
        EventType.DATA_QUALITY_UPDATED.value: {
            quality_updated_event_id(row["policy_id"], row["scored_version"], row["scored_at"])
            for row in stored.values()
            if row["scored_version"] == row["version"] and row["status"] in ("active", "rejected")},
        EventType.DATA_SYNC_COMPLETED.value: {sync_completed_event_id(row["pipeline_run_id"], row["completed_at"])
                                              for row in sync_runs},
    }


def table(results: list[ScenarioResult]) -> str:
    """The results as fixed-width text tables: one row per scenario, then one per scenario and event type."""
    header = ("scenario", "fault", "sent", "stored", "lost", "duplicated", "events missing", "recovery s",
              "targets converged")
    rows = [
        (result.scenario, result.fault, str(result.sent), str(result.stored), str(result.lost),
         str(result.duplicated), str(result.events_missing),
         "-" if result.recovery_seconds is None else f"{result.recovery_seconds:.1f}",
         {None: "-", True: "yes", False: "NO"}[result.targets_converged])
        for result in results
    ]
    event_header = ("scenario", "event type", "expected", "lost with broker", "found after", "missing")
    event_rows = [
        (result.scenario, event_type, str(figures.expected),
         "-" if figures.lost_with_broker is None else str(figures.lost_with_broker), str(figures.found),
         str(figures.missing))
        for result in results for event_type, figures in result.events.items()
    ]
    return f"{_fixed_width(header, rows)}\n\n{_fixed_width(event_header, event_rows)}"


def _fixed_width(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:]])
