"""Metrics that tell the truth (issue 27), on the real engines:

- the hot path's group lag read from the broker by the scheduler's probe (`kafka_consumer_group_lag`: end offset
  minus committed offset), with the time of the read, while no consumer of the group runs; never negative, not for
  a record stamped in the future nor for a commit past the end the embedded broker answers;
- the hot path's own `kafka_consumer_lag` never negative on the embedded broker, and the time of its last refresh;
- batch metrics added up on the real Pushgateway: two runs with the same counts read as both (counters and
  histograms), gauges keep the series a run did not set, the gauges of long-running processes are not pushed.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from aegis_pipeline.common import metrics
from aegis_pipeline.common.metrics import SCRAPED_ONLY, push_batch_metrics
from aegis_pipeline.devstack.synthetic import make_records
from aegis_pipeline.hot_path import service
from aegis_pipeline.hot_path.service import run_hot_path
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores.kafka import GroupFreshnessProbe

pytestmark = pytest.mark.integration

OwnTopics = Callable[..., Awaitable[Settings]]


async def commit(settings: Settings, group_id: str, offsets: dict[int, int]) -> None:
    """What the hot path does after storing a batch: the group's offsets committed (the next record to read)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = {partition: TopicPartition(settings.kafka_topic_raw_policies, partition) for partition in offsets}
        consumer.assign(list(partitions.values()))
        await consumer.commit({partitions[partition]: offset for partition, offset in offsets.items()})
    finally:
        await consumer.stop()


def group_lag(topic: str, partitions: int) -> dict[int, float | None]:
    return {partition: REGISTRY.get_sample_value("kafka_consumer_group_lag",
                                                 {"topic": topic, "partition": str(partition)})
            for partition in range(partitions)}


async def test_the_probe_exports_the_groups_lag_from_the_broker_never_negative(own_topics: OwnTopics) -> None:
    settings = await own_topics(partitions=3)
    topic = settings.kafka_topic_raw_policies
    group = f"group-lag-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        now_ms = int(time.time() * 1000)
        for age_seconds in (600, 500, 400):  # one produce request each: the embedded broker sees three batches
            await producer.send_and_wait(topic, b"{}", key=b"a", partition=0, timestamp_ms=now_ms - age_seconds * 1000)
        # Stamped ten minutes ahead of this clock (a producer whose clock runs fast): it has waited 0 s, not -600.
        await producer.send_and_wait(topic, b"{}", key=b"b", partition=1, timestamp_ms=now_ms + 600_000)
        # Five records in one batch: the embedded broker answers the partition's end as the batch's first offset
        # + 1, so the hot path's commit after reading them (5) is past that end.
        sent = [await producer.send(topic, b"{}", key=b"c", partition=2, timestamp_ms=now_ms) for _ in range(5)]
        await producer.flush()
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    probe = GroupFreshnessProbe(settings, topic, group)
    await probe.start()
    try:
        before = time.time()
        lag = await probe.export_metrics(path="hot")
        assert lag.records[0] == 3 and lag.records[1] == 1 and lag.records[2] >= 1  # never committed: all
        assert group_lag(topic, 3) == {partition: float(records) for partition, records in lag.records.items()}
        assert 600 <= REGISTRY.get_sample_value("pipeline_lag_seconds", {"path": "hot"}) < 610
        assert lag.ages[1] == 0.0
        refreshed = REGISTRY.get_sample_value("pipeline_lag_last_refresh_timestamp_seconds", {"path": "hot"})
        assert refreshed is not None and before <= refreshed <= time.time()

        # The group commits as the hot path would: one record left on 0, none on 1, the whole batch on 2.
        await commit(settings, group, {0: 2, 1: 1, 2: 5})
        lag = await probe.export_metrics(path="hot")
        assert lag.records == {0: 1, 1: 0, 2: 0}
        assert group_lag(topic, 3) == {0: 1.0, 1: 0.0, 2: 0.0}
        assert 400 <= REGISTRY.get_sample_value("pipeline_lag_seconds", {"path": "hot"}) < 410
        assert all(age >= 0 for age in lag.ages.values())
    finally:
        await probe.stop()
        for partition in range(3):
            metrics.kafka_consumer_group_lag.remove(topic, str(partition))


