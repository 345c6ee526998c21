"""Sync of PostgreSQL to the three targets on the embedded engines: full and incremental runs, deletions, late
commits, the encode budget, one target down and catching up (with its metrics), drift of each kind in each target
found and repaired, graph links lost, re-pointed or (DUPLICATE_OF) added found and repaired, rebuilds that never
leave readers without a complete copy, the consistency report's JSON.

Each test gets its own database, Milvus alias, Elasticsearch alias and graph file (`sync_settings`), so it runs
alone or in any order and syncs nothing else of the session's stack; `synced_settings` adds the seeded records,
synced to every target. Embeddings are stored in advance (synthetic vectors) except where a test needs the real
model: it loads once per session and encodes only a handful of texts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import numpy as np
import pytest
from prometheus_client import REGISTRY
from pymilvus.exceptions import MilvusException

from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.devstack.stack import free_port
from aegis_pipeline.devstack.synthetic import make_record, synthetic_embedding
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres, search, vectors
from aegis_pipeline.sync import source
from aegis_pipeline.sync.consistency import KINDS, ConsistencyReport, check_consistency, repair
from aegis_pipeline.sync.digest import link_key
from aegis_pipeline.sync.embeddings import EmbeddingStore, packaged_model, text_hash
from aegis_pipeline.sync.lookup import query_vectors
from aegis_pipeline.sync.run import rebuild, run_sync
from aegis_pipeline.sync.targets import TARGET_NAMES, open_target
from aegis_pipeline.sync.targets.base import KEPT_STATUSES, SyncBatch, embedding_text
from aegis_pipeline.sync.targets.vectors import VectorsTarget

pytestmark = pytest.mark.integration

SOURCE = "sync-test"
SEEDED_ACTIVE = 30  # records 0..29 of `seed_records`
ENCODED_BY_THE_MODEL = 3  # records whose embedding the real model computes; the rest are stored in advance
STORES = {"vectors": "milvus", "graph": "neo4j", "search": "elasticsearch"}  # the metrics' target_db label
NO_DRIFT = {"missing": 0, "stale": 0, "orphaned": 0}
DIMENSION = packaged_model(Settings.model_fields["embedding_model"].default).dimension
T = TypeVar("T")


@pytest.fixture
async def sync_settings(stack: Settings, tmp_path: Path) -> Settings:
    """The stack's settings with this test's own database (migrated, empty), aliases and graph file."""
    suffix = uuid.uuid4().hex[:8]
    database = f"sync_{suffix}"
    await postgres.ensure_database(stack.postgres_dsn(database="postgres"), database)
    settings = stack.model_copy(update={
        "postgres_db": database,
        "milvus_collection": f"sync_test_{suffix}",
        "elasticsearch_index": f"sync-test-{suffix}",
        "graph_uri": str(tmp_path / "sync.lbug"),
        "sync_batch_size": 16,  # several batches per run
    })
    await asyncio.to_thread(upgrade_to_head, settings)
    return settings


@pytest.fixture
async def synced_settings(sync_settings: Settings) -> Settings:
    """`sync_settings` with the seeded records (every embedding stored in advance) synced to every target."""
    await seed_records(sync_settings)
    await prefill_embeddings(sync_settings, leave_out=0)
    report = await run_sync(sync_settings)
    assert report.success, [result.error for result in report.results]
    return sync_settings


async def insert_records(settings: Settings, indexes: range, *, revision: int = 0) -> None:
    pool = await postgres.create_pool(settings)
    try:
        policies = [normalize_record(make_record(i, source=SOURCE, revision=revision)) for i in indexes]
        await PolicyStore(pool).store_batch(policies, lambda stored: [])
    finally:
        await pool.close()


async def seed_records(settings: Settings) -> None:
    """Records 0..39: 0..29 active, 30..34 rejected, 35..39 still pending validation."""
    await insert_records(settings, range(40))
    await set_status(settings, list(range(SEEDED_ACTIVE)), "active")
    await set_status(settings, list(range(30, 35)), "rejected")


async def execute(settings: Settings, sql: str, *args: object) -> list[asyncpg.Record]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return await connection.fetch(sql, *args)


async def ids_of(settings: Settings, indexes: list[int]) -> list[str]:
    rows = await execute(settings, "SELECT id::text AS id FROM policies WHERE external_id = ANY($1::text[]) "
                         "ORDER BY external_id", [f"PBLN_{i:012d}" for i in indexes])
    return [row["id"] for row in rows]


async def records_of(settings: Settings, indexes: list[int]) -> list[source.ChangedRecord]:
    pool = await postgres.create_pool(settings)
    try:
        return await source.records_by_ids(pool, await ids_of(settings, indexes))
    finally:
        await pool.close()


async def set_status(settings: Settings, indexes: list[int], status: str) -> None:
    await execute(settings, "UPDATE policies SET status = $2::text, quality_score = CASE WHEN $2::text = 'active' "
                  "THEN 0.9 ELSE quality_score END WHERE external_id = ANY($1::text[])",
                  [f"PBLN_{i:012d}" for i in indexes], status)


async def prefill_embeddings(settings: Settings, leave_out: int) -> None:
    """Store synthetic embeddings for every policy text except the first `leave_out` (by external id)."""
    rows = await execute(settings, "SELECT title, content FROM policies ORDER BY external_id")
    hashes = [text_hash(embedding_text(row['title'], row['content'])) for row in rows][leave_out:]
    pool = await postgres.create_pool(settings)
    try:
        store = EmbeddingStore(pool, settings.embedding_model)
        await store.put({key: np.asarray(synthetic_embedding(key, store.dimension), dtype=np.float32)
                         for key in hashes})
    finally:
        await pool.close()


def target_checksums(settings: Settings, name: str) -> dict[str, str]:
    from aegis_pipeline.sync.digest import BUCKETS

    with open_target(name, settings) as target:
        target.setup()
        return target.checksums(range(BUCKETS))


async def expected_checksums(settings: Settings) -> dict[str, str]:
    return await kept_checksums(settings, frozenset({"active"}))


async def kept_checksums(settings: Settings, statuses: frozenset[str]) -> dict[str, str]:
    pool = await postgres.create_pool(settings)
    try:
        return await source.kept_checksums(pool, statuses)
    finally:
        await pool.close()


async def watermark_of(settings: Settings, target: str) -> int:
    pool = await postgres.create_pool(settings)
    try:
        return await source.read_watermark(pool, target)
    finally:
        await pool.close()


async def sync_xids(settings: Settings, indexes: list[int]) -> list[int]:
    rows = await execute(settings, "SELECT sync_xid FROM policies WHERE external_id = ANY($1::text[])",
                         [f"PBLN_{i:012d}" for i in indexes])
    return [row["sync_xid"] for row in rows]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def unusable_graph_uri(tmp_path: Path) -> str:
    """A graph file nothing can open or create: its directory is a regular file (like a volume not mounted)."""
    not_a_directory = tmp_path / "graph-volume"
    not_a_directory.write_text("")
    return str(not_a_directory / "sync.lbug")


def sample(name: str, labels: dict[str, str]) -> float:
    """A sample's current value in this process' registry (0 before its first use)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def sync_metric_samples() -> dict[str, float]:
    """db_sync_total per store and status, and the number of db_sync_latency_seconds observations per store."""
    samples = {}
    for store in STORES.values():
        for status in ("success", "failure"):
            samples[f"{store} {status}"] = sample("db_sync_total", {"target_db": store, "status": status})
        samples[f"{store} latency"] = sample("db_sync_latency_seconds_count", {"target_db": store})
    return samples


