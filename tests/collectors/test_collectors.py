"""Collectors against the local sample sources (realistic payloads, quirks included) and the real engines:
exactly the expected records on the raw topic, bad ones in the dead-letter queue with their codes, the
rate-limited page retried, a dead source's circuit opened while the others finish, a re-run publishing
nothing new."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from aegis_pipeline.collectors.definitions import SourceDefinition, parse_sources
from aegis_pipeline.collectors.run import SourceResult, collect_once, open_context
from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.devstack.sample_sources import SampleSources, expected_invalid, expected_records
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka, postgres

pytestmark = pytest.mark.integration

SAMPLE_SOURCES_FILE = Path(__file__).parents[2] / "src" / "aegis_pipeline" / "devstack" / "sample_sources.yaml"
# our source name in devstack/sample_sources.yaml -> the sample server's name for its ground truth
API_SOURCES = {
    "data_go_kr": "data_go_kr",
    "data_go_kr_single": "data_go_kr_single",
    "bizinfo": "bizinfo",
    "odcloud": "odcloud",
    "policy_briefing_rss": "rss",
}
INVALID_REASON_CODES = {
    "missing title": ErrorCode.INVALID_DATA_FORMAT,
    "invalid date": ErrorCode.INVALID_DATA_FORMAT,
    "duplicate id": ErrorCode.DUPLICATE_DATA_DETECTED,
}


@pytest.fixture
def sample_server() -> Iterator[SampleSources]:
    with SampleSources(crawl_delay_seconds=0) as server:
        yield server


@pytest.fixture
async def run_settings(stack: Settings) -> Settings:
    """The stack's settings with a raw topic of this test's own, so it reads back only its records."""
    topic = f"policy-raw-{uuid.uuid4().hex[:8]}"
    await kafka.ensure_topics(stack, [topic], partitions=2)
    return stack.model_copy(update={"kafka_topic_raw_policies": topic})


def load_sample_definitions(server: SampleSources, *, suffix: str, overrides: dict[str, dict] | None = None,
                            only: set[str] | None = None) -> dict[str, SourceDefinition]:
    """The sample sources file with each name suffixed, so this test's checkpoints and hashes are its own."""
    document = yaml.safe_load(SAMPLE_SOURCES_FILE.read_text(encoding="utf-8"))
    chosen = [entry for entry in document["sources"] if only is None or entry["name"] in only]
    for entry in chosen:
        entry.update((overrides or {}).get(entry["name"], {}))
        entry["name"] = f"{entry['name']}_{suffix}"
    environment = {"SAMPLE_SOURCES_URL": server.base_url, "SAMPLE_SERVICE_KEY": server.service_key}
    parsed = parse_sources({"sources": chosen}, environment)
    return {source.name.removesuffix(f"_{suffix}"): source for source in parsed.sources}


async def run(settings: Settings, sources: list[SourceDefinition]) -> dict[str, SourceResult]:
    async with open_context(settings) as context:
        results = await collect_once(context, sources)
    return {result.source: result for result in results}


async def read_topic(settings: Settings, topic: str, expected_count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    messages = []
    try:
        while len(messages) < expected_count:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), timeout=30)
            for partition_messages in batch.values():
                messages.extend(partition_messages)
        extra = await consumer.getmany(timeout_ms=1000)  # nothing more than expected may arrive
        messages.extend(message for partition in extra.values() for message in partition)
    finally:
        await consumer.stop()
    return messages


def words(text: str | None) -> str | None:
    # The ground truth writes texts with whitespace folded; we keep paragraph breaks, which carry no words.
    return " ".join(text.split()) if text is not None else None


def as_expected(record: dict[str, Any], default_organization: str | None) -> dict[str, Any]:
    return {
        "external_id": record["collection_metadata"]["external_id"],
        "title": words(record["title"]),
        "content": words(record["content"]),
        "issuing_organization": record["issuing_organization"],
        "target_region": record["target_region"],
        "target_industry": record["target_industry"],
        "funding_type": record["funding_type"],
        "application_start_date": record["application_start_date"],
        "application_end_date": record["application_end_date"],
        "original_url": record["original_url"],
        "_organization_default": default_organization,
    }


