"""Sync of PostgreSQL to the three targets on the embedded engines: full and incremental runs, deletions, late
commits, one target down and catching up, drift of each kind in each target found and repaired, rebuilds.

Each module run gets its own database, Milvus alias, Elasticsearch alias and graph file, so nothing else in the
session's stack is synced. Embeddings are stored in advance (synthetic vectors) for all but a handful of texts,
which the real model encodes: the model loads once per session and encodes only those.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from devstack.synthetic import make_record, synthetic_embedding
from hot_path.cleaning import normalize_record
from hot_path.store import PolicyStore
from schemas.migrations import upgrade_to_head
from settings import Settings
from stores import postgres
from sync import source
from sync.consistency import check_consistency, repair
from sync.embeddings import EmbeddingStore, text_hash
from sync.run import rebuild, run_sync
from sync.targets import open_target
from sync.targets.base import SyncBatch

pytestmark = pytest.mark.integration

SOURCE = "sync-test"
ENCODED_BY_THE_MODEL = 3  # records whose embedding the real model computes; the rest are stored in advance


@pytest.fixture(scope="module")
async def sync_settings(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    database = f"sync_{suffix}"
    await postgres.ensure_database(stack.postgres_dsn(database="postgres"), database)
    settings = stack.model_copy(update={
        "postgres_db": database,
        "milvus_collection": f"sync_test_{suffix}",
        "elasticsearch_index": f"sync-test-{suffix}",
        "graph_uri": str(tmp_path_factory.mktemp("graph") / "sync.lbug"),
        "sync_batch_size": 16,  # several batches per run
    })
    await asyncio.to_thread(upgrade_to_head, settings)
    return settings


async def insert_records(settings: Settings, indexes: range, *, revision: int = 0) -> None:
    pool = await postgres.create_pool(settings)
    try:
        policies = [normalize_record(make_record(i, source=SOURCE, revision=revision)) for i in indexes]
        await PolicyStore(pool).store_batch(policies, lambda stored: [])
    finally:
        await pool.close()


async def execute(settings: Settings, sql: str, *args: object) -> list[asyncpg.Record]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return await connection.fetch(sql, *args)


async def ids_of(settings: Settings, indexes: list[int]) -> list[str]:
    rows = await execute(settings, "SELECT id::text AS id FROM policies WHERE external_id = ANY($1::text[]) "
                         "ORDER BY external_id", [f"PBLN_{i:012d}" for i in indexes])
    return [row["id"] for row in rows]


async def set_status(settings: Settings, indexes: list[int], status: str) -> None:
    await execute(settings, "UPDATE policies SET status = $2::text, quality_score = CASE WHEN $2::text = 'active' "
                  "THEN 0.9 ELSE quality_score END WHERE external_id = ANY($1::text[])",
                  [f"PBLN_{i:012d}" for i in indexes], status)


async def prefill_embeddings(settings: Settings, leave_out: int) -> None:
    """Store synthetic embeddings for every policy text except `leave_out` of them."""
    rows = await execute(settings, "SELECT title, content FROM policies ORDER BY external_id")
    hashes = [text_hash(f"{row['title']}\n{row['content']}") for row in rows][leave_out:]
    pool = await postgres.create_pool(settings)
    try:
        store = EmbeddingStore(pool, settings.embedding_model, settings.embedding_dimension)
        await store.put({key: np.asarray(synthetic_embedding(key), dtype=np.float32) for key in hashes})
    finally:
        await pool.close()


def target_checksums(settings: Settings, name: str) -> dict[str, str]:
    from sync.digest import BUCKETS

    with open_target(name, settings) as target:
        target.setup()
        return target.checksums(range(BUCKETS))


async def expected_checksums(settings: Settings) -> dict[str, str]:
    pool = await postgres.create_pool(settings)
    try:
        return await source.active_checksums(pool)
    finally:
        await pool.close()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_full_then_incremental_sync(sync_settings: Settings) -> None:
    settings = sync_settings
    await insert_records(settings, range(40))
    await set_status(settings, list(range(30)), "active")
    await set_status(settings, list(range(30, 35)), "rejected")  # 35..39 stay pending_validation
    await prefill_embeddings(settings, leave_out=ENCODED_BY_THE_MODEL)

    report = await run_sync(settings)
    assert report.success, [result.error for result in report.results]
    for result in report.results:
        assert result.upserted == 30 and result.deleted == 10, result
    assert report.result("vectors").encoded == ENCODED_BY_THE_MODEL
    expected = await expected_checksums(settings)
    assert len(expected) == 30
    for name in ("vectors", "graph", "search"):
        assert target_checksums(settings, name) == expected, name

    # The event and the run record, in the outbox and pipeline_metadata.
    events = await execute(settings, "SELECT envelope FROM event_outbox WHERE event_type = 'data.sync_completed' "
                           "AND message_key = $1", report.run_id)
    data = json.loads(events[0]["envelope"])["data"]
    assert data["policies_synced"] == 40 and {item["target_db"] for item in data["sync_results"]} == {
        "milvus", "neo4j", "elasticsearch"}

    # Nothing changed: nothing is written.
    again = await run_sync(settings)
    assert [(result.upserted, result.deleted) for result in again.results] == [(0, 0)] * 3

    # Incremental: a new version (re-validated), a rejection, an archive, a duplicate link.
    await insert_records(settings, range(0, 2), revision=1)  # back to pending_validation with a new text
    await set_status(settings, [0, 1], "active")
    await set_status(settings, [2], "rejected")
    await set_status(settings, [3], "archived")
    duplicate, canonical = await ids_of(settings, [4, 5])
    await execute(settings, "INSERT INTO policy_duplicates (policy_id, canonical_id, similarity, method, run_id) "
                  "VALUES ($1, $2, 0.93, 'test', 'test-run')", duplicate, canonical)
    incremental = await run_sync(settings)
    assert incremental.success
    for result in incremental.results:
        assert (result.upserted, result.deleted) == (3, 2), result  # 0, 1 and the duplicate 4; 2 and 3
    assert incremental.result("vectors").encoded == 2  # the two new texts, nothing else
    expected = await expected_checksums(settings)
    assert len(expected) == 28
    for name in ("vectors", "graph", "search"):
        assert target_checksums(settings, name) == expected, name
    with open_target("graph", settings) as graph:
        links = graph._store.run("MATCH (d:Policy)-[:DUPLICATE_OF]->(c:Policy) RETURN d.id AS d, c.id AS c")
        regions = graph._store.run("MATCH (p:Policy {id: $id})-[:TARGETS_REGION]->(r:Region) RETURN r.name AS name",
                                   {"id": canonical})
    assert links == [{"d": duplicate, "c": canonical}]
    assert regions
    with open_target("search", settings) as search:
        hits = search._client.search(index=settings.elasticsearch_index, query={"match": {"content": "지원"}})
    assert hits["hits"]["total"]["value"] > 0


async def test_a_late_commit_is_not_skipped(sync_settings: Settings) -> None:
    settings = sync_settings
    early, late = await ids_of(settings, [6, 7])
    async with postgres.connect(settings.postgres_dsn()) as slow:
        transaction = slow.transaction()
        await transaction.start()
        await slow.execute("UPDATE policies SET quality_score = 0.71 WHERE id = $1", late)  # takes its xid first
        await execute(settings, "UPDATE policies SET quality_score = 0.72 WHERE id = $1", early)  # commits first
        report = await run_sync(settings, targets=["search"])
        assert report.result("search").upserted == 1
        await transaction.commit()
    caught_up = await run_sync(settings, targets=["search"])
    assert caught_up.result("search").upserted >= 1
    assert target_checksums(settings, "search") == await expected_checksums(settings)


async def test_one_target_down_does_not_block_the_others_and_catches_up(sync_settings: Settings) -> None:
    settings = sync_settings
    await set_status(settings, [8], "rejected")
    await set_status(settings, [35, 36], "active")
    search_down = settings.model_copy(update={"elasticsearch_url": closed_port_url()})
    report = await run_sync(search_down)
    assert not report.success
    assert report.result("search").error_code == "DP_3003"
    assert report.result("vectors").success and report.result("graph").success
    expected = await expected_checksums(settings)
    assert target_checksums(settings, "vectors") == expected
    assert target_checksums(settings, "search") != expected

    caught_up = await run_sync(settings)
    assert caught_up.success
    assert caught_up.result("search").upserted >= 2 and caught_up.result("search").deleted >= 1
    assert (await check_consistency(settings)).consistent


async def test_drift_of_each_kind_in_each_target_is_found_and_repaired(sync_settings: Settings) -> None:
    settings = sync_settings
    pool = await postgres.create_pool(settings)
    try:
        active = [record.document for record in await source.records_by_ids(
            pool, await ids_of(settings, list(range(10, 20)))) if record.active]
    finally:
        await pool.close()
    injected: dict[str, dict[str, list[str]]] = {}
    for offset, name in enumerate(("vectors", "graph", "search")):
        missing, stale = active[offset * 2], active[offset * 2 + 1]
        orphan = dataclasses.replace(stale, id=str(uuid.uuid4()))
        outdated = dataclasses.replace(stale, version=stale.version - 1 or 1, checksum=uuid.uuid4().hex)
        vectors = {document.id: synthetic_embedding(document.id) for document in (outdated, orphan)}
        with open_target(name, settings) as target:
            target.delete([missing.id])
            target.upsert(SyncBatch("drift", [outdated, orphan], vectors))
            target.flush()
        injected[name] = {"missing": [missing.id], "stale": [stale.id], "orphaned": [orphan.id]}

    report = await check_consistency(settings)
    assert not report.consistent
    assert report.summary()["targets"] == {name: {"missing": 1, "stale": 1, "orphaned": 1} for name in injected}
    for name, kinds in injected.items():
        drift = report.targets[name].drift
        assert {"missing": drift.missing, "stale": drift.stale, "orphaned": drift.orphaned} == kinds
        assert report.targets[name].documents_read < 30  # only the differing buckets were read

    repaired = await repair(settings, report)
    assert repaired.success
    assert repaired.fixed == {name: {"missing": 1, "stale": 1, "orphaned": 1} for name in injected}
    assert (await check_consistency(settings)).consistent
    stored = await execute(settings, "SELECT kind, consistent FROM consistency_reports ORDER BY created_at")
    assert [(row["kind"], row["consistent"]) for row in stored][-3:] == [("check", False), ("repair", True),
                                                                         ("check", True)]


async def test_rebuild_swaps_in_a_complete_copy(sync_settings: Settings) -> None:
    settings = sync_settings
    with open_target("search", settings) as search:
        before_index = search.live_indices()
    with open_target("vectors", settings) as vectors:
        before_collection = vectors.live_collection()
    orphan_id = str(uuid.uuid4())
    with open_target("graph", settings) as graph:
        graph._store.run("CREATE (p:Policy {id: $id, checksum: 'x', sync_bucket: 1, sync_digest: 1})",
                         {"id": orphan_id})

    for name in ("vectors", "graph", "search"):
        result = await rebuild(settings, name)
        assert result.success, result.error
        assert result.encoded == 0  # every text was encoded once already
    with open_target("search", settings) as search:
        assert search.live_indices() != before_index and len(search.live_indices()) == 1
    with open_target("vectors", settings) as vectors:
        assert vectors.live_collection() not in (None, before_collection)
    assert (await check_consistency(settings)).consistent  # the graph's orphan was swept


def test_cli_consistency_check_prints_the_json_report(sync_settings: Settings) -> None:
    settings = sync_settings
    env = {**os.environ, "POSTGRES_HOST": settings.postgres_host, "POSTGRES_PORT": str(settings.postgres_port),
           "POSTGRES_USER": settings.postgres_user, "POSTGRES_DB": settings.postgres_db,
           "GRAPH_URI": settings.graph_uri, "MILVUS_COLLECTION": settings.milvus_collection,
           "ELASTICSEARCH_INDEX": settings.elasticsearch_index, "LOG_LEVEL": "ERROR"}
    pipeline = str(Path(sys.executable).parent / "aegis-pipeline")
    result = subprocess.run([pipeline, "consistency", "check", "--json"], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"consistent": True, "targets": {
        name: {"missing": 0, "stale": 0, "orphaned": 0} for name in ("vectors", "graph", "search")}}
