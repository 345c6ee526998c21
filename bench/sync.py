"""Sync benchmark on the embedded stack: full and 1% incremental sync per target, each engine's raw bulk write
speed, the model's encode rate, and the consistency check with and without drift.

    .venv/bin/python bench/sync.py [--records 100000] [--encode-sample 200] [--raw-records 10000]

1. N generated policies (devstack/synthetic.py: realistic Korean text) are stored as the hot path stores them
   and set `active`, in a database, Milvus alias, Elasticsearch alias and graph file of the benchmark's own.
2. Encode rate: the real model (EMBEDDING_MODEL, loaded offline) encodes a sample of the texts; reported on
   its own. Encoding all N texts here would take N / rate seconds, so the embedding store is prefilled with
   deterministic synthetic vectors for every text: the sync runs "with stored embeddings" and encodes nothing.
3. Raw bulk writes: the same kind of documents written straight through each engine's client (Milvus upsert,
   Elasticsearch bulk, Cypher UNWIND ... CREATE of Policy nodes), no PostgreSQL, no pipeline.
4. Full sync of N, then an incremental run with 1% changed (new text and version; their embeddings stored too),
   records/s per target and in total.
5. Consistency check of N unchanged records, then with 100 injected drifts (missing, stale, orphaned spread over
   the three targets): time, and whether exactly those were found; then repair.

Targets (issue 6): the 1% incremental run under 30 s; the check of N unchanged records under 10 s.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from elasticsearch import helpers

from aegis_pipeline.common.logging import configure_logging
from aegis_pipeline.common.progress import progress
from aegis_pipeline.devstack import stack
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings, load_core_settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.stores.graph import LadybugGraphStore
from aegis_pipeline.sync import source
from aegis_pipeline.sync.consistency import check_consistency, repair
from aegis_pipeline.sync.embeddings import EmbeddingStore, encode_in_batches, load_encoder, packaged_model, text_hash
from aegis_pipeline.sync.run import run_sync
from aegis_pipeline.sync.targets import open_target
from aegis_pipeline.sync.targets.base import SyncBatch, SyncDocument, embedding_text
from aegis_pipeline.sync.targets.search import mapping, to_source
from aegis_pipeline.sync.targets.vectors import VectorsTarget

SOURCE = "bench-sync"
TARGET_INCREMENTAL_SECONDS = 30.0
TARGET_CHECK_SECONDS = 10.0
DRIFTS = 100


def log(message: str) -> None:
    print(message, flush=True)


async def store_records(settings: Settings, indexes: range, *, revision: int = 0) -> None:
    pool = await postgres.create_pool(settings)
    try:
        store = PolicyStore(pool)
        with progress("store policies", total=len(indexes), log_every_seconds=settings.progress_log_seconds) as shown:
            for start in range(indexes.start, indexes.stop, 2000):
                chunk = range(start, min(start + 2000, indexes.stop))
                await store.store_batch([normalize_record(make_record(i, source=SOURCE, revision=revision))
                                         for i in chunk], lambda stored: [])
                shown.advance(len(chunk))
        await pool.execute("UPDATE policies SET status = 'active', quality_score = 0.85 "
                           "WHERE source_system = $1 AND status <> 'active'", SOURCE)
    finally:
        await pool.close()


async def prefill_embeddings(settings: Settings, seed: int) -> int:
    """Synthetic unit vectors for every stored text that has none (deterministic for a seed)."""
    pool = await postgres.create_pool(settings)
    try:
        rows = await pool.fetch("SELECT title, content FROM policies")
        store = EmbeddingStore(pool, settings.embedding_model)
        hashes = sorted({text_hash(embedding_text(row['title'], row['content'])) for row in rows})
        known = set()
        for start in range(0, len(hashes), 5000):
            known.update(await store.get(hashes[start:start + 5000]))
        todo = [key for key in hashes if key not in known]
        vectors = np.random.default_rng(seed).standard_normal((len(todo), store.dimension),
                                                              dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with progress("prefill embeddings", total=len(todo), unit="vectors",
                      log_every_seconds=settings.progress_log_seconds) as shown:
            for start in range(0, len(todo), 5000):
                chunk = todo[start:start + 5000]
                await store.put(dict(zip(chunk, vectors[start:start + 5000], strict=True)))
                shown.advance(len(chunk))
        return len(todo)
    finally:
        await pool.close()


def measure_encode_rate(settings: Settings, sample: int) -> dict[str, float]:
    started = time.perf_counter()
    encoder = load_encoder(settings.embedding_model)
    load_seconds = time.perf_counter() - started
    records = [make_record(i, source="encode-sample") for i in range(sample)]
    texts = [embedding_text(record.title, record.content) for record in records]
    encode_in_batches(encoder, texts[:8], settings.embedding_batch_size)  # warm-up
    started = time.perf_counter()
    encode_in_batches(encoder, texts, settings.embedding_batch_size)
    seconds = time.perf_counter() - started
    return {"texts": sample, "seconds": round(seconds, 2), "texts_per_second": round(sample / seconds, 1),
            "model_load_seconds": round(load_seconds, 2)}


async def sample_documents(settings: Settings, count: int) -> list[SyncDocument]:
    pool = await postgres.create_pool(settings)
    try:
        documents: list[SyncDocument] = []
        async for batch in source.kept_batches(pool, frozenset({"active"}), 2000):
            documents.extend(batch)
            if len(documents) >= count:
                break
        return documents[:count]
    finally:
        await pool.close()


def raw_write_speeds(settings: Settings, documents: list[SyncDocument], scratch: Path) -> dict[str, float]:
    """Records/s of each engine's own bulk write, no pipeline around it."""
    speeds: dict[str, float] = {}
    rng = np.random.default_rng(1)
    dimension = packaged_model(settings.embedding_model).dimension
    vectors = {d.id: v for d, v in zip(documents, rng.standard_normal((len(documents), dimension), dtype=np.float32),
                                       strict=True)}
    milvus = VectorsTarget.open(settings.model_copy(update={"milvus_collection": f"raw_{uuid.uuid4().hex[:8]}"}))
    collection = milvus._create_collection()
    rows = [milvus._row(document, vectors[document.id]) for document in documents]
    started = time.perf_counter()
    for start in range(0, len(rows), 5000):
        milvus._client.upsert(collection, rows[start:start + 5000])
    speeds["vectors"] = round(len(rows) / (time.perf_counter() - started))
    milvus._client.drop_collection(collection)
    milvus.close()

    search = open_target("search", settings)
    index = f"raw-{uuid.uuid4().hex[:8]}"
    search._client.indices.create(index=index, mappings=mapping(settings.elasticsearch_analyzer))
    actions = [{"_index": index, "_id": d.id, "_source": to_source(d, "raw")} for d in documents]
    started = time.perf_counter()
    helpers.bulk(search._client, actions, chunk_size=1000)
    search._client.indices.refresh(index=index)
    speeds["search"] = round(len(actions) / (time.perf_counter() - started))
    search._client.indices.delete(index=index)
    search.close()

    graph = LadybugGraphStore(scratch / "raw.lbug")
    graph.ensure_node_type("Policy", "id", {"id": "STRING", "title": "STRING", "checksum": "STRING",
                                            "version": "INT64"})
    nodes = [{"id": d.id, "title": d.title, "checksum": d.checksum, "version": d.version} for d in documents]
    started = time.perf_counter()
    for start in range(0, len(nodes), 1000):
        graph.run("UNWIND $rows AS r CREATE (:Policy {id: r.id, title: r.title, checksum: r.checksum, "
                  "version: r.version})", {"rows": nodes[start:start + 1000]})
    speeds["graph"] = round(len(nodes) / (time.perf_counter() - started))
    graph.close()
    return speeds