async def test_every_api_kind_collects_exactly_the_expected_records(
    sample_server: SampleSources, run_settings: Settings
) -> None:
    suffix = uuid.uuid4().hex[:6]
    definitions = load_sample_definitions(sample_server, suffix=suffix, only=set(API_SOURCES))
    results = await run(run_settings, list(definitions.values()))

    expected_total = 0
    for ours, theirs in API_SOURCES.items():
        result = results[definitions[ours].name]
        valid, invalid = expected_records(theirs, sample_server.base_url), expected_invalid(theirs)
        assert result.status == "ok", result.error
        assert (result.published, result.invalid) == (len(valid), len(invalid)), ours
        assert result.fetched == len(valid) + len(invalid)
        expected_total += len(valid)
        # the design's metrics (§6.4), labelled by source and outcome
        labels = {"source": definitions[ours].name}
        assert REGISTRY.get_sample_value("data_collection_total", {**labels, "status": "published"}) == len(valid)
        assert REGISTRY.get_sample_value("data_collection_latency_seconds_count", labels) == 1

    messages = await read_topic(run_settings, run_settings.kafka_topic_raw_policies, expected_total)
    assert len(messages) == expected_total
    by_source: dict[str, dict[str, dict[str, Any]]] = {}
    for message in messages:
        record = json.loads(message.value)
        metadata = record["collection_metadata"]
        assert message.key.decode() == f"{metadata['source']}:{metadata['external_id']}"
        assert metadata["collector_version"] and metadata["collected_at"]
        by_source.setdefault(metadata["source"], {})[metadata["external_id"]] = record

    for ours, theirs in API_SOURCES.items():
        definition = definitions[ours]
        default_organization = definition.fields["issuing_organization"].default
        published = by_source[definition.name]
        for expected in expected_records(theirs, sample_server.base_url):
            actual = as_expected(published[expected["external_id"]], default_organization)
            if expected["issuing_organization"] is None:  # a feed item without <author>: the feed's publisher
                expected = {**expected, "issuing_organization": default_organization}
            for field in ("title", "content"):
                expected = {**expected, field: words(expected[field])}
            comparable = {key: actual[key] for key in expected if key in actual}
            assert comparable == {key: expected[key] for key in comparable}, (ours, expected["external_id"])

    # The rate-limit envelope (HTTP 200, code 22) for page 2 was recognised and the page asked for again.
    page_two = [r for r in sample_server.requests if r.path == "/data-go-kr/policies" and r.query.get("pageNo") == "2"]
    assert len(page_two) == 2


async def test_invalid_records_reach_the_dead_letter_queue_with_their_codes(
    sample_server: SampleSources, run_settings: Settings
) -> None:
    suffix = uuid.uuid4().hex[:6]
    definitions = load_sample_definitions(sample_server, suffix=suffix, only=set(API_SOURCES))
    await run(run_settings, list(definitions.values()))
    async with postgres.connect(run_settings.postgres_dsn()) as connection:
        rows = await connection.fetch(
            "SELECT source_system, record_key, error_code, error_message, payload FROM dead_letters "
            "WHERE source_system = ANY($1::text[])", [definition.name for definition in definitions.values()],
        )
    letters = {(row["source_system"], row["record_key"]): row for row in rows}
    for ours, theirs in API_SOURCES.items():
        name = definitions[ours].name
        for bad in expected_invalid(theirs):
            row = letters.pop((name, f"{name}:{bad['external_id']}"))
            assert row["error_code"] == INVALID_REASON_CODES[bad["reason"]].value, bad
            assert row["error_message"]
            assert row["payload"] is not None  # the record as received, for a later fix and retry
    assert letters == {}  # nothing else was refused


