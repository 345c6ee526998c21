"""Hot path benchmark on the embedded stack: throughput, end-to-end latency, and the design's baseline.

    .venv/bin/python bench/hot_path.py [--records 100000] [--baseline-records 3000] [--latency-seconds 10]

1. Throughput: N realistic records are published to a fresh raw topic, then `--replicas` processes of
   `aegis-pipeline hot-path --drain` (separate processes in one consumer group, as in production, where the
   design runs at least 2 replicas) consume them. Records/s is measured from PostgreSQL's own
   processing timestamps (first to last stored), so process start-up and the consumer group join do not count.
2. Latency: a hot path runs while records are published at half the measured throughput; each record's
   latency is from its collection (`collected_at`, stamped at publish) to its `policy.validated` event arriving
   on `policy-events`, read by a consumer here.
3. Baseline (measured first, so it finds the database as the hot path does): the same kind of records through
   a one-record-at-a-time path written like the design's `process_single` (validate, INSERT, cache, awaited
   send), in this process.

Targets (issue 4): >= 5,000 records/s sustained, p99 < 1 s at half that rate, >= 10x the baseline.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack import stack
from devstack.synthetic import make_record, make_records
from settings import Settings, load_core_settings
from stores import cache, kafka, postgres

PIPELINE = str(Path(sys.executable).parent / "aegis-pipeline")
TARGET_RECORDS_PER_SECOND = 5000
TARGET_P99_SECONDS = 1.0
TARGET_RATIO = 10
PACING_TICK_SECONDS = 0.005


def hot_path_process(settings: Settings, *extra: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "KAFKA_TOPIC_RAW_POLICIES": settings.kafka_topic_raw_policies,
                   "KAFKA_TOPIC_POLICY_EVENTS": settings.kafka_topic_policy_events,
                   "KAFKA_TOPIC_DLQ": settings.kafka_topic_dlq, "METRICS_PORT": "0", "LOG_LEVEL": "WARNING",
                   "HOT_PATH_BATCH_SIZE": str(settings.hot_path_batch_size),
                   "KAFKA_CONSUMER_GROUP": settings.kafka_consumer_group}
    return subprocess.Popen([PIPELINE, "hot-path", *extra], env=environment, stdout=subprocess.DEVNULL)


async def publish(settings: Settings, records: list, *, rate_per_second: float | None = None) -> None:
    # The collectors' own producer (stores.kafka): the same partitions per key, and its compiled partitioner keeps
    # this stand-in for the collectors from taking CPU the hot path needs while latency is measured.
    producer = kafka.create_producer(settings)
    await producer.start()
    try:
        started = time.monotonic()
        for index, record in enumerate(records):
            if rate_per_second is not None:
                # Paced in ticks, not one sleep per record (thousands of timer wake-ups a second, CPU the hot path
                # needs): a record up to one tick early goes at once, stamped with the time it is sent.
                due = started + index / rate_per_second
                if (delay := due - time.monotonic()) > PACING_TICK_SECONDS:
                    await asyncio.sleep(delay)
                record = record.model_copy(update={"collection_metadata": record.collection_metadata.model_copy(
                    update={"collected_at": datetime.now(UTC)})})
            await producer.send(settings.kafka_topic_raw_policies, record.model_dump_json().encode(),
                                key=record.collection_metadata.record_key.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def measure_throughput(settings: Settings, count: int, replicas: int) -> dict:
    source = f"bench_{uuid.uuid4().hex[:6]}"
    records = make_records(count, source=source)
    await publish(settings, records)
    started = time.monotonic()
    processes = [hot_path_process(settings, "--drain") for _ in range(replicas)]
    for process in processes:
        await asyncio.to_thread(process.wait)
    wall_seconds = time.monotonic() - started
    async with postgres.connect(settings.postgres_dsn()) as connection:
        row = await connection.fetchrow(
            "SELECT count(*) AS stored, extract(epoch FROM max(h.processed_at) - min(h.processed_at)) AS seconds, "
            "max(h.processing_time_ms) AS max_batch_ms "
            "FROM processing_history h JOIN policies p ON p.id = h.policy_id WHERE p.source_system = $1", source)
    # processed_at is each batch's commit time: the first batch's own duration is not in the span, so add it.
    seconds = float(row["seconds"] or 0) + (row["max_batch_ms"] or 0) / 1000
    return {"records": count, "stored": row["stored"], "seconds": round(seconds, 3),
            "records_per_second": round(row["stored"] / seconds) if seconds else None,
            "wall_seconds_including_start": round(wall_seconds, 2), "replicas": replicas,
            "exit_codes": [process.returncode for process in processes]}


async def wait_until_consuming(settings: Settings, source: str, timeout_seconds: float = 60) -> None:
    """Send one record and wait for its row: the consumer has joined its group and is working."""
    probe = make_record(999_999, source=source)
    await publish(settings, [probe])
    deadline = time.monotonic() + timeout_seconds
    async with postgres.connect(settings.postgres_dsn()) as connection:
        while time.monotonic() < deadline:
            if await connection.fetchval("SELECT count(*) FROM policies WHERE source_system = $1", source):
                return
            await asyncio.sleep(0.2)
    raise TimeoutError("the hot path did not start consuming")


async def wait_until_group_stable(settings: Settings, members: int, timeout_seconds: float = 60) -> None:
    """Wait until the consumer group has `members` members and no rebalance under way: measured earlier, a
    replica joining mid-measurement stopped every member for the rebalance and the stream's backlog from that
    pause was counted as the hot path's latency."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            [response] = await admin.describe_consumer_groups([settings.kafka_consumer_group])
            [group] = response.to_object()["groups"]
            if group["state"] == "Stable" and len(group["members"]) == members:
                return
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise TimeoutError(f"the consumer group did not settle with {members} members")