async def read_while(work: Awaitable[T], read: Callable[[], tuple[str, int]]) -> tuple[T, list[tuple[str, int]]]:
    """Await `work` while another thread reads without pause, as searching users would: each read returns the copy
    behind the alias and the documents counted through it. Reads start before `work` and end after it."""
    reads = [read()]
    stop = threading.Event()

    def keep_reading() -> None:
        while not stop.is_set():
            reads.append(read())

    reader = asyncio.create_task(asyncio.to_thread(keep_reading))
    try:
        result = await work
    finally:
        stop.set()
        await reader
    reads.append(read())
    return result, reads


async def test_full_then_incremental_sync(sync_settings: Settings) -> None:
    settings = sync_settings
    await seed_records(settings)
    await prefill_embeddings(settings, leave_out=ENCODED_BY_THE_MODEL)

    report = await run_sync(settings)
    assert report.success, [result.error for result in report.results]
    for result in report.results:
        assert result.upserted == SEEDED_ACTIVE and result.deleted == 10, result
    assert report.result("vectors").encoded == ENCODED_BY_THE_MODEL
    expected = await expected_checksums(settings)
    assert len(expected) == SEEDED_ACTIVE
    for name in TARGET_NAMES:
        assert target_checksums(settings, name) == expected, name

    # The event and the run record, in the outbox and pipeline_metadata.
    events = await execute(settings, "SELECT envelope FROM event_outbox WHERE event_type = 'data.sync_completed' "
                           "AND message_key = $1", report.run_id)
    data = json.loads(events[0]["envelope"])["data"]
    assert data["policies_synced"] == 40 and {item["target_db"] for item in data["sync_results"]} == set(
        STORES.values())

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
        # 0, 1 and the duplicate 4 written; 2 and 3 removed, but the graph keeps 3 archived (docs/lifecycle.md)
        expected_writes = (4, 1) if result.target == "graph" else (3, 2)
        assert (result.upserted, result.deleted) == expected_writes, result
    assert incremental.result("vectors").encoded == 2  # the two new texts, nothing else
    expected = await expected_checksums(settings)
    assert len(expected) == 28
    for name in ("vectors", "search"):
        assert target_checksums(settings, name) == expected, name
    with_archived = await kept_checksums(settings, KEPT_STATUSES["graph"])
    assert set(with_archived) - set(expected) == set(await ids_of(settings, [3]))
    assert target_checksums(settings, "graph") == with_archived
    with open_target("graph", settings) as graph:
        links = graph._store.run("MATCH (d:Policy)-[:DUPLICATE_OF]->(c:Policy) RETURN d.id AS d, c.id AS c")
        regions = graph._store.run("MATCH (p:Policy {id: $id})-[:TARGETS_REGION]->(r:Region) RETURN r.name AS name",
                                   {"id": canonical})
    assert links == [{"d": duplicate, "c": canonical}]
    assert regions
    with open_target("search", settings) as search_target:
        hits = search_target._client.search(index=settings.elasticsearch_index, query={"match": {"content": "지원"}})
    assert hits["hits"]["total"]["value"] > 0


