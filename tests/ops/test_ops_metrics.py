"""The operations endpoints on the real engines: the dead-letter queue's size (`dead_letters_unresolved`) read
from the `dead_letters` table on each scrape (a database that fails the refresh does not fail the scrape); batch
commands pushing to a Pushgateway (how the pushes add up: test_metrics_truth.py); the scheduler serving the probes
and metrics of its Deployment, and the hot path's freshness (`pipeline_lag_seconds{path="hot"}`) read from the
broker while no hot path runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from aegis_pipeline.cli.main import main
from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.common.ops_server import OpsServer
from aegis_pipeline.devstack.stack import free_port
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.stores.dead_letters import DeadLetter, DeadLetterQueue, DeadLetterStore

if TYPE_CHECKING:
    from conftest import FakePushgateway, OwnTopics

pytestmark = pytest.mark.integration


def unresolved(metrics_text: str) -> dict[tuple[str, str], float]:
    return {(sample.labels["stage"], sample.labels["status"]): sample.value
            for family in text_string_to_metric_families(metrics_text) if family.name == "dead_letters_unresolved"
            for sample in family.samples}


async def table_counts(pool, stage: str) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM dead_letters WHERE stage = $1 GROUP BY status", stage)
    return {row["status"]: row["n"] for row in rows}


async def test_the_dead_letter_gauge_follows_the_table_on_each_scrape(stack: Settings) -> None:
    pool = await postgres.create_pool(stack)
    queue = DeadLetterQueue(pool, None, stack.kafka_topic_dlq)
    port = free_port()
    server = OpsServer(port, lambda: None, hosts=("127.0.0.1",), before_scrape=queue.refresh_unresolved_gauge)
    await server.start()
    stage = "sync"  # letters of this test only: no other test writes sync letters
    key = f"ops-metrics:{uuid.uuid4().hex[:8]}"
    pool_open = True
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            before = unresolved((await client.get("/metrics")).text)
            counts = await table_counts(pool, stage)
            assert before[(stage, "pending")] == counts.get("pending", 0)

            await queue.send([DeadLetter(stage=stage, error_code=ErrorCode.MILVUS_SYNC_FAILED, error_message="down",
                                         record_key=f"{key}:{n}") for n in range(3)])
            grown = unresolved((await client.get("/metrics")).text)
            assert grown[(stage, "pending")] == before[(stage, "pending")] + 3

            store = DeadLetterStore(pool)
            ours = [letter for letter in await store.list(statuses=["pending"], limit=1000)
                    if (letter.record_key or "").startswith(key)]
            await store.resolve(ours[0].id)
            await store.retry_failed(ours[1].id, "down again")
            await store.retry_failed(ours[1].id, "down again")
            await store.retry_failed(ours[1].id, "down again")  # the third failed retry exhausts it
            after = unresolved((await client.get("/metrics")).text)
            assert after[(stage, "pending")] == before[(stage, "pending")] + 1
            assert after[(stage, "exhausted")] == before.get((stage, "exhausted"), 0) + 1

            await pool.close()
            pool_open = False  # the next refresh fails: the scrape still answers, with the last values
            response = await client.get("/metrics")
            assert response.status_code == 200
            assert unresolved(response.text) == after
    finally:
        await server.stop()
        if pool_open:
            await pool.close()
        async with postgres.connect(stack.postgres_dsn()) as connection:
            await connection.execute("DELETE FROM dead_letters WHERE record_key LIKE $1", f"{key}:%")


def test_a_batch_command_pushes_its_metrics_to_the_pushgateway(stack: Settings, pushgateway: FakePushgateway,
                                                               restore_logging: None) -> None:
    result = CliRunner().invoke(main, ["dlq", "list", "--json"], env={"PROMETHEUS_PUSHGATEWAY_URL": pushgateway.url})
    assert result.exit_code == 0, result.output
    unpushed = CliRunner().invoke(main, ["db", "current"], env={"PROMETHEUS_PUSHGATEWAY_URL": pushgateway.url})
    assert unpushed.exit_code == 0, unpushed.output
    assert [(push.method, push.job) for push in pushgateway.pushes] == [("PUT", "aegis-dlq")]
    body = pushgateway.pushes[0].body
    assert "# TYPE db_sync_total counter" in body and "# TYPE db_sync_latency_seconds histogram" in body
    # Read from the table on each scrape by the long-running processes: a pushed copy could only grow stale.
    assert "dead_letters_unresolved" not in body and "kafka_consumer_lag" not in body


def test_the_scheduler_serves_the_probes_and_metrics_its_deployment_uses(stack: Settings) -> None:
    port = free_port()
    environment = {**os.environ, "METRICS_PORT": str(port), "SAMPLE_SOURCES_URL": "http://127.0.0.1:9",
                   "SAMPLE_SERVICE_KEY": "unused"}
    sources = Path(__file__).parents[2] / "src" / "aegis_pipeline" / "devstack" / "sample_sources.yaml"
    process = subprocess.Popen([str(Path(sys.executable).parent / "aegis-pipeline"), "scheduler",
                                "--sources-file", str(sources)], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, "the scheduler did not serve"
                time.sleep(0.3)
        assert ready.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json() == {"status": "alive"}
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "# TYPE data_collection_total counter" in metrics
        assert 'dead_letters_unresolved{stage="collect",status="pending"}' in metrics
        assert hot_path_freshness(metrics) is not None  # read from the broker, whether a hot path runs or not
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors.decode()


def hot_path_freshness(metrics_text: str) -> float | None:
    return next((sample.value for family in text_string_to_metric_families(metrics_text)
                 if family.name == "pipeline_lag_seconds" for sample in family.samples
                 if sample.labels == {"path": "hot"}), None)


async def test_the_scheduler_reports_how_long_raw_records_have_waited_for_a_stopped_hot_path(
        own_topics: OwnTopics) -> None:
    """The hot path is not running: only the broker knows its records wait. The scheduler's /metrics says for how
    long (the oldest one the group has not committed), and follows what the group commits."""
    settings = await own_topics(partitions=2)
    group = f"stopped-hot-path-{uuid.uuid4().hex[:8]}"
    topic = settings.kafka_topic_raw_policies
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        now_ms = int(time.time() * 1000)
        await producer.send_and_wait(topic, b"{}", key=b"a", partition=0, timestamp_ms=now_ms - 900_000)
        await producer.send_and_wait(topic, b"{}", key=b"b", partition=1, timestamp_ms=now_ms - 300_000)
    finally:
        await producer.stop()

    port = free_port()
    environment = {**os.environ, "METRICS_PORT": str(port), "SAMPLE_SOURCES_URL": "http://127.0.0.1:9",
                   "SAMPLE_SERVICE_KEY": "unused", "KAFKA_TOPIC_RAW_POLICIES": topic,
                   "KAFKA_TOPIC_DLQ": settings.kafka_topic_dlq, "KAFKA_CONSUMER_GROUP": group}
    sources = Path(__file__).parents[2] / "src" / "aegis_pipeline" / "devstack" / "sample_sources.yaml"
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "aegis-pipeline"), "scheduler", "--sources-file", str(sources),
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            async def freshness() -> float | None:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while True:
                    try:
                        return hot_path_freshness((await client.get("/metrics")).text)
                    except httpx.HTTPError:
                        assert process.returncode is None and loop.time() < deadline, "the scheduler did not serve"
                        await asyncio.sleep(0.3)

            waited = await freshness()
            assert waited is not None and 900 <= waited < 930

            # What the hot path does once it stored a record: the group commits past it.
            consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group,
                                        enable_auto_commit=False)
            await consumer.start()
            try:
                partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
                consumer.assign(partitions)
                await consumer.commit({partitions[0]: 1})
                waited = await freshness()
                assert waited is not None and 300 <= waited < 330
                await consumer.commit({partitions[1]: 1})
                assert await freshness() == 0
            finally:
                await consumer.stop()
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, errors.decode()
