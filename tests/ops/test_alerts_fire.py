"""Alerts proven on real faults (issue 21): the chart's alert rules, on the embedded stack's real Prometheus and
Alertmanager, fire for the faults they are written for, and the alert reaches Alertmanager.

The pipeline runs as its own commands (subprocesses reading the stack from AEGIS_DATA_DIR): batch commands push
their metrics to the stack's Pushgateway when they end, long-running ones (`hot-path`, `scheduler`) serve /metrics
and announce themselves to Prometheus (file-based discovery). Each test causes a fault, then polls Alertmanager's
API (v2, `devstack.monitoring.alerts`) until the alert is there; never the rule file, never Prometheus's API. The
seconds from the fault to the alert's arrival in Alertmanager are recorded (`record_property`) and printed when
the module ends:

- SyncFailed: the search target (Elasticsearch API) is stopped and `sync run` fails for it (DP_3003); after the
  target is back, the next sync succeeds and the alert leaves Alertmanager (resolve time measured too);
- DeadLettersExhausted: a record that stays invalid is dead-lettered by a running hot path, and `dlq retry` fails
  on it until its retries are used up; the hot path reports the exhausted letter on its scrapes;
- KafkaConsumerLagHigh: a running hot path is stuck (its PostgreSQL stopped) while more than 10,000 records arrive;
- PipelineLagHigh: no hot path consumes the raw topic while records wait on it, as the scheduler reads from the
  broker. The threshold is 300 s, and the rule must stay the chart's: the records carry broker timestamps seven
  minutes old, standing for a hot path that has been down that long (waiting the real seven minutes would not
  prove more: the age is the broker's timestamp, whoever wrote it).

The stack is this module's own (faults stop engines), with `devstack.faults.shorten_alerting`: Prometheus scrapes
and evaluates every second, and each rule's `for:` is divided by 60 (5m: 5 s, 15m: 15 s); expressions and
thresholds are the chart's. Each test uses its own topics and consumer group, and filters alerts by their labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aegis_pipeline.devstack import faults, monitoring, stack
from aegis_pipeline.devstack.synthetic import make_records
from aegis_pipeline.settings import CoreSettings, Settings, load_core_settings
from aegis_pipeline.stores import kafka, postgres
from aegis_pipeline.stores.dead_letters import MAX_RETRIES

pytestmark = pytest.mark.integration

PIPELINE = str(Path(sys.executable).parent / "aegis-pipeline")
ALERT_TIMEOUT_SECONDS = 60.0  # the longest `for:` here is 15 s; discovery, scrapes and evaluation add a few
COMMAND_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.2

# alert -> what was measured (printed when the module ends, and recorded per test with `record_property`)
MEASURED: dict[str, dict[str, Any]] = {}


@dataclass
class AlertStack:
    core: CoreSettings
    settings: Settings
    logs: Path
    retry_group_warmup: subprocess.Popen[bytes]

    def environment(self, **variables: str) -> dict[str, str]:
        """What a pipeline process of this stack runs with: the stack from AEGIS_DATA_DIR (tests/conftest.py took
        engine variables out of os.environ), /metrics on a free port, readable logs."""
        return {**os.environ, "AEGIS_DATA_DIR": str(self.core.aegis_data_dir), "METRICS_PORT": "0",
                "LOG_JSON": "false", **variables}

    def own_topics(self, tag: str, *, partitions: int) -> dict[str, str]:
        """A raw, events and dead-letter topic (created) and a consumer group of this test's own, as variables."""
        own = asyncio.run(kafka.with_own_topics(self.settings, tag, partitions=partitions))
        return {"KAFKA_TOPIC_RAW_POLICIES": own.kafka_topic_raw_policies,
                "KAFKA_TOPIC_POLICY_EVENTS": own.kafka_topic_policy_events,
                "KAFKA_TOPIC_DLQ": own.kafka_topic_dlq, "KAFKA_CONSUMER_GROUP": f"alerts-{tag}"}