async def test_second_run_publishes_nothing_new_and_new_records_only_once(
    sample_server: SampleSources, run_settings: Settings
) -> None:
    suffix = uuid.uuid4().hex[:6]
    definitions = load_sample_definitions(sample_server, suffix=suffix, only={"bizinfo", "policy_briefing_rss"})
    first = await run(run_settings, list(definitions.values()))
    second = await run(run_settings, list(definitions.values()))
    for name, result in second.items():
        assert result.published == 0
        assert result.unchanged == first[name].published

    sample_server.publish_more("bizinfo", 2)
    third = await run(run_settings, list(definitions.values()))
    assert third[definitions["bizinfo"].name].published == 2
    assert third[definitions["policy_briefing_rss"].name].published == 0
    async with postgres.connect(run_settings.postgres_dsn()) as connection:
        cursor = await connection.fetchval(
            "SELECT cursor_value FROM collection_checkpoints WHERE source_system = $1",
            definitions["policy_briefing_rss"].name,
        )
    assert cursor  # the feed's newest pubDate is kept for the next run


async def test_records_published_but_never_stored_are_published_again_until_stored(
    sample_server: SampleSources, run_settings: Settings
) -> None:
    """A broker that lost records it had acknowledged: records published longer than
    COLLECTOR_REPUBLISH_GRACE_SECONDS ago whose version is not in `policies` are published again (the incremental
    feed fetched without its cursor); once the hot path has stored them, they are not."""
    from aegis_pipeline.hot_path.service import run_hot_path

    suffix = uuid.uuid4().hex[:6]
    definitions = load_sample_definitions(sample_server, suffix=suffix, only={"bizinfo", "policy_briefing_rss"})
    first = await run(run_settings, list(definitions.values()))
    within_grace = await run(run_settings, list(definitions.values()))
    for name, result in within_grace.items():  # published moments ago: the hot path may still be on its way
        assert (result.published, result.unchanged) == (0, first[name].published), name
    impatient = run_settings.model_copy(update={"collector_republish_grace_seconds": 0})
    second = await run(impatient, list(definitions.values()))
    for name, result in second.items():
        assert (result.published, result.republished) == (first[name].published, first[name].published), name

    await run_hot_path(impatient, asyncio.Event(), drain=True, serve_ops=False, group_id=f"republish-{suffix}")
    third = await run(impatient, list(definitions.values()))
    for name, result in third.items():
        assert (result.published, result.republished, result.unchanged) == (0, 0, first[name].published), name


async def test_dead_source_opens_its_circuit_while_the_others_finish(
    sample_server: SampleSources, run_settings: Settings
) -> None:
    suffix = uuid.uuid4().hex[:6]
    good = load_sample_definitions(sample_server, suffix=suffix, only={"bizinfo"})["bizinfo"]
    dead = parse_sources({"sources": [{
        "name": f"dead_{suffix}", "kind": "json_api", "url": f"{sample_server.base_url}/dead/api",
        "records_path": "data", "id_field": "id", "max_retries": 2,
        "fields": {"title": {"path": "t"}, "content": {"path": "c"}, "issuing_organization": {"path": "o"}},
        "rate_limit": {"requests_per_second": 100},
    }]}, {}).sources[0]
    settings = run_settings.model_copy(update={"collector_circuit_failure_threshold": 3})
    async with open_context(settings) as context:
        first = {r.source: r for r in await collect_once(context, [dead, good])}
        requests_after_first = len([r for r in sample_server.requests if r.path == "/dead/api"])
        second = {r.source: r for r in await collect_once(context, [dead, good])}

    assert first[dead.name].status == "failed"
    assert first[dead.name].error_code == ErrorCode.DATA_SOURCE_UNAVAILABLE
    assert requests_after_first == 3  # one try and two retries, each a failure counted by the breaker
    assert second[dead.name].status == "circuit_open"  # fails fast: the breaker opened after 3 failures
    assert len([r for r in sample_server.requests if r.path == "/dead/api"]) == requests_after_first
    assert first[good.name].status == second[good.name].status == "ok"
    assert first[good.name].published > 0


