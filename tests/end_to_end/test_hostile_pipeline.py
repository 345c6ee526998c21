"""The hostile corpus (tests/hostile/) end to end on the real engines: the sample server serves it, the collectors
fetch it and publish to the raw topic, hostile raw messages (and hostile keys) join them there, the hot path stores
what is valid.

Asserted: no source crashes and the hot path dead-letters nothing as poison; every refused record and page is
in `dead_letters` with its DP code and reason; every accepted record is stored exactly once, script tags and
SQL-looking text as inert text (verbatim where the hot path received them), control characters removed,
contact data masked; the tables the SQL-looking text names are still there.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from aegis_pipeline.collectors.definitions import SourceDefinition, parse_sources
from aegis_pipeline.collectors.run import collect_once, open_context
from aegis_pipeline.devstack.sample_sources import SampleSources
from aegis_pipeline.domain.records import MAX_EXTERNAL_ID_CHARS
from aegis_pipeline.hot_path.processor import RECORD_KEY_LIMIT
from aegis_pipeline.hot_path.service import run_hot_path
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

pytestmark = pytest.mark.integration

HOSTILE = Path(__file__).parents[1] / "hostile"
RECORD_PAGES = {"hostile_json": "json_records.json", "hostile_xml": "xml_records.xml", "hostile_rss": "rss_hostile.xml"}
ONE_RECORD_PAGES = {"json_utf16_bom.json", "json_euc_kr_labelled_utf8.json", "json_mixed_encodings.json",
                    "xml_euc_kr.xml"}
MAX_RESPONSE_BYTES = 100_000
MAX_RECORD_BYTES = 30_000
CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
CONTACTS = ["010-1234-5678", "02-123-4567", "kim@sd.go.kr", "lee@sd.go.kr", "900101-1234567", "010 9876 5432",
            "031-123-4567", "kim@korea.kr"]


@pytest.fixture
def server() -> Iterator[SampleSources]:
    with SampleSources(crawl_delay_seconds=0) as sample:
        yield sample


@pytest.fixture
async def run_settings(own_topics: Callable[..., Awaitable[Settings]]) -> Settings:
    return await own_topics(partitions=2, max_response_bytes=MAX_RESPONSE_BYTES, max_record_bytes=MAX_RECORD_BYTES)


def content_type(name: str) -> str:
    return "application/json; charset=UTF-8" if name.endswith(".json") else "application/xml; charset=UTF-8"


def hostile_sources(server: SampleSources, suffix: str) -> tuple[dict[str, SourceDefinition], dict[str, str]]:
    """The corpus's sources, one per page: the three record pages at their own paths, every other page at a
    path of its own read by a copy of the JSON or XML source. Returns sources by name and the page each reads."""
    document = yaml.safe_load((HOSTILE / "sources.yaml").read_text(encoding="utf-8"))
    by_kind = {entry["name"]: entry for entry in document["sources"]}
    entries: list[dict[str, Any]] = []
    page_of: dict[str, str] = {}
    for name, page in RECORD_PAGES.items():
        entries.append({**by_kind[name], "name": f"{name}_{suffix}"})
        page_of[f"{name}_{suffix}"] = page
    others = sorted(path.name for path in (HOSTILE / "pages").iterdir() if path.name not in RECORD_PAGES.values())
    for index, page in enumerate([*others, "oversized.json", "oversized_record.json"]):
        template = by_kind["hostile_json" if page.endswith(".json") else "hostile_xml"]
        name = f"page{index}_{suffix}"
        entries.append({**template, "name": name, "url": f"${{HOSTILE_URL}}/hostile/page{index}"})
        page_of[name] = page
    environment = {"HOSTILE_URL": server.base_url, "HOSTILE_SERVICE_KEY": "hostile-service-key"}
    sources = {source.name: source for source in parse_sources({"sources": entries}, environment).sources}
    for name, source in sources.items():
        page = page_of[name]
        body = generated_page(page) if page.startswith("oversized") else (HOSTILE / "pages" / page).read_bytes()
        server.add_payload(source.url.removeprefix(server.base_url), body, content_type(page))
    return sources, page_of


def generated_page(name: str) -> bytes:
    if name == "oversized.json":  # larger than MAX_RESPONSE_BYTES
        records = [{"id": f"ok-{n}", "title": "큰 응답", "body": "가" * 1000, "org": "성동구"} for n in range(100)]
    else:  # one record larger than MAX_RECORD_BYTES as JSON, valid to the model
        records = [{"id": "bad-oversized-record", "title": "큰 레코드", "body": "본문 " * 8000, "org": "성동구"}]
    return json.dumps({"data": records}, ensure_ascii=False).encode("utf-8")


async def publish_corpus_messages(settings: Settings, key_prefix: str) -> dict[str, bytes]:
    keys = {}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for path in sorted((HOSTILE / "messages").iterdir()):
            key = f"{key_prefix}:{path.name}".encode()
            keys[path.name] = key
            await producer.send(settings.kafka_topic_raw_policies, path.read_bytes(), key=key)
        oversized = json.dumps({"title": "큰 메시지", "raw_data": {"blob": "x" * MAX_RECORD_BYTES}}).encode()
        keys["bad-oversized-message"] = f"{key_prefix}:bad-oversized-message".encode()
        await producer.send(settings.kafka_topic_raw_policies, oversized, key=keys["bad-oversized-message"])
        for path in sorted((HOSTILE / "keys").iterdir()):  # a hostile key on a message refused for its body
            keys[f"bad-key-{path.name}"] = f"{key_prefix}:".encode() + path.read_bytes()
            await producer.send(settings.kafka_topic_raw_policies, b"not json", key=keys[f"bad-key-{path.name}"])
        await producer.flush()
    finally:
        await producer.stop()
    return keys


def page_ids(page: str) -> list[str]:
    text = (HOSTILE / "pages" / page).read_text(encoding="utf-8")
    return [first or second for first, second in re.findall(r'"id": "([^"]+)"|<(?:id|guid)>([^<]+)<', text)]


async def test_the_hostile_corpus_end_to_end(server: SampleSources, run_settings: Settings) -> None:
    suffix = uuid.uuid4().hex[:6]
    sources, page_of = hostile_sources(server, suffix)
    async with open_context(run_settings) as context:
        results = {result.source: result for result in await collect_once(context, list(sources.values()))}
    message_keys = await publish_corpus_messages(run_settings, f"hostile_raw_{suffix}")
    summary = await run_hot_path(run_settings, asyncio.Event(), drain=True, serve_ops=False,
                                 group_id=f"hostile-{suffix}")

    async with postgres.connect(run_settings.postgres_dsn()) as connection:
        letters = [dict(row) for row in await connection.fetch(
            "SELECT stage, source_system, record_key, error_code, error_message, payload::text AS payload, "
            "payload_text FROM dead_letters WHERE source_system = ANY($1::text[]) OR record_key LIKE $2",
            list(sources), f"hostile_raw_{suffix}:%")]
        policies = [dict(row) for row in await connection.fetch(
            "SELECT source_system, external_id, title, content, issuing_organization, target_region, "
            "raw_data::text AS raw_data, original_url FROM policies "
            "WHERE source_system = ANY($1::text[]) OR source_system = 'hostile_raw'", list(sources))]
        tables_left = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('policies', 'dead_letters', 'event_outbox')")

    # No crash anywhere: every source ran to a result of its own, the hot path isolated no poison.
    assert not [result for result in results.values() if result.error and "Error:" in result.error.split(":")[0]]
    assert summary.poison == 0
    assert tables_left == 3

    # Record pages: ok-* published and stored once, bad-* (and the id-less record, the repeated id) dead-lettered.
    for name, page in page_of.items():
        result, own_letters = results[name], [letter for letter in letters if letter["source_system"] == name]
        assert all(letter["error_code"] in ("DP_1004", "DP_2003") and letter["error_message"]
                   for letter in own_letters), own_letters
        if page in RECORD_PAGES.values():
            ids = page_ids(page)
            assert result.status == "ok", result.error
            assert result.published == len({i for i in ids if i.startswith("ok-")}), name
            assert result.invalid == len(own_letters) == result.fetched - result.published
            refused_keys = {letter["record_key"] for letter in own_letters}
            # An id longer than any valid one is cut in the key, to one more character (the index's limit).
            assert {f"{name}:{i[:MAX_EXTERNAL_ID_CHARS + 1]}" for i in ids if i.startswith("bad-")} <= refused_keys
        elif page in ONE_RECORD_PAGES:
            assert (result.status, result.published, own_letters) == ("ok", 1, []), (page, result.error)
        elif page == "oversized_record.json":
            assert (result.status, result.published, result.invalid) == ("ok", 0, 1)
            assert "MAX_RECORD_BYTES" in own_letters[0]["error_message"]
        else:  # refused as a whole: the source run failed with DP_1004, the page's start is in the queue
            assert (result.status, result.error_code) == ("failed", "DP_1004"), (page, result)
            assert len(own_letters) == 1 and own_letters[0]["payload_text"], page
            if page == "oversized.json":
                assert "MAX_RESPONSE_BYTES" in own_letters[0]["error_message"]

    # Raw-topic messages: ok-* stored, bad-* refused with DP_2001 and the reason.
    hot_letters = {letter["record_key"]: letter for letter in letters if letter["stage"] == "hot"}
    stored_raw = {policy["external_id"]: policy for policy in policies if policy["source_system"] == "hostile_raw"}
    for name, key in message_keys.items():
        if name.startswith("bad-"):
            letter = hot_letters[key.decode()[:RECORD_KEY_LIMIT]]  # a longer key is cut (the index's limit)
            assert letter["error_code"] == "DP_2001" and letter["error_message"].startswith("record failed validation")
            assert letter["payload"] is not None or letter["payload_text"] is not None  # kept, even when empty
        else:
            assert name.removesuffix(".json") in stored_raw, name
    assert len(hot_letters) == sum(1 for name in message_keys if name.startswith("bad-"))

    # Stored once each, inert, clean, masked.
    collected = [policy for policy in policies if policy["source_system"] in sources]
    assert len(collected) == sum(result.published for result in results.values())
    assert all(policy["external_id"].startswith("ok-") for policy in collected)
    for policy in policies:
        text = json.dumps(policy, ensure_ascii=False, default=str)
        assert not CONTROL.search(policy["title"] + policy["content"] + policy["issuing_organization"])
        assert "\\u0000" not in policy["raw_data"]
        assert not [contact for contact in CONTACTS if contact in text], policy["external_id"]
    by_id = {policy["external_id"]: policy for policy in collected}
    assert by_id["ok-sql"]["title"] == "'; DROP TABLE policies; --"
    assert by_id["ok-sql-xml"]["title"] == "1 UNION SELECT * FROM policies; --"
    assert "<script" not in json.dumps([p["title"] + p["content"] for p in collected]).lower()
    assert stored_raw["ok-sql-and-script"]["title"] == "<script>alert(1)</script> '; DROP TABLE policies; --"
    assert stored_raw["ok-controls"]["title"] == "제어문자 공고"
    assert stored_raw["ok-duplicate-keys"]["title"] == "마지막 제목"
    assert "[전화번호]" in stored_raw["ok-contact"]["content"] and "[이메일]" in stored_raw["ok-contact"]["raw_data"]
    assert not [letter for letter in letters if any(contact in json.dumps(letter, default=str, ensure_ascii=False)
                                                    for contact in CONTACTS)]