async def test_a_late_commit_is_not_skipped(synced_settings: Settings) -> None:
    settings = synced_settings
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


async def test_the_encode_budget_defers_the_rest_and_later_runs_catch_up(sync_settings: Settings) -> None:
    # Batches of 3: the budget runs out in the second batch, and later batches are still read and counted.
    settings = sync_settings.model_copy(update={"sync_max_encode_per_run": 4, "sync_batch_size": 3})
    await insert_records(settings, range(12))
    for index in range(12):  # one transaction each: the records change in this order (their sync_xid)
        await set_status(settings, [index], "active")
    await prefill_embeddings(settings, leave_out=10)  # records 0..9 need the model, 10 and 11 do not

    first = await run_sync(settings)
    assert first.success, [result.error for result in first.results]
    vectors_result = first.result("vectors")
    assert (vectors_result.encoded, vectors_result.deferred, vectors_result.upserted) == (4, 6, 6)
    for name in ("graph", "search"):  # they need no embedding: all twelve, in the same run
        assert first.result(name).upserted == 12, name
    deferred = await ids_of(settings, list(range(4, 10)))  # encoded in change order: 0..3 first
    expected = await expected_checksums(settings)
    assert set(target_checksums(settings, "vectors")) == set(expected) - set(deferred)
    # The vectors target resumes at the first deferred record; the others are past every record.
    assert await watermark_of(settings, "vectors") <= min(await sync_xids(settings, list(range(4, 10))))
    assert await watermark_of(settings, "graph") > max(await sync_xids(settings, list(range(12))))
    check = await check_consistency(settings)
    assert {name: target.drift.counts() for name, target in check.targets.items()} == {
        "vectors": {"missing": 6, "stale": 0, "orphaned": 0}, "graph": NO_DRIFT, "search": NO_DRIFT}

    for encoded, still_deferred in [(4, 2), (2, 0)]:
        report = await run_sync(settings)
        assert (report.result("vectors").encoded, report.result("vectors").deferred) == (encoded, still_deferred)
        assert [(report.result(name).upserted, report.result(name).deleted) for name in ("graph", "search")] == [
            (0, 0), (0, 0)]
    assert (await check_consistency(settings)).consistent
    done = (await run_sync(settings)).result("vectors")
    assert (done.encoded, done.upserted, done.deleted) == (0, 0, 0)  # the watermark moved past every record


async def test_a_rebuild_encodes_every_text_it_needs_whatever_the_sync_budget(synced_settings: Settings) -> None:
    settings = synced_settings.model_copy(update={"sync_max_encode_per_run": 2})
    await insert_records(settings, range(40, 46))
    await set_status(settings, list(range(40, 46)), "active")  # six texts without a stored embedding

    rebuilt = await rebuild(settings, "vectors")
    assert rebuilt.success, rebuilt.error
    assert (rebuilt.upserted, rebuilt.encoded, rebuilt.deferred) == (SEEDED_ACTIVE + 6, 6, 0)
    assert (await check_consistency(settings, targets=["vectors"])).consistent