async def test_rejected_service_key_fails_the_source_without_retrying(
    sample_server: SampleSources, run_settings: Settings
) -> None:
    suffix = uuid.uuid4().hex[:6]
    definition = load_sample_definitions(
        sample_server, suffix=suffix, only={"data_go_kr"},
        overrides={"data_go_kr": {"params": {"serviceKey": "not-a-registered-key"}}},
    )["data_go_kr"]
    results = await run(run_settings, [definition])
    result = results[definition.name]
    assert result.status == "failed"
    assert result.error_code == ErrorCode.DATA_SOURCE_UNAVAILABLE
    assert "code 30" in (result.error or "")
    assert len([r for r in sample_server.requests if r.path == "/data-go-kr/policies"]) == 1  # no retry helps


async def test_the_web_board_collects_its_expected_records(run_settings: Settings) -> None:
    with SampleSources(crawl_delay_seconds=0) as server:
        suffix = uuid.uuid4().hex[:6]
        definition = load_sample_definitions(server, suffix=suffix, only={"seongdong_board"})["seongdong_board"]
        results = await run(run_settings, [definition])
        expected, invalid = expected_records("board", server.base_url), expected_invalid("board")
        assert server.requests_for("/board/private/") == []  # robots.txt obeyed
    result = results[definition.name]
    assert result.status == "ok", result.error
    assert (result.published, result.invalid) == (len(expected), len(invalid))
    messages = await read_topic(run_settings, run_settings.kafka_topic_raw_policies, len(expected))
    published = {json.loads(m.value)["collection_metadata"]["external_id"]: json.loads(m.value) for m in messages}
    for record in expected:
        actual = as_expected(published[record["external_id"]], None)
        wanted = {**record, "title": words(record["title"]), "content": words(record["content"])}
        comparable = {key: actual[key] for key in wanted if key in actual}
        assert comparable == {key: wanted[key] for key in comparable}, record["external_id"]  # EUC-KR intact


async def test_a_full_listing_stopped_by_the_daily_budget_resumes_where_it_stopped(
    sample_server: SampleSources, run_settings: Settings, stack: Settings
) -> None:
    """bizinfo lists newest first with no filter: incremental runs stop at what was seen, and a full listing runs
    alone first. With a budget of one request the first run reads page 1 and stops cleanly; with room again, the
    next run's incremental pass stops on page 1 (all seen) and the full listing resumes at page 2: every record
    published exactly once, no request wasted on a page already listed."""
    suffix = uuid.uuid4().hex[:6]
    newest_first = {"incremental": {"strategy": "stop_at_seen"}, "full_listing": {"every_days": 7}}
    [stopped_run] = (await run(run_settings, list(load_sample_definitions(
        sample_server, suffix=suffix, only={"bizinfo"},
        overrides={"bizinfo": {**newest_first, "daily_request_budget": 1}}).values()))).values()
    assert (stopped_run.status, stopped_run.listings, stopped_run.requests) == ("budget_spent", ["full"], 1)
    assert "daily request budget spent (1 requests on" in (stopped_run.error or "")
    assert stopped_run.failed == 0 and stopped_run.published > 0
    assert stopped_run.full_listing_next_page == 1

    [resumed_run] = (await run(run_settings, list(load_sample_definitions(
        sample_server, suffix=suffix, only={"bizinfo"},
        overrides={"bizinfo": {**newest_first, "daily_request_budget": 10}}).values()))).values()
    assert (resumed_run.status, resumed_run.listings, resumed_run.requests) == ("ok", ["incremental", "full"], 2)
    assert resumed_run.unchanged == stopped_run.published  # page 1 again, in the incremental pass
    assert resumed_run.full_listing_next_page is None

    valid = expected_records("bizinfo", sample_server.base_url)
    assert stopped_run.published + resumed_run.published == len(valid)
    messages = await read_topic(run_settings, run_settings.kafka_topic_raw_policies, len(valid))
    assert len({message.key for message in messages}) == len(messages) == len(valid)
    pool = await postgres.create_pool(stack)
    try:
        row = await pool.fetchrow("SELECT full_listing_next_page, full_listing_completed_at, last_success_at "
                                  "FROM collection_checkpoints WHERE source_system = $1", f"bizinfo_{suffix}")
    finally:
        await pool.close()
    assert row["full_listing_next_page"] is None
    assert row["full_listing_completed_at"] is not None and row["last_success_at"] is not None