@pytest.fixture(scope="module")
def alert_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertStack]:
    started = time.monotonic()
    core = load_core_settings(aegis_data_dir=tmp_path_factory.mktemp("alerts"))
    settings = stack.up(core)
    logs = tmp_path_factory.mktemp("alert-logs")
    warmup: subprocess.Popen[bytes] | None = None
    try:
        faults.shorten_alerting(core, settings)
        # `dlq retry` joins a consumer group of its own (hot_path.service.open_hot_path). The embedded broker numbers
        # a new group's first generation 0, and aiokafka does not leave a group of generation 0 when it stops: the
        # next run's join then waits some 13 s for the first member's session to end, unless it comes more than
        # ~12 s later. One run with nothing to retry, now, in the background: the test's retries join at once.
        with open(logs / "dlq-retry-warmup.log", "wb") as output:
            warmup = subprocess.Popen([PIPELINE, "dlq", "retry"], stdout=output, stderr=subprocess.STDOUT,
                                      env={**os.environ, "AEGIS_DATA_DIR": str(core.aegis_data_dir)})
        yield AlertStack(core, settings, logs, warmup)
    finally:
        if warmup is not None and warmup.poll() is None:
            warmup.kill()
            warmup.wait(timeout=10)
        stack.down(core, purge=True)
        print(f"\n== alerts proven on real faults (module {time.monotonic() - started:.1f} s, stack included)")
        for alert, measured in MEASURED.items():
            print(f"  {alert}: " + ", ".join(f"{key} {value}" for key, value in measured.items()))


# --- Alertmanager ----------------------------------------------------------------------------------------------

def held(settings: Settings, name: str, labels: dict[str, str]) -> list[monitoring.Alert]:
    """The alerts `name` with these labels that Alertmanager holds now (resolved ones are not listed)."""
    return [alert for alert in monitoring.alerts(settings.alertmanager_url)
            if alert.name == name and all(alert.labels.get(key) == value for key, value in labels.items())]


def seconds_until_held(settings: Settings, name: str, labels: dict[str, str], *, since: float,
                       explain: Callable[[], str] = str) -> float:
    """Poll Alertmanager until it holds the alert; the seconds from `since` (time.monotonic()) to its arrival."""
    deadline = time.monotonic() + ALERT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if held(settings, name, labels):
            return round(time.monotonic() - since, 1)
        time.sleep(POLL_SECONDS)
    pytest.fail(f"{name}{labels} did not reach Alertmanager within {ALERT_TIMEOUT_SECONDS:g} s; it holds "
                f"{monitoring.alerts(settings.alertmanager_url)}\n{explain()}")


def seconds_until_gone(settings: Settings, name: str, labels: dict[str, str], *, since: float) -> float:
    deadline = time.monotonic() + ALERT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not held(settings, name, labels):
            return round(time.monotonic() - since, 1)
        time.sleep(POLL_SECONDS)
    pytest.fail(f"{name}{labels} still in Alertmanager {ALERT_TIMEOUT_SECONDS:g} s after the fault was repaired")


def measured(record_property: Callable[[str, object], None], alert: str, **values: Any) -> None:
    MEASURED[alert] = values
    for key, value in values.items():
        record_property(f"{alert}.{key}", value)
    print(f"{alert}: {values}")


# --- pipeline processes ----------------------------------------------------------------------------------------