async def test_a_new_embedding_model_comes_in_by_a_rebuild_with_search_never_empty(sync_settings: Settings) -> None:
    """A collection of another model's vectors (the English 384-d model of earlier releases) is live. Sync into it
    fails with DP_3001 naming the rebuild; the rebuild re-encodes into a new collection of the configured model's
    dimension while searches through the alias keep answering, then swaps it in."""
    settings = sync_settings
    await seed_records(settings)
    await prefill_embeddings(settings, leave_out=0)
    old_dimension = 384
    client = vectors.create_client(settings)
    try:
        old = VectorsTarget(client, settings.milvus_collection, "all-MiniLM-L6-v2", old_dimension)
        old.setup()
        documents = [record.document for record in await records_of(settings, list(range(SEEDED_ACTIVE)))]
        assert len(documents) == SEEDED_ACTIVE
        old.upsert(SyncBatch("old-model", documents,
                             {document.id: synthetic_embedding(document.id, old_dimension) for document in documents}))
        old.flush()
        old_collection = old.live_collection()
    finally:
        client.close()

    failed = (await run_sync(settings, targets=["vectors"])).result("vectors")
    assert (failed.success, failed.error_code) == (False, ErrorCode.MILVUS_SYNC_FAILED)
    assert "all-MiniLM-L6-v2" in (failed.error or "") and "sync rebuild --target vectors" in (failed.error or "")

    reader = vectors.create_client(settings)

    def read() -> tuple[str, int]:
        """A search as a user's would run it, through the alias, with a query vector of the live dimension (read
        again if the alias moved between reading it and searching, as `sync.lookup` does: the swap drops the old
        collection, so even describing it can fail)."""
        collection = reader.describe_alias(settings.milvus_collection)["collection_name"]
        try:
            dimension = next(field["params"]["dim"] for field in reader.describe_collection(collection)["fields"]
                             if field["name"] == "embedding")
            hits = reader.search(settings.milvus_collection, data=[synthetic_embedding("query", int(dimension))],
                                 anns_field="embedding", limit=SEEDED_ACTIVE + 10, output_fields=["id"])
        except MilvusException:
            if reader.describe_alias(settings.milvus_collection)["collection_name"] == collection:
                raise
            return read()
        return collection, len(hits[0])

    try:
        result, reads = await read_while(rebuild(settings, "vectors"), read)
    finally:
        reader.close()
    assert result.success, result.error
    assert one_full_copy_at_a_time(reads) == old_collection
    with open_target("vectors", settings) as target:
        assert target.live_model() == (settings.embedding_model, DIMENSION)
        assert not target._client.has_collection(old_collection)
        assert len(query_vectors(target, "청년 창업 지원", 5)) == 5  # encoded by the live collection's model
    assert (await run_sync(settings, targets=["vectors"])).success
    assert (await check_consistency(settings, targets=["vectors"])).consistent


async def test_search_target_down_does_not_block_the_others_and_catches_up(synced_settings: Settings) -> None:
    settings = synced_settings
    await set_status(settings, [8], "rejected")
    await set_status(settings, [35, 36], "active")
    search_down = settings.model_copy(update={"elasticsearch_url": closed_port_url()})
    report = await run_sync(search_down)
    assert not report.success
    assert report.result("search").error_code == ErrorCode.ELASTICSEARCH_SYNC_FAILED
    assert report.result("vectors").success and report.result("graph").success
    # A target that cannot be checked is reported with its DP code once ("DP_3003: ...", not "DP_3003: DP_3003: ...").
    unchecked = (await check_consistency(search_down, targets=["search"])).summary()["targets"]["search"]["error"]
    code = unchecked.split(":")[0]
    assert code.startswith("DP_") and unchecked.count(code) == 1, unchecked
    expected = await expected_checksums(settings)
    assert target_checksums(settings, "vectors") == expected
    assert target_checksums(settings, "search") != expected

    caught_up = await run_sync(settings)
    assert caught_up.success
    assert caught_up.result("search").upserted >= 2 and caught_up.result("search").deleted >= 1
    assert (await check_consistency(settings)).consistent


