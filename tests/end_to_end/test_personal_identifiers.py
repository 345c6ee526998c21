"""Identifiers without personal data, on the real engines: a source whose record ids are phone numbers, and whose
records have a field named by an e-mail address, is collected from a local HTTP server (a stand-in for a remote
source) and processed by the hot path. Each record is stored under `pii-` + the keyed hash of its id (with the
deployment's IDENTIFIER_HASH_KEY), its field name is hashed in `raw_data`, and neither the phone numbers nor the
e-mail address appear anywhere: not in any PostgreSQL row, not in the raw topic's keys and values, policy-events or
the dead-letter topic, not in the Redis cache, the logs or the metrics' label values. Collected twice, it stays one
policy at version 1; published again by another producer with the phone number as its id (the raw topic is the
trust boundary), the hot path reaches the same policy.

Plus the collectors' and the hot path's own steps, without engines: `mapping.without_personal_identifiers` and
`processor.validate_message`.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import REGISTRY
from pydantic import SecretStr

from aegis_pipeline.collectors.definitions import parse_sources
from aegis_pipeline.collectors.mapping import build_record, external_id_of, without_personal_identifiers
from aegis_pipeline.collectors.run import collect_once, open_context
from aegis_pipeline.common.logging import configure_logging
from aegis_pipeline.devstack.sample_sources import SampleSources
from aegis_pipeline.domain.identifiers import identifier_without_personal_data
from aegis_pipeline.hot_path.processor import RawMessage, record_key_of, validate_message
from aegis_pipeline.hot_path.service import run_hot_path
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache, postgres
from aegis_pipeline.stores.dead_letters import DeadLetter

KEY = "pii-test-identifier-hash-key-" + uuid.uuid4().hex
PHONE_ID = "010-5829-3071"             # a record id that is a phone number
PARTLY_PHONE_ID = "010-5829-3074_2026"  # only partly personal: hashed whole
REFUSED_PHONE_ID = "010-5829-3072"      # a record the collector refuses (no title): its dead letter
FOREIGN_PHONE_ID = "010-5829-3073"      # a record another producer publishes, refused by the hot path
EMAIL_FIELD = "pii.probe.7c1f@example.go.kr"  # a field name
# Every spelling of them that must appear nowhere (the digits without and with their separators).
FORBIDDEN = ["5829-3071", "58293071", "5829-3074", "58293074", "5829-3072", "58293072", "5829-3073", "58293073",
             "pii.probe.7c1f"]


def hashed(identifier: str) -> str:
    return identifier_without_personal_data(identifier, KEY.encode())


def found_in(texts: list[str]) -> list[str]:
    return sorted({value for text in texts for value in FORBIDDEN if value in text})


def source_records(query: dict[str, str]) -> bytes:
    records = [
        {"id": PHONE_ID, "title": "식별자 시험 공고", "body": "개인정보 없는 본문", "org": "성동구",
         EMAIL_FIELD: "담당자 주소가 필드 이름인 값"},
        {"id": PARTLY_PHONE_ID, "title": "식별자 시험 공고 2", "body": "본문", "org": "성동구"},
        {"id": REFUSED_PHONE_ID, "title": "", "body": "제목 없는 공고", "org": "성동구", EMAIL_FIELD: "x"},
    ]
    return json.dumps({"data": records}, ensure_ascii=False).encode("utf-8")


def sources_document(base_url: str, name: str) -> dict:
    return {"sources": [{
        "name": name, "kind": "json_api", "url": f"{base_url}/pii/records", "records_path": "data",
        "id_field": "id", "max_retries": 0, "rate_limit": {"requests_per_second": 100},
        "fields": {"title": {"path": "title", "parser": "text"}, "content": {"path": "body", "parser": "text"},
                   "issuing_organization": {"path": "org", "parser": "strip"}},
    }]}


@pytest.fixture
def server() -> Iterator[SampleSources]:
    with SampleSources(crawl_delay_seconds=0) as sample:
        sample.add_payload("/pii/records", source_records, "application/json; charset=UTF-8")
        yield sample


@pytest.fixture
def logs(restore_logging: None) -> Iterator[io.StringIO]:
    """Every log line of the test (ours and the libraries', at DEBUG), as the CLI would write them."""
    stream, saved = io.StringIO(), sys.stderr
    sys.stderr = stream
    try:
        configure_logging("DEBUG")
        yield stream
    finally:
        sys.stderr = saved


async def read_all(settings: Settings, topic: str) -> list[tuple[str, str]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    messages: list[tuple[str, str]] = []
    try:
        while batch := await consumer.getmany(timeout_ms=1000):
            messages.extend(((message.key or b"").decode(), message.value.decode())
                            for records in batch.values() for message in records)
    finally:
        await consumer.stop()
    return messages


async def every_row_holding(settings: Settings, values: list[str]) -> dict[str, int]:
    """Rows of every table of the database (bytea columns read as text) that hold one of `values`, by table."""
    found: dict[str, int] = {}
    async with postgres.connect(settings.postgres_dsn()) as connection:
        columns = await connection.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name IN (SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE') ORDER BY table_name, ordinal_position")
        tables: dict[str, list[str]] = {}
        for column in columns:
            name = '"' + column["column_name"].replace('"', '""') + '"'
            tables.setdefault(column["table_name"], []).append(
                f"coalesce(encode({name}, 'escape'), '')" if column["data_type"] == "bytea"
                else f"coalesce({name}::text, '')")
        patterns = [f"%{value}%" for value in values]
        for table, expressions in tables.items():  # names from the catalogue, quoted; the values bound
            row_text = f"concat_ws(' ', {', '.join(expressions)})"
            statement = f'SELECT count(*) FROM "{table}" WHERE {row_text} LIKE ANY($1)'  # noqa: S608
            count = await connection.fetchval(statement, patterns)
            if count:
                found[table] = count
    assert {"policies", "collected_records", "dead_letters", "audit_logs", "event_outbox"} <= set(tables)
    return found


@pytest.mark.integration
async def test_a_phone_number_id_is_stored_and_sent_only_as_its_hash(
    server: SampleSources, own_topics: Callable[..., Awaitable[Settings]], logs: io.StringIO
) -> None:
    settings = await own_topics(partitions=1, identifier_hash_key=SecretStr(KEY))
    name = f"pii_ids_{uuid.uuid4().hex[:6]}"
    sources = parse_sources(sources_document(server.base_url, name), {}).sources

    async def collect() -> dict[str, int]:
        async with open_context(settings) as context:
            (result,) = await collect_once(context, sources)
        return result.counts()

    async def process(group_id: str) -> dict[str, int]:
        summary = await run_hot_path(settings, asyncio.Event(), drain=True, serve_ops=False, group_id=group_id)
        return summary.__dict__

    first = await collect()
    first_hot = await process(f"{name}-1")
    assert (first["published"], first["invalid"], first_hot["stored"]) == (2, 1, 2)
    second = await collect()  # the same ids hash the same: known, unchanged, nothing published
    assert (second["published"], second["unchanged"], second["invalid"]) == (0, 2, 1)
    raw_topic = await read_all(settings, settings.kafka_topic_raw_policies)  # the collector's messages only

    # Another producer publishes the record with the phone number itself as its id (and its key), and a record the
    # hot path refuses: the hot path hashes both, so the first is the same policy, unchanged.
    (published,) = [json.loads(value) for key, value in raw_topic if key == f"{name}:{hashed(PHONE_ID)}"]
    published["collection_metadata"]["external_id"] = PHONE_ID
    refused = {**published, "title": "", "collection_metadata": {**published["collection_metadata"],
                                                                  "external_id": FOREIGN_PHONE_ID}}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for record in (published, refused):
            await producer.send_and_wait(settings.kafka_topic_raw_policies, json.dumps(record).encode(),
                                         key=f"{name}:{record['collection_metadata']['external_id']}".encode())
    finally:
        await producer.stop()
    # A group of its own reads the topic from its start (the embedded broker takes long to rejoin one): nothing new
    # is stored (the collector's two records are unchanged, and so is the other producer's copy, or superseded by
    # the collector's in the same batch), the refused record is dead-lettered.
    second_hot = await process(f"{name}-2")
    assert (second_hot["received"], second_hot["stored"], second_hot["invalid"]) == (4, 0, 1)
    assert second_hot["unchanged"] + second_hot["superseded"] == 3

    async with postgres.connect(settings.postgres_dsn()) as connection:
        policies = await connection.fetch(
            "SELECT id::text, external_id, version, raw_data::text FROM policies WHERE source_system = $1 "
            "ORDER BY external_id", name)
        letters = await connection.fetch(
            "SELECT stage, record_key, payload::text FROM dead_letters WHERE source_system = $1 "
            "OR record_key LIKE $2 ORDER BY stage", name, f"{name}:%")
    assert {row["external_id"]: row["version"] for row in policies} == {hashed(PHONE_ID): 1,
                                                                        hashed(PARTLY_PHONE_ID): 1}
    assert all(row["external_id"].startswith("pii-") and len(row["external_id"]) == 68 for row in policies)
    raw_data = {row["external_id"]: json.loads(row["raw_data"]) for row in policies}
    assert hashed(EMAIL_FIELD) in raw_data[hashed(PHONE_ID)] and raw_data[hashed(PHONE_ID)]["id"] == hashed(PHONE_ID)
    assert [(row["stage"], row["record_key"]) for row in letters] == [
        ("collect", f"{name}:{hashed(REFUSED_PHONE_ID)}"), ("collect", f"{name}:{hashed(REFUSED_PHONE_ID)}"),
        ("hot", f"{name}:{hashed(FOREIGN_PHONE_ID)}")]
    assert hashed(EMAIL_FIELD) in json.loads(letters[0]["payload"])

    # Everything the pipeline wrote or sent: not one spelling of the phone numbers or the e-mail address.
    assert [key for key, _ in raw_topic] == [f"{name}:{hashed(PHONE_ID)}", f"{name}:{hashed(PARTLY_PHONE_ID)}"]
    events = await read_all(settings, settings.kafka_topic_policy_events)
    dlq = await read_all(settings, settings.kafka_topic_dlq)
    assert len(events) == 2 and len(dlq) == 3
    redis_client = cache.create_client(settings)
    try:
        cached = [value.decode() for row in policies if (value := await redis_client.get(f"policy:{row['id']}"))]
    finally:
        await redis_client.aclose()
    assert len(cached) == 2
    log_text = logs.getvalue()
    assert f"{name}:{hashed(REFUSED_PHONE_ID)}" in log_text  # record keys are logged: hashed
    labels = [value for metric in REGISTRY.collect() for sample in metric.samples for value in sample.labels.values()]
    places = {
        "postgres": await every_row_holding(settings, FORBIDDEN),
        "raw topic keys and values": found_in([text for message in raw_topic for text in message]),
        "policy-events topic": found_in([text for message in events for text in message]),
        "dead-letter topic": found_in([text for message in dlq for text in message]),
        "redis cache": found_in(cached),
        "logs": found_in([log_text]),
        "metric label values": found_in(labels),
    }
    assert places == {"postgres": {}, **{place: [] for place in places if place != "postgres"}}


# --- the collectors' and the hot path's steps, without engines -----------------------------------------------

UNIT_KEY = b"unit-key"
SOURCE = parse_sources(sources_document("http://127.0.0.1:1", "pii_unit"), {}).sources[0]


def test_the_collector_hashes_the_id_and_field_names_before_anything_is_formed_from_them() -> None:
    raw = {"id": f"  {PHONE_ID} ", "title": "공고", "body": "본문", "org": "성동구", EMAIL_FIELD: "값"}
    safe = without_personal_identifiers(raw, SOURCE, UNIT_KEY)
    expected_id = identifier_without_personal_data(PHONE_ID, UNIT_KEY)  # of the id as read: trimmed
    assert safe == {"id": expected_id, "title": "공고", "body": "본문", "org": "성동구",
                    identifier_without_personal_data(EMAIL_FIELD, UNIT_KEY): "값"}
    assert raw["id"] == f"  {PHONE_ID} "  # the input is not changed
    assert external_id_of(safe, SOURCE) == expected_id
    record = build_record(safe, SOURCE, datetime(2026, 3, 1, tzinfo=UTC))
    assert record.collection_metadata.record_key == f"pii_unit:{expected_id}"
    assert without_personal_identifiers(safe, SOURCE, UNIT_KEY) is safe  # twice: the same
    plain = {"id": "PBLN_1", "title": "공고"}
    assert without_personal_identifiers(plain, SOURCE, UNIT_KEY) is plain
    # Nested id paths, and an id longer than any valid one: hashed whole, so the record is valid under its hash.
    nested = parse_sources({"sources": [{**sources_document("http://127.0.0.1:1", "pii_nested")["sources"][0],
                                         "id_field": "meta.id"}]}, {}).sources[0]
    long_id = PHONE_ID + "_" + "x" * 300
    safe_nested = without_personal_identifiers({"meta": {"id": long_id, "n": 1}}, nested, UNIT_KEY)
    assert safe_nested == {"meta": {"id": identifier_without_personal_data(long_id, UNIT_KEY), "n": 1}}


def test_the_hot_path_hashes_whatever_any_producer_published() -> None:
    record = build_record({"id": "x1", "title": "공고", "body": "본문", "org": "성동구", EMAIL_FIELD: "값"},
                          SOURCE, datetime(2026, 3, 1, tzinfo=UTC))
    document = json.loads(record.model_dump_json())
    document["collection_metadata"]["external_id"] = PHONE_ID
    body = json.dumps(document).encode()
    checked = validate_message(RawMessage(body, key=f"pii_unit:{PHONE_ID}".encode()), max_record_bytes=100_000,
                               identifier_key=UNIT_KEY)
    assert not isinstance(checked, DeadLetter)
    assert checked.collection_metadata.external_id == identifier_without_personal_data(PHONE_ID, UNIT_KEY)
    assert identifier_without_personal_data(EMAIL_FIELD, UNIT_KEY) in checked.raw_data
    # Refused: the letter's key, source and payload hold the hashes, never the values.
    document["title"] = ""
    letter = validate_message(RawMessage(json.dumps(document).encode(), key=f"pii_unit:{PHONE_ID}".encode()),
                              max_record_bytes=100_000, identifier_key=UNIT_KEY)
    assert isinstance(letter, DeadLetter)
    assert letter.record_key == f"pii_unit:{identifier_without_personal_data(PHONE_ID, UNIT_KEY)}"
    assert found_in([json.dumps(letter.payload), letter.record_key or ""]) == []
    # A source name that holds a phone number is refused (it cannot be hashed into a source name).
    document.update(title="공고", collection_metadata={**document["collection_metadata"], "source": "x01058293071"})
    refused = validate_message(RawMessage(json.dumps(document).encode()), max_record_bytes=100_000,
                               identifier_key=UNIT_KEY)
    assert isinstance(refused, DeadLetter) and "holds personal data" in refused.error_message
    assert found_in([refused.source_system or ""]) == []
    # The poison letter's key, and a key that is too long, are hashed before they are cut.
    long_key = f"pii_unit:{PHONE_ID}{'x' * 1000}".encode()
    assert record_key_of(RawMessage(b"{}", key=long_key), UNIT_KEY) == \
        f"pii_unit:{identifier_without_personal_data(long_key.decode()[9:], UNIT_KEY)}"