async def measure_latency(settings: Settings, rate_per_second: float, seconds: float, replicas: int) -> dict:
    source = f"latency_{uuid.uuid4().hex[:6]}"
    settings = settings.model_copy(update={"kafka_consumer_group": f"{settings.kafka_consumer_group}-latency"})
    processes = [hot_path_process(settings) for _ in range(replicas)]
    latencies: list[float] = []
    try:
        await wait_until_consuming(settings, source)
        await wait_until_group_stable(settings, replicas)
        # The measuring consumer must not add latency of its own: the embedded broker answers a fetch only when
        # the fetch's wait runs out, so with the default 500 ms wait an event could sit up to half a second
        # before this consumer even asked for it. 10 ms keeps that under 1% of the target.
        consumer = AIOKafkaConsumer(settings.kafka_topic_policy_events,
                                    bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="latest",
                                    fetch_max_wait_ms=10)
        await consumer.start()
        await asyncio.sleep(1)  # let the consumer take its partitions before the measured records flow
        count = int(rate_per_second * seconds)
        records = make_records(count, source=source, start=0)

        async def collect_events() -> None:
            while len(latencies) < count:
                batch = await consumer.getmany(timeout_ms=500)
                received = datetime.now(UTC)
                for messages in batch.values():
                    for message in messages:
                        data = json.loads(message.value)["data"]
                        if data["source_system"] == source and data["external_id"] != "PBLN_000000999999":
                            collected = datetime.fromisoformat(data["collected_at"])
                            latencies.append((received - collected).total_seconds())

        collecting = asyncio.create_task(collect_events())
        await publish(settings, records, rate_per_second=rate_per_second)
        try:
            await asyncio.wait_for(collecting, timeout=seconds + 60)
        finally:
            await consumer.stop()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            await asyncio.to_thread(process.wait)
    quantiles = statistics.quantiles(latencies, n=100)
    return {"rate_per_second": round(rate_per_second), "records": len(latencies),
            "p50_ms": round(quantiles[49] * 1000, 1), "p95_ms": round(quantiles[94] * 1000, 1),
            "p99_ms": round(quantiles[98] * 1000, 1), "max_ms": round(max(latencies) * 1000, 1)}