async def test_graph_target_down_does_not_block_the_others_and_catches_up(synced_settings: Settings,
                                                                          tmp_path: Path) -> None:
    settings = synced_settings
    await set_status(settings, [8], "rejected")
    await set_status(settings, [35, 36], "active")
    graph_watermark = await watermark_of(settings, "graph")
    metrics_before = sync_metric_samples()

    report = await run_sync(settings.model_copy(update={"graph_uri": unusable_graph_uri(tmp_path)}))
    assert report.result("graph").error_code == ErrorCode.NEO4J_SYNC_FAILED
    for name in ("vectors", "search"):
        result = report.result(name)
        assert result.success and (result.upserted, result.deleted) == (2, 1), result
    assert await watermark_of(settings, "graph") == graph_watermark
    # Every target's run is counted under its status and timed, the failed one too.
    metrics_after = sync_metric_samples()
    assert {key: metrics_after[key] - metrics_before[key] for key in metrics_before} == {
        "milvus success": 1, "milvus failure": 0, "milvus latency": 1,
        "neo4j success": 0, "neo4j failure": 1, "neo4j latency": 1,
        "elasticsearch success": 1, "elasticsearch failure": 0, "elasticsearch latency": 1,
    }

    for store in STORES.values():  # values the check must overwrite
        for kind in KINDS:
            metrics.consistency_drift_documents.labels(target_db=store, kind=kind).set(-1)
    assert not (await check_consistency(settings)).consistent
    gauges = {store: {kind: sample("consistency_drift_documents", {"target_db": store, "kind": kind})
                      for kind in KINDS} for store in STORES.values()}
    assert gauges == {"milvus": NO_DRIFT, "elasticsearch": NO_DRIFT,
                      "neo4j": {"missing": 2, "stale": 0, "orphaned": 1}}  # 35 and 36 are new, 8 is gone

    caught_up = await run_sync(settings)
    assert caught_up.success
    assert (caught_up.result("graph").upserted, caught_up.result("graph").deleted) == (2, 1)
    assert [(caught_up.result(name).upserted, caught_up.result(name).deleted) for name in ("vectors", "search")] == [
        (0, 0), (0, 0)]
    assert await watermark_of(settings, "graph") > graph_watermark
    assert (await check_consistency(settings)).consistent


async def test_drift_of_each_kind_in_each_target_is_found_and_repaired(synced_settings: Settings) -> None:
    settings = synced_settings
    pool = await postgres.create_pool(settings)
    try:
        active = [record.document for record in await source.records_by_ids(
            pool, await ids_of(settings, list(range(10, 20)))) if record.status == "active"]
    finally:
        await pool.close()
    injected: dict[str, dict[str, list[str]]] = {}
    for offset, name in enumerate(TARGET_NAMES):
        missing, stale = active[offset * 2], active[offset * 2 + 1]
        orphan = dataclasses.replace(stale, id=str(uuid.uuid4()))
        outdated = dataclasses.replace(stale, version=stale.version - 1 or 1, checksum=uuid.uuid4().hex)
        embeddings = {document.id: synthetic_embedding(document.id, DIMENSION) for document in (outdated, orphan)}
        with open_target(name, settings) as target:
            target.delete([missing.id])
            target.upsert(SyncBatch("drift", [outdated, orphan], embeddings))
            target.flush()
        injected[name] = {"missing": [missing.id], "stale": [stale.id], "orphaned": [orphan.id]}

    report = await check_consistency(settings)
    assert not report.consistent
    assert report.summary()["targets"] == {name: {"missing": 1, "stale": 1, "orphaned": 1} for name in injected}
    for name, kinds in injected.items():
        drift = report.targets[name].drift
        assert {"missing": drift.missing, "stale": drift.stale, "orphaned": drift.orphaned} == kinds
        assert report.targets[name].documents_read < SEEDED_ACTIVE  # only the differing buckets were read

    repaired = await repair(settings, report)
    assert repaired.success
    assert repaired.fixed == {name: {"missing": 1, "stale": 1, "orphaned": 1} for name in injected}
    assert (await check_consistency(settings)).consistent
    stored = await execute(settings, "SELECT kind, consistent, report FROM consistency_reports ORDER BY created_at")
    assert [(row["kind"], row["consistent"]) for row in stored] == [("check", False), ("repair", True),
                                                                    ("check", True)]
    # Stored with the design's ConsistencyReport fields (§5.1).
    found, fixed, clean = (json.loads(row["report"]) for row in stored)
    assert {(item["target"], item["kind"], tuple(item["ids"])) for item in found["inconsistencies"]} == {
        (name, kind, tuple(ids)) for name, kinds in injected.items() for kind, ids in kinds.items()}
    assert (found["is_consistent"], found["fixes_applied"]) == (False, [])
    assert fixed["is_consistent"] and fixed["inconsistencies"] == found["inconsistencies"]
    assert {(item["target"], item["kind"], item["count"]) for item in fixed["fixes_applied"]} == {
        (name, kind, 1) for name in injected for kind in KINDS}
    assert (clean["is_consistent"], clean["inconsistencies"]) == (True, [])


def one_full_copy_at_a_time(reads: list[tuple[str, int]]) -> str:
    """Check (copy behind the alias, documents counted) reads taken while a rebuild ran: every read found every
    active policy, through the old copy and then the new one, never none; returns the old copy's name."""
    assert len(reads) > 2  # some reads while the rebuild ran, not only before and after it
    assert {count for _, count in reads} == {SEEDED_ACTIVE}
    old, new = reads[0][0], reads[-1][0]
    assert list(dict.fromkeys(copy for copy, _ in reads)) == [old, new]  # one copy at a time, never none
    return old