async def test_the_hot_paths_lag_is_never_negative_and_says_when_it_was_refreshed(
        own_topics: OwnTopics, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = await own_topics(partitions=1)
    topic = settings.kafka_topic_raw_policies
    monkeypatch.setattr(service, "LAG_REFRESH_SECONDS", 0.1)
    records = make_records(8, source=f"lagsign_{uuid.uuid4().hex[:6]}")
    seen: list[float] = []
    stop = asyncio.Event()
    hot_path = asyncio.create_task(run_hot_path(settings, stop, serve_ops=False,
                                                group_id=f"lag-sign-{uuid.uuid4().hex[:8]}"))
    try:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:  # all in one batch: read whole, the consumer's position is past the end the embedded broker answers
            sent = [await producer.send(topic, record.model_dump_json().encode(), partition=0,
                                        key=record.collection_metadata.record_key.encode()) for record in records]
            await producer.flush()
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        started = time.time()
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            value = REGISTRY.get_sample_value("kafka_consumer_lag", {"topic": topic, "partition": "0"})
            if value is not None:
                seen.append(value)
            refreshed = REGISTRY.get_sample_value("kafka_consumer_lag_last_refresh_timestamp_seconds",
                                                  {"topic": topic})
            if seen and seen[-1] == 0 and refreshed is not None and refreshed > started + 0.5:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        summary = await asyncio.wait_for(hot_path, 30)
    assert summary.stored == len(records)
    assert seen and min(seen) >= 0 and seen[-1] == 0, seen
    assert refreshed is not None and refreshed > started, "the lag's refresh time did not follow"


# Pushgateway ------------------------------------------------------------------------------------------------------

def gateway_samples(gateway_url: str, job: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The gateway's /metrics samples of group `job`, without the grouping labels."""
    with urllib.request.urlopen(f"{gateway_url}/metrics", timeout=10) as answer:
        text = answer.read().decode("utf-8")
    # Bucket bounds as Go writes them ("60"), whatever wrote them ("60.0").
    return {(sample.name, frozenset((key, str(float(value)) if key == "le" else value)
                                    for key, value in sample.labels.items()
                                    if key not in {"job", "instance"})): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.labels.get("job") == job}


@pytest.fixture
def pushed_job(stack: Settings) -> Iterator[str]:
    """A command name of this test's own; its group is deleted from the stack's Pushgateway afterwards."""
    command = f"metrics-test-{uuid.uuid4().hex[:8]}"
    yield command
    request = urllib.request.Request(f"{stack.prometheus_pushgateway_url}/metrics/job/aegis-{command}",
                                     method="DELETE")
    urllib.request.urlopen(request, timeout=10).close()


def a_run(*, records: int, failed_target: str | None, buckets: tuple[float, ...] = (1, 60, 3600)) -> CollectorRegistry:
    """The metrics of one batch run, in a registry of their own (names of this test only: the gateway checks
    that a name has one type and help in all its groups)."""
    registry = CollectorRegistry()
    done = Counter("aegis_test_records_total", "records", ["status"], registry=registry)
    done.labels(status="ok").inc(records)
    took = Histogram("aegis_test_run_seconds", "run", ["path"], buckets=buckets, registry=registry)
    took.labels(path="cold").observe(42)
    score = Gauge("aegis_test_score", "score", ["source"], registry=registry)
    score.labels(source=failed_target or "all").set(records / 10)
    Gauge("aegis_test_last_success_timestamp_seconds", "when", registry=registry).set(0 if failed_target else 1000)
    Gauge("kafka_consumer_lag", "lag", ["topic", "partition"], registry=registry).labels("raw", "0").set(7)
    return registry


def test_two_runs_with_equal_counts_add_up_on_the_pushgateway(stack: Settings, pushed_job: str) -> None:
    gateway = stack.prometheus_pushgateway_url
    job = f"aegis-{pushed_job}"
    push_batch_metrics(gateway, pushed_job, registry=a_run(records=3, failed_target=None))
    first = gateway_samples(gateway, job)
    assert first[("aegis_test_records_total", frozenset({("status", "ok")}))] == 3
    push_batch_metrics(gateway, pushed_job, registry=a_run(records=3, failed_target="milvus"))
    second = gateway_samples(gateway, job)

    assert second[("aegis_test_records_total", frozenset({("status", "ok")}))] == 6  # both runs: rate() sees +3
    cold = frozenset({("path", "cold")})
    assert second[("aegis_test_run_seconds_count", cold)] == 2 and second[("aegis_test_run_seconds_sum", cold)] == 84
    assert second[("aegis_test_run_seconds_bucket", cold | {("le", "60.0")})] == 2
    assert second[("aegis_test_run_seconds_bucket", cold | {("le", "1.0")})] == 0
    # Gauges: this run's value, and the last value of a series this run did not set.
    assert second[("aegis_test_score", frozenset({("source", "milvus")}))] == 0.3
    assert second[("aegis_test_score", frozenset({("source", "all")}))] == 0.3
    # "When X last happened": a run where it did not happen does not take it back.
    assert second[("aegis_test_last_success_timestamp_seconds", frozenset())] == 1000
    names = {name for name, _ in second}
    assert not names & SCRAPED_ONLY  # a long-running process's gauges are not pushed
    assert not any(name.endswith("_created") for name in names)
    assert ("push_time_seconds", frozenset()) in second  # the staleness of the group, kept by the gateway

    # New bucket bounds in the code: that histogram's series starts again (old buckets cannot be added).
    push_batch_metrics(gateway, pushed_job, registry=a_run(records=3, failed_target=None, buckets=(1, 30, 3600)))
    third = gateway_samples(gateway, job)
    assert third[("aegis_test_run_seconds_count", cold)] == 1
    assert third[("aegis_test_run_seconds_bucket", cold | {("le", "30.0")})] == 0
    assert third[("aegis_test_records_total", frozenset({("status", "ok")}))] == 9


def test_the_pipelines_own_metrics_add_up_and_a_push_to_nowhere_is_only_logged(stack: Settings,
                                                                               pushed_job: str) -> None:
    gateway = stack.prometheus_pushgateway_url
    job = f"aegis-{pushed_job}"
    metrics.db_sync_last_run_failed.labels(target_db="metrics-test").set(1)
    try:
        push_batch_metrics(gateway, pushed_job)
        once = gateway_samples(gateway, job)
        push_batch_metrics(gateway, pushed_job)
        twice = gateway_samples(gateway, job)
    finally:
        metrics.db_sync_last_run_failed.remove("metrics-test")
    assert twice[("db_sync_last_run_failed", frozenset({("target_db", "metrics-test")}))] == 1
    # The pipeline's counters (the process's own, CPU seconds and the like, go on between the pushes).
    counters = [key for key in once if key[0].endswith("_total") and once[key] > 0
                and not key[0].startswith(("process_", "python_"))]
    assert counters, "this process has counted something by now"
    for key in counters:
        assert twice[key] == 2 * once[key], key
    with urllib.request.urlopen(f"{gateway}/api/v1/metrics", timeout=10) as answer:
        groups = [item["labels"] for item in json.load(answer)["data"]]
    assert groups.count({"job": job}) == 1  # one group per kind of work: stable grouping

    push_batch_metrics("http://127.0.0.1:9", pushed_job)  # refused: logged, not raised