async def inject_drifts(settings: Settings, count: int) -> dict[str, dict[str, list[str]]]:
    """`count` drifts spread over targets and kinds (missing, stale, orphaned), written through each target."""
    documents = await sample_documents(settings, count)
    injected: dict[str, dict[str, list[str]]] = {name: {"missing": [], "stale": [], "orphaned": []}
                                                 for name in ("vectors", "graph", "search")}
    plan = [(("vectors", "graph", "search")[i % 3], ("missing", "stale", "orphaned")[(i // 3) % 3], document)
            for i, document in enumerate(documents)]
    for name in injected:
        with open_target(name, settings) as target:
            for target_name, kind, document in plan:
                if target_name != name:
                    continue
                if kind == "missing":
                    target.delete([document.id])
                    injected[name][kind].append(document.id)
                    continue
                changed = (dataclasses.replace(document, checksum=uuid.uuid4().hex) if kind == "stale"
                           else dataclasses.replace(document, id=str(uuid.uuid4())))
                dimension = packaged_model(settings.embedding_model).dimension
                vector = np.random.default_rng(7).standard_normal(dimension).tolist()
                target.upsert(SyncBatch("drift", [changed], {changed.id: vector}))
                injected[name][kind].append(changed.id if kind == "orphaned" else document.id)
            target.flush()
    return injected


def per_target(report, records: int | None = None) -> dict[str, dict[str, float]]:
    return {result.target: {"seconds": result.duration_seconds, "upserted": result.upserted,
                            "deleted": result.deleted, "encoded": result.encoded,
                            "records_per_second": round((records or result.records_synced)
                                                        / max(result.duration_seconds, 1e-9))}
            for result in report.results}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--encode-sample", type=int, default=200)
    parser.add_argument("--raw-records", type=int, default=10_000)
    arguments = parser.parse_args()
    # Progress is a bar on a terminal, and `progress` log lines (INFO) anywhere else.
    configure_logging("WARNING" if sys.stderr.isatty() else "INFO", json_lines=False)
    records = arguments.records
    changed = max(1, records // 100)

    base = await asyncio.to_thread(stack.up, load_core_settings())
    suffix = uuid.uuid4().hex[:8]
    scratch = base.aegis_data_dir / f"bench-sync-{suffix}"
    scratch.mkdir(parents=True)
    database = f"bench_sync_{suffix}"
    await postgres.ensure_database(base.postgres_dsn(database="postgres"), database)
    settings = base.model_copy(update={
        "postgres_db": database, "milvus_collection": f"bench_sync_{suffix}",
        "elasticsearch_index": f"bench-sync-{suffix}", "graph_uri": str(scratch / "graph.lbug"),
        "sync_batch_size": 5000, "sync_max_encode_per_run": 0,  # nothing may be encoded: all stored
    })
    await asyncio.to_thread(upgrade_to_head, settings)
    try:
        started = time.perf_counter()
        await store_records(settings, range(records))
        log(f"stored {records} active policies in PostgreSQL in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        prefilled = await prefill_embeddings(settings, seed=1)
        log(f"embedding store prefilled with {prefilled} synthetic vectors in {time.perf_counter() - started:.1f} s")

        encode = await asyncio.to_thread(measure_encode_rate, settings, arguments.encode_sample)
        log(f"encode rate (real model, {encode['texts']} texts): {encode['texts_per_second']} texts/s "
            f"(model load {encode['model_load_seconds']} s); all {records} texts would take "
            f"{records / encode['texts_per_second'] / 60:.0f} min")

        raw = await asyncio.to_thread(raw_write_speeds, settings,
                                      await sample_documents(settings, min(arguments.raw_records, records)), scratch)
        log("raw bulk writes, records/s: " + ", ".join(f"{name} {speed}" for name, speed in raw.items()))

        started = time.perf_counter()
        full = await run_sync(settings)
        full_seconds = time.perf_counter() - started
        assert full.success, [result.error for result in full.results]
        assert all(result.upserted == records and result.encoded == 0 for result in full.results)
        full_targets = per_target(full)
        log(f"full sync of {records}: {full_seconds:.1f} s, {records / full_seconds:.0f} records/s in total; "
            + ", ".join(f"{name} {figures['seconds']:.1f} s ({figures['records_per_second']}/s, raw "
                        f"{raw[name]}/s)" for name, figures in full_targets.items()))

        await store_records(settings, range(changed), revision=1)  # new text and version, re-validated
        await prefill_embeddings(settings, seed=2)
        started = time.perf_counter()
        incremental = await run_sync(settings)
        incremental_seconds = time.perf_counter() - started
        assert incremental.success and all(result.upserted == changed for result in incremental.results)
        log(f"incremental sync, {changed} changed (1%): {incremental_seconds:.1f} s, "
            f"{changed / incremental_seconds:.0f} records/s in total; "
            + ", ".join(f"{name} {figures['seconds']:.2f} s" for name, figures in per_target(incremental).items())
            + f"; encoding {changed} new texts would add ~{changed / encode['texts_per_second']:.0f} s")

        clean = await check_consistency(settings)
        assert clean.consistent, clean.summary()
        log(f"consistency check of {records} unchanged: {clean.duration_seconds:.2f} s ("
            + ", ".join(f"{name} {check.duration_seconds:.2f} s" for name, check in clean.targets.items()) + ")")

        injected = await inject_drifts(settings, DRIFTS)
        drifted = await check_consistency(settings)
        found = {name: {"missing": check.drift.missing, "stale": check.drift.stale,
                        "orphaned": check.drift.orphaned} for name, check in drifted.targets.items()}
        exact = found == {name: {kind: sorted(ids) for kind, ids in kinds.items()} for name, kinds in injected.items()}
        log(f"consistency check with {DRIFTS} injected drifts: {drifted.duration_seconds:.2f} s, found "
            f"{sum(check.drift.total for check in drifted.targets.values())}, exactly the injected ones: {exact}; "
            + ", ".join(f"{name} read {check.documents_read} documents of {check.buckets_differing} buckets"
                        for name, check in drifted.targets.items()))
        started = time.perf_counter()
        repaired = await repair(settings, drifted)
        repair_seconds = time.perf_counter() - started
        after = await check_consistency(settings)
        log(f"repair: {repair_seconds:.2f} s, fixed {repaired.fixed}; consistent afterwards: {after.consistent}")

        result = {
            "benchmark": "sync", "records": records, "encode": encode, "raw_records_per_second": raw,
            "full": {"seconds": round(full_seconds, 1), "records_per_second": round(records / full_seconds),
                     "targets": full_targets},
            "incremental": {"changed": changed, "seconds": round(incremental_seconds, 2),
                            "records_per_second": round(changed / incremental_seconds),
                            "targets": per_target(incremental)},
            "check_unchanged_seconds": clean.duration_seconds, "check_drift_seconds": drifted.duration_seconds,
            "drifts_injected": DRIFTS, "drifts_found_exactly": exact, "repair_seconds": round(repair_seconds, 2),
            "consistent_after_repair": after.consistent,
            "targets_met": {"incremental_under_30s": incremental_seconds < TARGET_INCREMENTAL_SECONDS,
                            "check_under_10s": clean.duration_seconds < TARGET_CHECK_SECONDS},
        }
        print(json.dumps(result, ensure_ascii=False))
    finally:
        await cleanup(settings, base, database, scratch)


async def cleanup(settings: Settings, base: Settings, database: str, scratch: Path) -> None:
    for name in ("vectors", "search"):
        try:
            with open_target(name, settings) as target:
                if name == "vectors":
                    live = target.live_collection()
                    if live:
                        target._client.drop_alias(settings.milvus_collection)
                        target._client.drop_collection(live)
                else:
                    for index in target.live_indices():
                        target._client.indices.delete(index=index)
        except Exception as error:  # cleanup is best effort: report, never hide the benchmark's own error
            log(f"cleanup of {name} failed: {error}")
    shutil.rmtree(scratch, ignore_errors=True)
    await postgres.drop_database(base.postgres_dsn(database="postgres"), database)


if __name__ == "__main__":
    asyncio.run(main())