async def test_search_rebuild_keeps_a_full_index_behind_the_alias_and_drops_the_old_one(
        synced_settings: Settings) -> None:
    settings = synced_settings
    alias = settings.elasticsearch_index
    reader = search.create_client(settings)

    def read() -> tuple[str, int]:
        return ",".join(sorted(reader.indices.get_alias(name=alias))), reader.count(index=alias)["count"]

    try:
        result, reads = await read_while(rebuild(settings, "search"), read)
        assert result.success, result.error
        assert result.upserted == SEEDED_ACTIVE
        old = one_full_copy_at_a_time(reads)
        assert not reader.indices.exists(index=old)  # dropped after the swap
    finally:
        reader.close()
    assert (await check_consistency(settings)).consistent


async def test_vectors_rebuild_keeps_a_full_collection_behind_the_alias_and_drops_the_old_one(
        synced_settings: Settings) -> None:
    settings = synced_settings
    alias = settings.milvus_collection
    reader = vectors.create_client(settings)

    def read() -> tuple[str, int]:
        collection = reader.describe_alias(alias)["collection_name"]
        return collection, int(reader.query(alias, filter="", output_fields=["count(*)"])[0]["count(*)"])

    try:
        result, reads = await read_while(rebuild(settings, "vectors"), read)
        assert result.success, result.error
        assert (result.upserted, result.encoded) == (SEEDED_ACTIVE, 0)  # every text's embedding was stored
        old = one_full_copy_at_a_time(reads)
        assert not reader.has_collection(old)  # dropped after the swap
    finally:
        reader.close()
    assert (await check_consistency(settings)).consistent


async def test_graph_rebuild_sweeps_what_it_did_not_write(synced_settings: Settings) -> None:
    settings = synced_settings
    orphan_id = str(uuid.uuid4())
    with open_target("graph", settings) as graph:
        graph._store.run("CREATE (p:Policy {id: $id, checksum: 'x', sync_bucket: 1, sync_digest: 1})",
                         {"id": orphan_id})
    result = await rebuild(settings, "graph")
    assert result.success, result.error
    assert result.upserted == SEEDED_ACTIVE
    assert orphan_id not in target_checksums(settings, "graph")
    assert (await check_consistency(settings)).consistent


async def test_a_graph_policy_that_lost_links_is_stale_and_repaired(synced_settings: Settings) -> None:
    """The graph's checksum is on the Policy node; links lost beside it (a region, its organisation) still make
    the policy stale, and repair writes them again."""
    settings = synced_settings
    damaged, intact = await ids_of(settings, [3, 4])

    def links_of(policy_id: str) -> list[str]:
        with open_target("graph", settings) as graph:
            rows = graph._store.run("MATCH (p:Policy {id: $id})-[link]->() RETURN label(link) AS kind",
                                    {"id": policy_id})
        return sorted(row["kind"] for row in rows)

    written = links_of(damaged)
    assert {"ISSUED_BY", "TARGETS_REGION"} <= set(written) and links_of(intact)
    with open_target("graph", settings) as graph:
        graph._store.run("MATCH (p:Policy {id: $id})-[link:TARGETS_REGION]->() DELETE link", {"id": damaged})
        graph._store.run("MATCH (p:Policy {id: $id})-[link:ISSUED_BY]->() DELETE link", {"id": damaged})
    assert links_of(damaged) != written

    report = await check_consistency(settings)
    assert {name: check.drift.counts() for name, check in report.targets.items()} == {
        "vectors": NO_DRIFT, "graph": {"missing": 0, "stale": 1, "orphaned": 0}, "search": NO_DRIFT}
    assert report.targets["graph"].drift.stale == [damaged]
    repaired = await repair(settings, report)
    assert repaired.success and repaired.fixed["graph"] == {"missing": 0, "stale": 1, "orphaned": 0}
    assert links_of(damaged) == written
    assert (await check_consistency(settings)).consistent


def graph_run(settings: Settings, cypher: str, parameters: dict[str, object] | None = None) -> list[dict[str, Any]]:
    """One Cypher statement on the test's graph, as a hand (or a bug) outside the sync would run it."""
    with open_target("graph", settings) as graph:
        return graph._store.run(cypher, parameters or {})


def outgoing_links(settings: Settings, policy_id: str) -> list[tuple[str, str]]:
    """(relationship type, name or policy id of the node it points at) of each link out of the policy, sorted."""
    rows = graph_run(settings, "MATCH (p:Policy {id: $id})-[link]->(x) RETURN label(link) AS kind, "
                     "coalesce(x.id, x.name) AS name", {"id": policy_id})
    return sorted((row["kind"], row["name"]) for row in rows)


