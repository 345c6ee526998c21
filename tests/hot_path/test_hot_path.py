"""The hot path on the real engines: records stored once as pending_validation, cached, announced by a
schema-valid policy.validated event; invalid and poison messages dead-lettered while the batch goes on; a
redelivered batch changes nothing; a changed record becomes a new version."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from aegis_pipeline.devstack.synthetic import make_record, make_records
from aegis_pipeline.domain.records import RawPolicyData
from aegis_pipeline.hot_path.cache import cache_key
from aegis_pipeline.hot_path.service import run_hot_path
from aegis_pipeline.schemas.events import validate_event
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache, outbox, postgres

pytestmark = pytest.mark.integration


@pytest.fixture
async def hot_settings(own_topics: Callable[..., Awaitable[Settings]]) -> Settings:
    return await own_topics(partitions=3)


async def publish(settings: Settings, messages: list[RawPolicyData | tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for message in messages:
            if isinstance(message, RawPolicyData):
                key, value = message.collection_metadata.record_key.encode(), message.model_dump_json().encode()
            else:
                key, value = message
            await producer.send(settings.kafka_topic_raw_policies, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def drain(settings: Settings, group: str):
    return await run_hot_path(settings, asyncio.Event(), drain=True, serve_ops=False, group_id=group)


async def read_events(settings: Settings) -> list[dict]:
    consumer = AIOKafkaConsumer(settings.kafka_topic_policy_events, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    events = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1500)
            if not batch:
                break
            for messages in batch.values():
                for message in messages:
                    event = json.loads(message.value)
                    assert message.key.decode() == event["data"]["policy_id"]
                    events.append(event)
    finally:
        await consumer.stop()
    return events


async def stored_policies(settings: Settings, source: str) -> list[dict]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch(
            "SELECT id::text, external_id, title, content, status, version FROM policies WHERE source_system = $1",
            source,
        )
    return [dict(row) for row in rows]


async def test_records_are_stored_cached_and_announced_once(hot_settings: Settings) -> None:
    source = f"hot_{uuid.uuid4().hex[:6]}"
    await outbox.send_pending_events(hot_settings)  # what earlier tests left unsent is not this run's to count
    records = make_records(60, source=source)
    not_json = (b"broken:1", b"{this is not json")
    no_title = records[0].model_dump(mode="json")
    no_title["title"] = ""
    no_title["collection_metadata"]["external_id"] = "NO_TITLE"
    await publish(hot_settings, [*records, not_json, (b"x:NO_TITLE", json.dumps(no_title).encode())])

    summary = await drain(hot_settings, f"group-{source}")
    assert (summary.stored, summary.invalid, summary.poison, summary.events_sent) == (60, 2, 0, 60)

    policies = await stored_policies(hot_settings, source)
    assert len(policies) == 60
    assert {policy["status"] for policy in policies} == {"pending_validation"}
    assert {policy["version"] for policy in policies} == {1}
    for policy, record in zip(sorted(policies, key=lambda p: p["external_id"]),
                              sorted(records, key=lambda r: r.collection_metadata.external_id), strict=True):
        assert "@" not in policy["content"] and "☎ 0" not in policy["content"]  # contact data masked
        assert record.content.split("문의")[0].strip() in policy["content"]      # the rest kept as is

    events = await read_events(hot_settings)
    for event in events:
        validate_event(event)
    assert sorted(event["data"]["policy_id"] for event in events) == sorted(policy["id"] for policy in policies)
    assert {event["event_type"] for event in events} == {"policy.validated"}

    client = cache.create_client(hot_settings)
    try:
        cached = [await client.get(cache_key(policy["id"])) for policy in policies]
        ttl = await client.ttl(cache_key(policies[0]["id"]))
    finally:
        await client.aclose()
    assert all(cached)
    assert 0 < ttl <= hot_settings.policy_cache_ttl_seconds

    async with postgres.connect(hot_settings.postgres_dsn()) as connection:
        letters = await connection.fetch(
            "SELECT error_code, record_key, error_message FROM dead_letters WHERE stage = 'hot' "
            "AND record_key = ANY($1::text[])", ["broken:1", "x:NO_TITLE"])
    assert sorted((row["record_key"], row["error_code"]) for row in letters) == [
        ("broken:1", "DP_2001"), ("x:NO_TITLE", "DP_2001")]
    assert any("title" in row["error_message"] for row in letters)


async def test_redelivery_changes_nothing_and_a_change_is_a_new_version(hot_settings: Settings) -> None:
    source = f"hot_{uuid.uuid4().hex[:6]}"
    records = make_records(10, source=source)
    await publish(hot_settings, records)
    first = await drain(hot_settings, f"first-{source}")
    # The same records again, and a fresh consumer group that reads the topic from its start: every message is
    # delivered again, as after a crash before the offset commit.
    await publish(hot_settings, records)
    second = await drain(hot_settings, f"second-{source}")
    assert first.stored == 10
    assert (second.received, second.stored, second.unchanged + second.superseded) == (20, 0, 20)
    assert len(await read_events(hot_settings)) == 10  # no event for what did not change

    # Two of the three the cold path has decided on: their change sends them back for validation, audited.
    decided = {"PBLN_000000000000": "active", "PBLN_000000000001": "rejected"}
    async with postgres.connect(hot_settings.postgres_dsn()) as connection:
        for external_id, status in decided.items():
            await connection.execute("UPDATE policies SET status = $1 WHERE source_system = $2 AND external_id = $3",
                                     status, source, external_id)
    changed = [make_record(index, source=source, revision=1) for index in range(3)]
    await publish(hot_settings, changed)
    third = await drain(hot_settings, f"third-{source}")
    assert third.stored == 3
    async with postgres.connect(hot_settings.postgres_dsn()) as connection:
        audits = await connection.fetch(
            "SELECT p.external_id, a.actor, a.changes, a.metadata FROM audit_logs a "
            "JOIN policies p ON p.id::text = a.entity_id WHERE p.source_system = $1", source)
    assert sorted((row["external_id"], row["actor"], json.loads(row["changes"])["status"]["from"],
                   json.loads(row["changes"])["status"]["to"], json.loads(row["metadata"])["version"])
                  for row in audits) == [(external_id, "hot_path", status, "pending_validation", 2)
                                         for external_id, status in sorted(decided.items())]
    versions = {policy["external_id"]: policy["version"] for policy in await stored_policies(hot_settings, source)}
    assert sorted(versions.values()) == [1] * 7 + [2] * 3
    events = await read_events(hot_settings)
    assert len(events) == 13
    assert sorted(event["data"]["version"] for event in events)[-3:] == [2, 2, 2]


async def test_a_poison_message_is_dead_lettered_and_the_partition_moves_on(hot_settings: Settings) -> None:
    source = f"hot_{uuid.uuid4().hex[:6]}"
    records = make_records(5, source=source)
    # Valid to the model, refused by PostgreSQL: the stored policy is at the largest version an integer holds, so
    # the new version overflows. Retrying cannot help. (Input the model lets through is otherwise storable: NUL
    # and other control characters are removed, tests/end_to_end/test_hostile_input.py.)
    poison = records[2].model_copy(update={"title": "바뀐 제목"})
    async with postgres.connect(hot_settings.postgres_dsn()) as connection:
        await connection.execute(
            "INSERT INTO policies (source_system, external_id, title, content, issuing_organization, content_hash, "
            "version) VALUES ($1, $2, 'old', 'old', 'old', repeat('0', 64), 2147483647)",
            source, poison.collection_metadata.external_id)
    await publish(hot_settings, [*records[:2], poison, *records[3:]])
    summary = await drain(hot_settings, f"group-{source}")
    assert summary.poison == 1
    assert summary.stored == 4
    async with postgres.connect(hot_settings.postgres_dsn()) as connection:
        code = await connection.fetchval(
            "SELECT error_code FROM dead_letters WHERE record_key = $1", poison.collection_metadata.record_key)
    assert code == "DP_4003"


def test_sigterm_finishes_the_batch_commits_and_exits(hot_settings: Settings) -> None:
    source = f"hot_{uuid.uuid4().hex[:6]}"
    asyncio.run(publish(hot_settings, make_records(200, source=source)))
    environment = {**os.environ, "KAFKA_TOPIC_RAW_POLICIES": hot_settings.kafka_topic_raw_policies,
                   "KAFKA_TOPIC_POLICY_EVENTS": hot_settings.kafka_topic_policy_events,
                   "KAFKA_TOPIC_DLQ": hot_settings.kafka_topic_dlq, "METRICS_PORT": "0", "LOG_LEVEL": "WARNING",
                   "KAFKA_CONSUMER_GROUP": f"sigterm-{source}"}
    pipeline = str(Path(sys.executable).parent / "aegis-pipeline")
    process = subprocess.Popen([pipeline, "hot-path"], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = asyncio.run(_wait_for_rows(hot_settings, source, 200, timeout_seconds=60))
        assert deadline, "the hot path did not store the records"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "stored 200" in stdout


async def _wait_for_rows(settings: Settings, source: str, count: int, *, timeout_seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while loop.time() < deadline:
        if len(await stored_policies(settings, source)) >= count:
            return True
        await asyncio.sleep(0.5)
    return False


async def test_a_record_published_again_that_cleans_to_the_same_policy_updates_only_its_published_hash(
        hot_settings: Settings) -> None:
    """`policies.published_hash` is the hash of the record as last published (what the collector remembers), kept
    current even when the cleaned content is unchanged: then no version, no event, no status change."""
    from aegis_pipeline.domain.hashing import published_hash

    source = f"hot_{uuid.uuid4().hex[:6]}"
    records = make_records(3, source=source)
    await publish(hot_settings, records)
    assert (await drain(hot_settings, f"first-{source}")).stored == 3

    async def stored() -> dict[str, tuple]:
        async with postgres.connect(hot_settings.postgres_dsn()) as connection:
            rows = await connection.fetch(
                "SELECT external_id, published_hash, content_hash, version, status, updated_at, sync_xid "
                "FROM policies WHERE source_system = $1", source)
        return {row["external_id"]: tuple(row.values())[1:] for row in rows}

    before = await stored()
    assert {key: row[0] for key, row in before.items()} == {
        record.collection_metadata.external_id: published_hash(record) for record in records}

    # Another e-mail address: masked, the stored policy is the same; the record as published is not.
    other_contact = records[0].model_copy(update={"content": records[0].content.replace("@", "1@", 1)})
    assert published_hash(other_contact) != published_hash(records[0])
    await publish(hot_settings, [other_contact, records[1]])
    again = await drain(hot_settings, f"second-{source}")  # a new group: the first three are read again too
    assert (again.received, again.stored, again.unchanged, again.superseded) == (5, 0, 3, 2)

    after = await stored()
    changed_id = other_contact.collection_metadata.external_id
    assert after[changed_id][0] == published_hash(other_contact)
    assert after[changed_id][1:5] == before[changed_id][1:5]  # content hash, version, status, updated_at
    assert {key: row for key, row in after.items() if key != changed_id} == {
        key: row for key, row in before.items() if key != changed_id}  # untouched, not even stamped for the sync
    assert len(await read_events(hot_settings)) == 3  # no event for what did not change
