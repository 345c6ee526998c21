"""A programme's end of life on the real stack (cold_path/lifecycle.py, docs/lifecycle.md): one that closed is
archived by the next cold-path run, leaves the vector and search targets and stays in the graph marked archived,
announced by a `policy.archived` event; one its source withdrew is archived after a complete listing of the source,
never after a partial one, and comes back when the source lists it again.

The session's stack keeps the fixtures' past programmes (ARCHIVE_AFTER_DAYS=3650, tests/conftest.py); these tests
use the production grace of 7 days on sources of their own (a cold-path run for one source applies the lifecycle
to that source only)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from aegis_pipeline.cold_path.run import run_cold_path
from aegis_pipeline.collectors.definitions import parse_sources
from aegis_pipeline.collectors.run import collect_source, open_context
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.domain.korean_time import korean_today
from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData
from aegis_pipeline.hot_path.service import run_hot_path
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.events import validate_event
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka, postgres
from aegis_pipeline.sync.consistency import check_consistency
from aegis_pipeline.sync.lookup import search
from aegis_pipeline.sync.run import run_sync
from aegis_pipeline.sync.targets import open_target

pytestmark = pytest.mark.integration

TODAY = korean_today(datetime.now(UTC))


@pytest.fixture
def lifecycle_settings(stack: Settings) -> Settings:
    return stack.model_copy(update={"archive_after_days": 7})


async def fetch(settings: Settings, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return [dict(row) for row in await connection.fetch(sql, *args)]


async def store(settings: Settings, records: list[RawPolicyData]) -> dict[str, str]:
    """Store as the hot path does (pending_validation); returns external_id -> policy id."""
    pool = await postgres.create_pool(settings)
    try:
        outcome = await PolicyStore(pool).store_batch([normalize_record(r) for r in records], lambda stored: [])
    finally:
        await pool.close()
    return {item.policy.external_id: item.policy_id for item in outcome.stored}


async def statuses(settings: Settings, ids: list[str]) -> dict[str, tuple[str, str | None]]:
    rows = await fetch(settings, "SELECT id::text, status, archived_reason FROM policies WHERE id = ANY($1::uuid[])",
                       ids)
    return {row["id"]: (row["status"], row["archived_reason"]) for row in rows}


async def test_a_closed_programme_is_archived_and_leaves_what_users_search(lifecycle_settings: Settings) -> None:
    settings = lifecycle_settings
    source = f"life_{uuid.uuid4().hex[:6]}"
    word = uuid.uuid4().hex[:8]  # in every title, so the search finds exactly these four

    def programme(index: int, external_id: str, end: date | None) -> RawPolicyData:
        return make_record(index, source=source).model_copy(update={
            "title": f"{TODAY.year}년 {word} 스마트공장 구축 지원사업 공고 {external_id}",
            "application_start_date": None if end is None else min(end, TODAY) - timedelta(days=30),
            "application_end_date": end,
            "collection_metadata": CollectionMetadata(source=source, external_id=external_id,
                                                      collected_at=datetime.now(UTC))})

    ids = await store(settings, [programme(1, "CLOSED", TODAY - timedelta(days=10)),  # past the 7-day grace
                                 programme(2, "GRACE", TODAY - timedelta(days=3)),    # ended, within the grace
                                 programme(3, "OPEN", TODAY + timedelta(days=20)),
                                 programme(4, "NO_END", None)])
    report = await run_cold_path(settings, source=source, run_id=f"test-{source}")

    assert report.lifecycle == {"closed": 1, "withdrawn": 0, "back": 0}
    assert report.counts == {"active": 3, "rejected": 0, "duplicate": 0} and report.processed == 3
    stored = await statuses(settings, list(ids.values()))
    assert stored[ids["CLOSED"]] == ("archived", "closed")
    assert {stored[ids[name]] for name in ("GRACE", "OPEN", "NO_END")} == {("active", None)}
    events = await fetch(settings, "SELECT envelope FROM event_outbox WHERE event_type = 'policy.archived' "
                                   "AND message_key = $1", ids["CLOSED"])
    [event] = [orjson.loads(row["envelope"]) for row in events]
    validate_event(event)
    assert event["data"]["reason"] == "closed" and event["data"]["external_id"] == "CLOSED"
    assert event["data"]["application_end_date"] == (TODAY - timedelta(days=10)).isoformat()
    tombstones = await fetch(settings, "SELECT topic FROM event_outbox WHERE event_type LIKE '%.tombstone' "
                                       "AND message_key = $1", ids["CLOSED"])
    assert [row["topic"] for row in tombstones] == [settings.kafka_topic_policy_state]  # late consumers drop it
    history = await fetch(settings, "SELECT status FROM processing_history WHERE policy_id = $1::uuid "
                                    "AND run_id = $2", ids["CLOSED"], f"test-{source}")
    assert [row["status"] for row in history] == ["archived"]

    sync = await run_sync(settings)
    assert sync.success
    # The stack holds other tests' programmes with titles like these, and the vectors rank by meaning, not by the
    # word: a top 50 could leave one of these out (it did, once). A limit over the whole stack asks what is there.
    everything = 1000
    for target in ("search", "vectors"):
        found = {hit.external_id
                 for hit in await search(settings, f"{word} 스마트공장", target=target, limit=everything)
                 if hit.source_system == source}
        assert found == {"GRACE", "OPEN", "NO_END"}, target
        still_open = {hit.external_id: hit.days_left
                      for hit in await search(settings, f"{word} 스마트공장", target=target, limit=everything,
                                              open_only=True)
                      if hit.source_system == source}
        assert still_open == {"OPEN": 20, "NO_END": None}, target
    with open_target("graph", settings) as graph:
        rows = graph._store.run(  # type: ignore[attr-defined]
            "MATCH (p:Policy) WHERE p.id IN $ids RETURN p.id AS id, p.status AS status",
            {"ids": list(ids.values())})
    assert {row["id"]: row["status"] for row in rows} == {
        ids["CLOSED"]: "archived", ids["GRACE"]: "active", ids["OPEN"]: "active", ids["NO_END"]: "active"}
    # What other tests left is theirs: none of these four may be missing, stale or orphaned anywhere.
    consistency = await check_consistency(settings)
    for name, check in consistency.targets.items():
        assert check.error is None, name
        drifted = {*check.drift.missing, *check.drift.stale, *check.drift.orphaned}
        assert not drifted & set(ids.values()), name


class _Listing:
    """A JSON API of programmes, two a page, whose items a test changes between runs; `failing_page` answers
    HTTP 500 (a listing that fails halfway)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.failing_page: int | None = None
        listing = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                page, size = int(query["page"][0]), int(query["perPage"][0])
                if page == listing.failing_page:
                    self.send_response(500)
                    self.end_headers()
                    return
                body = json.dumps({"totalCount": len(listing.items),
                                   "data": listing.items[(page - 1) * size:page * size]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/programmes"

    def show(self, numbers: list[int]) -> None:
        self.items = [{"id": f"P{number}", "title": f"{TODAY.year}년 청년 창업 지원사업 {number}차 모집 공고",
                       "body": "청년 창업자에게 사업화 자금과 멘토링을 지원합니다. 온라인으로 신청합니다. " * 3,
                       "org": "중소벤처기업부", "end": (TODAY + timedelta(days=30)).isoformat()}
                      for number in numbers]


@pytest.fixture
def listing() -> Iterator[_Listing]:
    served = _Listing()
    yield served
    served.server.shutdown()


async def test_a_withdrawn_programme_is_archived_after_a_complete_listing_only(
        lifecycle_settings: Settings, listing: _Listing) -> None:
    source = f"withdrawn_{uuid.uuid4().hex[:6]}"
    topic = f"policy-raw-{uuid.uuid4().hex[:8]}"
    await kafka.ensure_topics(lifecycle_settings, [topic], partitions=1)
    settings = lifecycle_settings.model_copy(update={"kafka_topic_raw_policies": topic})
    [definition] = parse_sources({"sources": [{
        "name": source, "kind": "json_api", "url": listing.url, "records_path": "data", "id_field": "id",
        "pagination": {"type": "page_number", "page_param": "page", "size_param": "perPage", "page_size": 2,
                       "total_count_path": "totalCount"},
        "max_retries": 0, "rate_limit": {"requests_per_second": 100},
        "fields": {"title": {"path": "title"}, "content": {"path": "body"}, "issuing_organization": {"path": "org"},
                   "application_end_date": {"path": "end", "parser": "date"}},
    }]}, {}).sources

    drains = iter(range(100))

    async def collect_store_and_score() -> tuple[str, dict[str, tuple[str, str | None]], dict[str, int]]:
        async with open_context(settings) as context:
            result = await collect_source(definition, context)
        # A fresh consumer group each time (it reads the topic from its start, which stores nothing twice): the
        # embedded broker takes seconds to let a group that just left join again.
        await run_hot_path(settings, asyncio.Event(), drain=True, serve_ops=False,
                           group_id=f"life-{source}-{next(drains)}")
        report = await run_cold_path(settings, source=source)
        rows = await fetch(settings, "SELECT external_id, status, archived_reason FROM policies "
                                     "WHERE source_system = $1", source)
        return result.status, {row["external_id"]: (row["status"], row["archived_reason"]) for row in rows}, \
            report.lifecycle

    listing.show([1, 2, 3, 4, 5])
    status, stored, _ = await collect_store_and_score()
    assert status == "ok" and set(stored.values()) == {("active", None)} and len(stored) == 5

    listing.show([1, 2, 3])  # P4 and P5 withdrawn, but this listing fails on its second page: nothing is decided
    listing.failing_page = 2
    status, stored, lifecycle = await collect_store_and_score()
    assert status == "failed" and lifecycle["withdrawn"] == 0
    assert set(stored.values()) == {("active", None)}

    listing.failing_page = None  # the same catalogue, listed to its end: P4 and P5 are gone
    status, stored, lifecycle = await collect_store_and_score()
    assert status == "ok" and lifecycle == {"closed": 0, "withdrawn": 2, "back": 0}
    assert stored == {"P1": ("active", None), "P2": ("active", None), "P3": ("active", None),
                      "P4": ("archived", "withdrawn"), "P5": ("archived", "withdrawn")}
    events = await fetch(settings, "SELECT envelope FROM event_outbox e JOIN policies p ON p.id::text = e.message_key "
                                   "WHERE e.event_type = 'policy.archived' AND p.source_system = $1", source)
    assert sorted(orjson.loads(row["envelope"])["data"]["external_id"] for row in events) == ["P4", "P5"]

    listing.show([1, 2, 3, 5])  # P5 published again, unchanged: it comes back and is scored again
    status, stored, lifecycle = await collect_store_and_score()
    assert status == "ok" and lifecycle == {"closed": 0, "withdrawn": 0, "back": 1}
    assert stored["P5"] == ("active", None) and stored["P4"] == ("archived", "withdrawn")