def duplicate_links(settings: Settings) -> set[tuple[str, str]]:
    rows = graph_run(settings, "MATCH (d:Policy)-[:DUPLICATE_OF]->(c:Policy) RETURN d.id AS d, c.id AS c")
    return {(row["d"], row["c"]) for row in rows}


def drift_counts(report: ConsistencyReport) -> dict[str, dict[str, int]]:
    return {name: check.drift.counts() for name, check in report.targets.items()}


async def link_duplicates(settings: Settings, pairs: list[tuple[int, int]]) -> None:
    """Link records (duplicate index, canonical index) in `policy_duplicates`, as the cold path does."""
    for duplicate_index, canonical_index in pairs:
        [duplicate], [canonical] = await ids_of(settings, [duplicate_index]), await ids_of(settings, [canonical_index])
        await execute(settings, "INSERT INTO policy_duplicates (policy_id, canonical_id, similarity, method, run_id) "
                      "VALUES ($1, $2, 0.93, 'test', 'test-run')", duplicate, canonical)


async def test_a_graph_link_pointing_at_the_wrong_node_is_stale_and_repaired(synced_settings: Settings) -> None:
    """A link re-pointed to another node keeps the policy's link count (the count alone saw nothing), but not the
    sum of the keys of the nodes it points at: the policy is stale, and repair points the link back."""
    settings = synced_settings
    policies = await ids_of(settings, [3, 4, 5])
    kinds = [("ISSUED_BY", "Organization"), ("TARGETS_REGION", "Region"), ("COLLECTED_FROM", "Source")]
    written = {policy_id: outgoing_links(settings, policy_id) for policy_id in policies}
    for policy_id, (rel_type, label) in zip(policies, kinds, strict=True):
        current = sorted(name for kind, name in written[policy_id] if kind == rel_type)
        others = sorted(row["name"] for row in graph_run(settings, f"MATCH (x:{label}) RETURN x.name AS name")
                        if row["name"] not in current)
        # Another node of the graph where there is one (organizations, regions); a new one, written as the sync
        # writes nodes (with its key), where there is not (every record here has the same source).
        other = others[0] if others else f"다른 {label}"
        graph_run(settings, f"MERGE (x:{label} {{name: $name}}) SET x.link_key = $key",
                  {"name": other, "key": link_key(label, other)})
        graph_run(settings, f"MATCH (:Policy {{id: $id}})-[link:{rel_type}]->(x:{label} {{name: $name}}) DELETE link",
                  {"id": policy_id, "name": current[0]})
        graph_run(settings, f"MATCH (p:Policy {{id: $id}}), (x:{label} {{name: $name}}) CREATE (p)-[:{rel_type}]->(x)",
                  {"id": policy_id, "name": other})
        damaged = outgoing_links(settings, policy_id)
        assert damaged != written[policy_id] and len(damaged) == len(written[policy_id])

    report = await check_consistency(settings)
    assert drift_counts(report) == {"vectors": NO_DRIFT, "graph": {"missing": 0, "stale": 3, "orphaned": 0},
                                    "search": NO_DRIFT}
    assert report.targets["graph"].drift.stale == sorted(policies)
    repaired = await repair(settings, report)
    assert repaired.success and repaired.fixed["graph"] == {"missing": 0, "stale": 3, "orphaned": 0}
    assert {policy_id: outgoing_links(settings, policy_id) for policy_id in policies} == written
    assert (await check_consistency(settings)).consistent