def run(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """A batch command, to its end (its metrics pushed when it ends)."""
    return subprocess.run([PIPELINE, *arguments], env=environment, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_SECONDS, check=False)


@contextlib.contextmanager
def serving(alert_stack: AlertStack, environment: dict[str, str], *arguments: str) -> Iterator[Process]:
    """A long-running command in the background, until the block ends (then SIGTERM, SIGKILL if it hangs)."""
    log = alert_stack.logs / f"{arguments[0]}-{uuid.uuid4().hex[:6]}.log"
    with open(log, "wb") as output:
        popen = subprocess.Popen([PIPELINE, *arguments], env=environment, stdout=output, stderr=subprocess.STDOUT)
    process = Process(popen, log, alert_stack.settings)
    try:
        yield process
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=10)


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path
    settings: Settings

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.is_file() else ""
        return f"--- {self.log}\n" + "\n".join(text.splitlines()[-lines:])

    def announced(self, job: str, *, timeout_seconds: float = 60) -> str:
        """Wait until the process announced its /metrics to Prometheus (its discovery file); its address."""
        assert self.settings.prometheus_file_sd_dir is not None
        announcement = self.settings.prometheus_file_sd_dir / f"{job}-{self.popen.pid}.json"
        deadline = time.monotonic() + timeout_seconds
        while not announcement.is_file():
            assert self.popen.poll() is None, f"{job} exited ({self.popen.returncode})\n{self.tail()}"
            assert time.monotonic() < deadline, f"{job} did not announce itself in {timeout_seconds:g} s\n{self.tail()}"
            time.sleep(0.1)
        return str(json.loads(announcement.read_text(encoding="utf-8"))[0]["targets"][0])

    def ready(self, address: str, *, timeout_seconds: float = 60) -> None:
        deadline = time.monotonic() + timeout_seconds
        while httpx.get(f"http://{address}/health/ready", timeout=5).status_code != 200:
            assert self.popen.poll() is None, f"exited ({self.popen.returncode})\n{self.tail()}"
            assert time.monotonic() < deadline, f"not ready in {timeout_seconds:g} s\n{self.tail()}"
            time.sleep(0.2)


def sample_values(text: str, name: str, **labels: str) -> list[float]:
    """The values of the samples `name` with these labels (and any others) in a Prometheus text exposition."""
    return [sample.value for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()]


# --- the faults ------------------------------------------------------------------------------------------------

def test_sync_failed_fires_while_the_search_target_is_down_and_resolves_after_a_good_sync(
        alert_stack: AlertStack, record_property: Callable[[str, object], None]) -> None:
    settings, labels = alert_stack.settings, {"target_db": "elasticsearch"}
    environment = alert_stack.environment()
    assert not held(settings, "SyncFailed", labels)
    # No policy is needed: a sync opens its target (index and alias set up) before it reads what changed.

    fault = time.monotonic()
    faults.stop_engine(alert_stack.core, "search")
    try:
        failed = run(environment, "sync", "run", "--target", "search")
        assert failed.returncode == 1 and "DP_3003" in failed.stdout, failed.stdout + failed.stderr
        pushed = time.monotonic()
        # Not the assertion (that is Alertmanager's), but what makes a missing alert explainable: the run's counts
        # are on the stack's Pushgateway, where batch commands push them when they end (cli/main.py).
        gateway = httpx.get(f"{settings.prometheus_pushgateway_url}/metrics", timeout=10).text
        failures = sample_values(gateway, "db_sync_last_run_failed", job="aegis-sync", target_db="elasticsearch")
        pushed_groups = "\n".join(line for line in gateway.splitlines() if 'job="aegis-' in line)
        assert sum(failures) > 0, ("`aegis-pipeline sync run` pushed no failed run to the stack's Pushgateway "
                                   f"({settings.prometheus_pushgateway_url}): SyncFailed cannot fire. Pushed there:"
                                   f"\n{pushed_groups or '(nothing)'}")
        fired = seconds_until_held(settings, "SyncFailed", labels, since=fault)
    finally:
        faults.start_engines(alert_stack.core)  # the target back, on its port
    repaired = time.monotonic()
    synced = run(environment, "sync", "run", "--target", "search")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    resolved = seconds_until_gone(settings, "SyncFailed", labels, since=repaired)
    measured(record_property, "SyncFailed", fault="search target (Elasticsearch API) stopped, sync run failed DP_3003",
             seconds_fault_to_alertmanager=fired, seconds_push_to_alertmanager=round(fired - (pushed - fault), 1),
             resolve="target restarted, sync run succeeded", seconds_repair_to_resolved=resolved)