async def measure_baseline(settings: Settings, count: int) -> dict:
    """The design's process_single, record by record: validate, INSERT, cache, await the event's send.

    Each record gets the same work as in the hot path (validation, masking and normalisation, a full
    `policy.validated` event checked against its schema), so the ratio measures batching and pipelining, not
    skipped work."""
    import orjson

    from hot_path.cleaning import normalize_record
    from hot_path.processor import policy_validated_event
    from schemas.records import RawPolicyData

    source = f"baseline_{uuid.uuid4().hex[:6]}"
    payloads = [record.model_dump_json().encode() for record in make_records(count, source=source)]
    redis_client = cache.create_client(settings.redis_url)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        async with postgres.connect(settings.postgres_dsn()) as connection:
            started = time.monotonic()
            for payload in payloads:
                policy = normalize_record(RawPolicyData.model_validate_json(payload))
                policy_id = await connection.fetchval(
                    "INSERT INTO policies (source_system, external_id, title, content, issuing_organization, "
                    "raw_data, content_hash, status, quality_score) "
                    "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, 'pending_validation', 0.0) RETURNING id",
                    policy.source_system, policy.external_id, policy.title, policy.content,
                    policy.issuing_organization, orjson.dumps(policy.raw_data).decode(), policy.content_hash)
                await redis_client.set(f"policy:{policy_id}", payload, ex=3600)
                event = policy_validated_event(str(policy_id), 1, functools.partial(getattr, policy),
                                               datetime.now(UTC), producer="baseline/1.0",
                                               topic=settings.kafka_topic_policy_events)
                await producer.send_and_wait(event.topic, orjson.dumps(event.envelope), key=event.key.encode())
            seconds = time.monotonic() - started
    finally:
        await producer.stop()
        await redis_client.aclose()
    return {"records": count, "seconds": round(seconds, 3), "records_per_second": round(count / seconds)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--baseline-records", type=int, default=3_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=2, help="hot path processes (the design's minimum: 2)")
    parser.add_argument("--partitions", type=int, default=6)
    arguments = parser.parse_args()

    settings = await asyncio.to_thread(stack.up, load_core_settings())
    token = uuid.uuid4().hex[:8]
    topics = {"kafka_topic_raw_policies": f"bench-raw-{token}", "kafka_topic_policy_events": f"bench-events-{token}",
              "kafka_topic_dlq": f"bench-dlq-{token}"}
    await kafka.ensure_topics(settings.kafka_bootstrap_servers, list(topics.values()), partitions=arguments.partitions)
    settings = settings.model_copy(update={**topics, "hot_path_batch_size": arguments.batch_size,
                                           "kafka_consumer_group": f"bench-{token}"})

    # The baseline first, on the same database as the hot path will find: measured after it, it would also
    # pay for the vacuum of the hot path's writes, and the ratio would flatter the hot path.
    baseline = await measure_baseline(settings, arguments.baseline_records)
    print(f"baseline (one record at a time, like the design's process_single): {baseline['records_per_second']} "
          "records/s")
    throughput = await measure_throughput(settings, arguments.records, arguments.replicas)
    print(f"throughput ({arguments.replicas} replicas): {throughput['stored']} records in {throughput['seconds']} s = "
          f"{throughput['records_per_second']} records/s "
          f"(wall time with process start {throughput['wall_seconds_including_start']} s)")
    rate = (throughput["records_per_second"] or TARGET_RECORDS_PER_SECOND) / 2
    latency = await measure_latency(settings, rate, arguments.latency_seconds, arguments.replicas)
    print(f"latency at {latency['rate_per_second']} records/s ({latency['records']} records, collection to event): "
          f"p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms, p99 {latency['p99_ms']} ms, "
          f"max {latency['max_ms']} ms")
    ratio = round((throughput["records_per_second"] or 0) / baseline["records_per_second"], 1)
    print(f"batched hot path / baseline: {ratio}x")
    met = {
        "throughput": (throughput["records_per_second"] or 0) >= TARGET_RECORDS_PER_SECOND,
        "p99_at_half_rate": latency["p99_ms"] < TARGET_P99_SECONDS * 1000,
        "ratio_to_baseline": ratio >= TARGET_RATIO,
    }
    print(json.dumps({"benchmark": "hot_path", "throughput": throughput, "latency": latency, "baseline": baseline,
                      "ratio": ratio, "targets": {"records_per_second": TARGET_RECORDS_PER_SECOND,
                                                  "p99_ms": TARGET_P99_SECONDS * 1000, "ratio": TARGET_RATIO},
                      "met": met, "all_met": all(met.values())}, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