async def test_a_missing_added_or_repointed_duplicate_of_link_is_stale_and_repaired(
        synced_settings: Settings) -> None:
    """Two active duplicates of one active canonical policy: the graph holds both DUPLICATE_OF links and the check
    finds it consistent. Each damage to them (a link deleted, one added where PostgreSQL has none, one pointing
    at another policy) makes the policy the link leaves stale, and repair restores exactly PostgreSQL's links."""
    settings = synced_settings
    await link_duplicates(settings, [(10, 12), (11, 12)])
    assert (await run_sync(settings)).success
    [first, second, canonical, unlinked, other] = await ids_of(settings, [10, 11, 12, 13, 14])
    linked = {(first, canonical), (second, canonical)}
    assert duplicate_links(settings) == linked
    assert (await check_consistency(settings)).consistent  # untouched, DUPLICATE_OF links included

    graph_run(settings, "MATCH (:Policy {id: $id})-[link:DUPLICATE_OF]->() DELETE link", {"id": first})
    graph_run(settings, "MATCH (d:Policy {id: $d}), (c:Policy {id: $c}) CREATE (d)-[:DUPLICATE_OF]->(c)",
              {"d": unlinked, "c": canonical})
    graph_run(settings, "MATCH (:Policy {id: $id})-[link:DUPLICATE_OF]->() DELETE link", {"id": second})
    graph_run(settings, "MATCH (d:Policy {id: $d}), (c:Policy {id: $c}) CREATE (d)-[:DUPLICATE_OF]->(c)",
              {"d": second, "c": other})
    assert duplicate_links(settings) == {(unlinked, canonical), (second, other)}

    report = await check_consistency(settings)
    assert drift_counts(report) == {"vectors": NO_DRIFT, "graph": {"missing": 0, "stale": 3, "orphaned": 0},
                                    "search": NO_DRIFT}
    assert report.targets["graph"].drift.stale == sorted([first, second, unlinked])
    repaired = await repair(settings, report)
    assert repaired.success and repaired.fixed["graph"] == {"missing": 0, "stale": 3, "orphaned": 0}
    assert duplicate_links(settings) == linked
    assert (await check_consistency(settings)).consistent


async def test_duplicate_of_links_follow_the_canonical_policys_status(synced_settings: Settings) -> None:
    """The graph holds a DUPLICATE_OF link only while both policies are active. A rejected duplicate (the cold
    path's normal case) is no node and has no link; a canonical policy that stops being active takes its
    duplicates' links with it, and the next sync writes those duplicates again (their checksums changed: migration
    0009 stamps them), so no target drifts; when it is active again, the links come back."""
    settings = synced_settings
    await set_status(settings, [16], "rejected")
    await link_duplicates(settings, [(15, 17), (16, 17)])
    [duplicate, rejected_duplicate, canonical] = await ids_of(settings, [15, 16, 17])
    assert (await run_sync(settings)).success
    assert duplicate_links(settings) == {(duplicate, canonical)}
    assert rejected_duplicate not in target_checksums(settings, "graph")
    assert (await check_consistency(settings)).consistent

    before = await expected_checksums(settings)
    await set_status(settings, [17], "rejected")
    assert (await expected_checksums(settings))[duplicate] != before[duplicate]  # the canonical is not active
    report = await run_sync(settings)
    assert report.success
    for name in TARGET_NAMES:  # the duplicate is written again by every target; the canonical policy is removed
        assert (report.result(name).upserted, report.result(name).deleted) == (1, 1), name
    assert duplicate_links(settings) == set()
    assert ("DUPLICATE_OF", canonical) not in outgoing_links(settings, duplicate)
    assert (await check_consistency(settings)).consistent

    await set_status(settings, [17], "active")
    assert (await run_sync(settings)).success
    assert duplicate_links(settings) == {(duplicate, canonical)}
    assert (await expected_checksums(settings))[duplicate] == before[duplicate]
    assert (await check_consistency(settings)).consistent


def consistency_check_cli(settings: Settings) -> subprocess.CompletedProcess[str]:
    """`aegis-pipeline consistency check --json` in its own process, configured by the environment."""
    env = {**os.environ, "POSTGRES_HOST": settings.postgres_host, "POSTGRES_PORT": str(settings.postgres_port),
           "POSTGRES_USER": settings.postgres_user, "POSTGRES_DB": settings.postgres_db,
           "GRAPH_URI": settings.graph_uri, "MILVUS_COLLECTION": settings.milvus_collection,
           "ELASTICSEARCH_INDEX": settings.elasticsearch_index, "LOG_LEVEL": "ERROR"}
    pipeline = str(Path(sys.executable).parent / "aegis-pipeline")
    return subprocess.run([pipeline, "consistency", "check", "--json"], capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_consistency_check_prints_the_json_report(synced_settings: Settings) -> None:
    result = consistency_check_cli(synced_settings)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report.pop("report_id") and report.pop("duration_seconds") > 0  # the text output's figures too
    assert report == {"consistent": True, "targets": dict.fromkeys(TARGET_NAMES, NO_DRIFT)}


def test_cli_consistency_check_reports_a_target_it_cannot_read(synced_settings: Settings, tmp_path: Path) -> None:
    result = consistency_check_cli(synced_settings.model_copy(update={"graph_uri": unusable_graph_uri(tmp_path)}))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report.pop("report_id") and report.pop("duration_seconds") > 0
    # The documented shape: the three counts always, plus the reason for a target that could not be read.
    error = report["targets"]["graph"].pop("error")
    assert error.startswith(f"{ErrorCode.NEO4J_SYNC_FAILED}: ")
    assert report == {"consistent": False, "targets": dict.fromkeys(TARGET_NAMES, NO_DRIFT)}