def test_dead_letters_exhausted_fires_once_a_letter_failed_all_its_retries(
        alert_stack: AlertStack, record_property: Callable[[str, object], None]) -> None:
    settings, labels = alert_stack.settings, {"stage": "hot"}
    tag = uuid.uuid4().hex[:8]
    environment = alert_stack.environment(**alert_stack.own_topics(tag, partitions=1))
    key = f"alerts:{tag}"
    # Done before this letter exists (it retries every pending letter): else it would count a retry of this one.
    assert alert_stack.retry_group_warmup.wait(timeout=COMMAND_TIMEOUT_SECONDS) == 0

    async def publish_invalid() -> None:  # not JSON: invalid to the hot path now, and on every retry
        producer = kafka.create_producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(environment["KAFKA_TOPIC_RAW_POLICIES"], b"{not json", key=key.encode())
        finally:
            await producer.stop()

    async def letter() -> tuple[str, str] | None:
        async with postgres.connect(settings.postgres_dsn()) as connection:
            row = await connection.fetchrow("SELECT id::text, status FROM dead_letters WHERE record_key = $1", key)
        return (row["id"], row["status"]) if row else None

    async def forget_letter() -> None:  # an exhausted letter left behind would keep the alert firing
        async with postgres.connect(settings.postgres_dsn()) as connection:
            await connection.execute("DELETE FROM dead_letters WHERE record_key = $1", key)

    asyncio.run(publish_invalid())
    published = time.monotonic()
    try:
        # The scraped process: a hot path serving dead_letters_unresolved (read from the table on each scrape).
        with serving(alert_stack, environment, "hot-path") as hot_path:
            hot_path.announced("hot-path")
            deadline = time.monotonic() + 60
            while (found := asyncio.run(letter())) is None:
                assert hot_path.popen.poll() is None and time.monotonic() < deadline, hot_path.tail()
                time.sleep(POLL_SECONDS)
            letter_id = found[0]
            for attempt in range(1, MAX_RETRIES + 1):
                if attempt == MAX_RETRIES:  # pending letters, retries left: not this alert (yet)
                    assert not held(settings, "DeadLettersExhausted", labels)
                retried = run(environment, "dlq", "retry", "--id", letter_id)
                expected = "exhausted" if attempt == MAX_RETRIES else "pending"
                assert retried.returncode == 0 and f"retried: {expected} 1" in retried.stdout, \
                    retried.stdout + retried.stderr
            exhausted = time.monotonic()
            assert asyncio.run(letter()) == (letter_id, "exhausted")
            fired = seconds_until_held(settings, "DeadLettersExhausted", labels, since=exhausted,
                                       explain=hot_path.tail)
    finally:
        asyncio.run(forget_letter())
    measured(record_property, "DeadLettersExhausted",
             fault=f"invalid record dead-lettered by the hot path, `dlq retry` failed {MAX_RETRIES}x (exhausted)",
             seconds_fault_to_alertmanager=fired,
             seconds_publish_to_alertmanager=round(fired + exhausted - published, 1))


STUCK_RECORDS = 11_000  # the threshold is 10,000 waiting; the stuck hot path holds a few hundred of them


def test_kafka_consumer_lag_high_fires_while_the_hot_path_is_stuck(
        alert_stack: AlertStack, record_property: Callable[[str, object], None]) -> None:
    """The hot path runs but cannot store (its PostgreSQL is stopped) while records keep arriving: its consumer
    lag, refreshed apart from the stuck batch, passes 10,000."""
    settings, core = alert_stack.settings, alert_stack.core
    tag = uuid.uuid4().hex[:8]
    topics = alert_stack.own_topics(tag, partitions=3)
    environment = alert_stack.environment(**topics, HOT_PATH_BATCH_SIZE="100")
    labels = {"topic": topics["KAFKA_TOPIC_RAW_POLICIES"]}

    async def publish(messages: list[tuple[str, bytes, bytes]]) -> int:
        producer = kafka.create_producer(settings)
        await producer.start()
        try:
            return await kafka.send_all(producer, messages)
        finally:
            await producer.stop()

    with serving(alert_stack, environment, "hot-path") as hot_path:
        messages = [(topics["KAFKA_TOPIC_RAW_POLICIES"], record.collection_metadata.record_key.encode(),
                     record.model_dump_json().encode())
                    for record in make_records(STUCK_RECORDS, source=f"alerts_{tag}")]  # while it starts
        hot_path.ready(hot_path.announced("hot-path"))  # consuming its partitions, nothing waiting
        assert not held(settings, "KafkaConsumerLagHigh", labels)
        fault = time.monotonic()
        faults.stop_engine(core, "postgres")
        try:
            assert asyncio.run(publish(messages)) == STUCK_RECORDS
            fired = seconds_until_held(settings, "KafkaConsumerLagHigh", labels, since=fault, explain=hot_path.tail)
            assert hot_path.popen.poll() is None, hot_path.tail()  # stuck, not dead
        finally:
            faults.start_engines(core)  # PostgreSQL back (with its data), before the hot path is stopped
    measured(record_property, "KafkaConsumerLagHigh",
             fault=f"hot path running, its PostgreSQL stopped, {STUCK_RECORDS} records published",
             seconds_fault_to_alertmanager=fired)


AGED_SECONDS = 420  # 7 minutes: over the rule's 300 s


def test_pipeline_lag_high_fires_while_records_wait_for_a_stopped_hot_path(
        alert_stack: AlertStack, record_property: Callable[[str, object], None], tmp_path: Path) -> None:
    """No hot path consumes the raw topic (stopped) while records wait there: the scheduler, reading the consumer
    group's position from the broker, reports their age. The records' broker timestamps are seven minutes old,
    standing for a hot path down that long (the threshold, 300 s, stays the chart's)."""
    settings, labels = alert_stack.settings, {"path": "hot"}
    tag = uuid.uuid4().hex[:8]
    topics = alert_stack.own_topics(tag, partitions=3)
    environment = alert_stack.environment(**topics)
    # The scheduler's collections are not what is tested: one source, disabled, so it never fetches.
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(json.dumps({"sources": [{
        "name": f"idle_{tag}", "kind": "json_api", "url": "http://127.0.0.1:9/", "enabled": False,
        "pagination": {"type": "page_number", "page_param": "page", "size_param": "perPage", "page_size": 100},
        "records_path": "data", "id_field": "id", "schedule": {"interval_hours": 1},
        "fields": {"title": {"path": "title", "parser": "text"}, "content": {"path": "content", "parser": "text"},
                   "issuing_organization": {"path": "org", "parser": "strip"}},
    }]}), encoding="utf-8")
    records = make_records(5, source=f"alerts_{tag}")

    async def publish_aged() -> None:
        producer = kafka.create_producer(settings)
        await producer.start()
        try:
            stamped = int((time.time() - AGED_SECONDS) * 1000)
            for record in records:
                await producer.send_and_wait(topics["KAFKA_TOPIC_RAW_POLICIES"], record.model_dump_json().encode(),
                                             key=record.collection_metadata.record_key.encode(), timestamp_ms=stamped)
        finally:
            await producer.stop()

    with serving(alert_stack, environment, "scheduler", "--sources-file", str(sources_file)) as scheduler:
        address = scheduler.announced("scheduler")
        exported = sample_values(httpx.get(f"http://{address}/metrics", timeout=10).text, "pipeline_lag_seconds",
                                 path="hot")
        assert exported == [0], f"the scheduler should export pipeline_lag_seconds{{path=\"hot\"}} 0: {exported}"
        assert not held(settings, "PipelineLagHigh", labels)
        fault = time.monotonic()
        asyncio.run(publish_aged())
        fired = seconds_until_held(settings, "PipelineLagHigh", labels, since=fault, explain=scheduler.tail)
    measured(record_property, "PipelineLagHigh",
             fault=f"no hot path, records waiting on the raw topic with broker timestamps {AGED_SECONDS} s old",
             seconds_fault_to_alertmanager=fired)
