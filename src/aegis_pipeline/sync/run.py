"""The sync run: each target gets the policies changed since its own watermark, in batches; the ones it holds
(`targets.base.KEPT_STATUSES`: active ones, and in the graph archived ones too) are upserted, the others
(rejected, back to pending validation, archived for vectors and search) removed. A target that fails
(DP_3001..DP_3003) keeps its watermark and catches up next run; the others go on. The run ends with a
`pipeline_metadata` row and a `data.sync_completed` event in one transaction (the outbox).

`rebuild` writes a complete new copy of one target beside the live one and swaps it in (alias or sweep).
These two functions are what the CLI and the Airflow DAGs call.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import orjson

from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import ErrorCode, PipelineError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.common.progress import progress
from aegis_pipeline.schemas.events import EventType
from aegis_pipeline.schemas.fact_events import SyncRunRecord, sync_completed_envelope
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import outbox, postgres
from aegis_pipeline.stores.outbox import OutboxEvent
from aegis_pipeline.sync import source
from aegis_pipeline.sync.embeddings import EmbeddingProvider
from aegis_pipeline.sync.targets import TARGET_NAMES, SyncTarget, open_target
from aegis_pipeline.sync.targets.base import KEPT_STATUSES, SyncBatch, SyncDocument

log = get_logger(__name__)
T = TypeVar("T")


@dataclass
class TargetResult:
    target: str                 # vectors, graph, search
    store: str                  # milvus, neo4j, elasticsearch
    success: bool = False
    upserted: int = 0
    deleted: int = 0
    deferred: int = 0           # waiting for an embedding (encode budget used up); synced by a later run
    encoded: int = 0            # texts encoded for this target in this run
    error_code: str | None = None
    error: str | None = None
    duration_seconds: float = 0.0
    # Another sync, rebuild or repair of this target held it past SYNC_LOCK_WAIT_SECONDS: nothing done, no failure
    # (`success` stays true; the watermark stays, so the next run catches up).
    busy: bool = False
    synced_ids: set[str] = field(default_factory=set, repr=False)

    @property
    def records_synced(self) -> int:
        return self.upserted + self.deleted

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("synced_ids")
        return data


@dataclass
class SyncReport:
    run_id: str
    started_at: datetime
    finished_at: datetime
    results: list[TargetResult]

    @property
    def success(self) -> bool:
        return all(result.success for result in self.results)

    @property
    def policies_synced(self) -> int:
        return len(set().union(*(result.synced_ids for result in self.results)))

    def result(self, target: str) -> TargetResult:
        return next(result for result in self.results if result.target == target)


def new_run_id(kind: str) -> str:
    return f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def check_target_names(targets: Sequence[str] | None) -> list[str]:
    names = list(dict.fromkeys(targets)) if targets else list(TARGET_NAMES)
    unknown = [name for name in names if name not in TARGET_NAMES]
    if unknown:
        raise ValueError(f"unknown sync target(s) {', '.join(unknown)}; expected {', '.join(TARGET_NAMES)}")
    return names


class OpenTarget:
    """A target opened in its own thread: engine calls block, and an embedded engine wants one thread."""

    def __init__(self, settings: Settings, name: str) -> None:
        self._settings = settings
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sync-{name}")
        self.target: SyncTarget | None = None

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def __aenter__(self) -> OpenTarget:
        try:
            self.target = await self.call(open_target, self.name, self._settings)
            await self.call(self.target.setup)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self.target is not None:
                await self.call(self.target.close)
        finally:
            self._executor.shutdown(wait=False)


def _fail(result: TargetResult, error: Exception) -> None:
    if isinstance(error, postgres.LockBusyError):
        result.success, result.busy = True, True
        log.info("sync_target_busy", target=result.target, reason=str(error))
        return
    result.success = False
    if isinstance(error, PipelineError):
        result.error_code, result.error = error.code.value, str(error)
    else:  # not translated anywhere: a bug, logged with its traceback below
        result.error_code, result.error = ErrorCode.BATCH_PROCESSING_ERROR.value, f"{type(error).__name__}: {error}"
    log.error("sync_target_failed", target=result.target, error_code=result.error_code, error=result.error,
              exc_info=not isinstance(error, PipelineError))


async def _write(handle: OpenTarget, result: TargetResult, run_id: str, active: list[SyncDocument],
                 gone: list[str], embeddings: EmbeddingProvider) -> list[str]:
    """Upsert `active` (the documents the target holds) and delete `gone` in the target; returns the ids deferred
    for want of an embedding."""
    target = handle.target
    assert target is not None
    vectors: dict[str, Any] = {}
    deferred: list[str] = []
    if target.needs_embeddings and active:
        encoded_before = embeddings.encoded
        vectors, deferred = await embeddings.for_documents(active)
        result.encoded += embeddings.encoded - encoded_before
        active = [document for document in active if document.id in vectors]
    await handle.call(target.upsert, SyncBatch(run_id, active, vectors))
    await handle.call(target.delete, gone)
    result.upserted += len(active)
    result.deleted += len(gone)
    result.deferred += len(deferred)
    result.synced_ids.update(document.id for document in active)
    result.synced_ids.update(gone)
    return deferred


async def _sync_target(pool: asyncpg.Pool, settings: Settings, name: str, run_id: str,
                       embeddings: EmbeddingProvider) -> TargetResult:
    result = TargetResult(target=name, store=_store_name(name))
    started = time.monotonic()
    try:
        async with source.target_lock(pool, name, wait_seconds=settings.sync_lock_wait_seconds), \
                OpenTarget(settings, name) as handle:
            watermark = await source.read_watermark(pool, name)
            next_watermark = await source.snapshot_xmin(pool)
            changed = await source.count_changed(pool, watermark)
            with progress(f"sync {name}", total=changed, log_every_seconds=settings.progress_log_seconds) as shown:
                async for records in source.changed_batches(pool, watermark, settings.sync_batch_size):
                    kept = [record.document for record in records if record.kept_by(KEPT_STATUSES[name])]
                    gone = [record.document.id for record in records if not record.kept_by(KEPT_STATUSES[name])]
                    deferred = set(await _write(handle, result, run_id, kept, gone, embeddings))
                    if deferred:
                        # Resume next run at the first record left out. Later batches are still written (what has
                        # an embedding goes in, the rest is counted as deferred): the next run reads them again,
                        # idempotently.
                        first_deferred = min(record.sync_xid for record in records if record.document.id in deferred)
                        next_watermark = min(next_watermark, first_deferred)
                    shown.advance(len(records))
            await handle.call(handle.target.flush)  # type: ignore[union-attr]
            await source.write_watermark(pool, name, next_watermark, run_id)
        result.success = True
    except Exception as error:
        _fail(result, error)
    result.duration_seconds = round(time.monotonic() - started, 3)
    _observe(result)
    log.info("sync_target_finished", **result.as_dict())
    return result


def _observe(result: TargetResult) -> None:
    """The metrics of one run (or rebuild) of a target. db_sync_total adds up over runs (pushed as such:
    common.metrics.push_batch_metrics), so db_sync_last_run_failed says how the last one ended (SyncFailed)."""
    status = _status(result)
    metrics.db_sync_total.labels(target_db=result.store, status=status).inc()
    metrics.db_sync_latency_seconds.labels(target_db=result.store).observe(result.duration_seconds)
    if status != "busy":  # another run of the target was at it: its outcome is that run's to report
        metrics.db_sync_last_run_failed.labels(target_db=result.store).set(int(status == "failure"))


def _status(result: TargetResult) -> str:
    """The `status` label of `db_sync_total`: success, busy (left to a later run) or failure."""
    return "busy" if result.busy else ("success" if result.success else "failure")


def _store_name(target: str) -> str:
    return {"vectors": "milvus", "graph": "neo4j", "search": "elasticsearch"}[target]


async def _record_run(pool: asyncpg.Pool, settings: Settings, report: SyncReport) -> None:
    """The run's pipeline_metadata row and its data.sync_completed event, in one transaction. The event is built
    from the values the row stores, by the function the broker watch builds it again with from the row after a
    broker lost it (`schemas.fact_events.SyncRunRecord`)."""
    results = [result.as_dict() for result in report.results]
    record = SyncRunRecord(sync_id=report.run_id, results=results, policies_synced=report.policies_synced,
                           finished_at=report.finished_at)
    envelope = sync_completed_envelope(record, producer=f"{settings.service_name}/{settings.service_version}")
    event = OutboxEvent(event_id=envelope["event_id"], event_type=EventType.DATA_SYNC_COMPLETED.value,
                        topic=settings.kafka_topic_policy_events, key=report.run_id, envelope=envelope)
    failed = sum(not result.success for result in report.results)
    status = "completed" if failed == 0 else ("failed" if failed == len(report.results) else "partial")
    metadata = {"kind": "sync", "results": results}
    with postgres.translate_errors("record sync run"):
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(
                """INSERT INTO pipeline_metadata (pipeline_run_id, processing_path, started_at, completed_at, status,
                                                  records_processed, records_failed, metadata)
                   VALUES ($1, 'cold', $2, $3, $4, $5, $6, $7::jsonb)""",
                record.sync_id, report.started_at, record.finished_at, status, record.policies_synced,
                sum(result.deferred for result in report.results), orjson.dumps(metadata).decode("utf-8"))
            await outbox.enqueue(connection, [event])


async def run_sync(settings: Settings, *, targets: Sequence[str] | None = None,
                   run_id: str | None = None) -> SyncReport:
    """Sync each target (default: all three) with the policies changed since its watermark.

    Never raises for a failing target: its result says what failed (DP_3001..DP_3003) and its watermark stays,
    so the next run catches up. Raises StoreUnavailableError only when PostgreSQL itself is unreachable.
    """
    names = check_target_names(targets)
    run_id = run_id or new_run_id("sync")
    started_at = datetime.now(UTC)
    pool = await postgres.create_pool(settings)
    try:
        embeddings = EmbeddingProvider(pool, settings, budget=settings.sync_max_encode_per_run)
        results = [await _sync_target(pool, settings, name, run_id, embeddings) for name in names]
        report = SyncReport(run_id, started_at, datetime.now(UTC), results)
        await _record_run(pool, settings, report)
    finally:
        await pool.close()
    log.info("sync_finished", run_id=run_id, success=report.success, policies_synced=report.policies_synced)
    return report


async def rebuild(settings: Settings, target: str, *, run_id: str | None = None) -> TargetResult:
    """Write every policy `target` holds (KEPT_STATUSES) into a new copy of it, then swap it in; set the watermark.

    The rebuild encodes every text that has no stored embedding of the configured model, whatever the sync's
    per-run budget (it is how a new `EMBEDDING_MODEL` is brought in); the live copy serves until the swap.
    """
    (name,) = check_target_names([target])
    run_id = run_id or new_run_id("rebuild")
    result = TargetResult(target=name, store=_store_name(name))
    started = time.monotonic()
    pool = await postgres.create_pool(settings)
    try:
        embeddings = EmbeddingProvider(pool, settings, budget=None)
        async with source.target_lock(pool, name, wait_seconds=settings.sync_lock_wait_seconds), \
                OpenTarget(settings, name) as handle:
            assert handle.target is not None
            next_watermark = await source.snapshot_xmin(pool)
            kept = await source.count_kept(pool, KEPT_STATUSES[name])
            await handle.call(handle.target.begin_rebuild, run_id)
            try:
                with progress(f"sync rebuild {name}", total=kept,
                              log_every_seconds=settings.progress_log_seconds) as shown:
                    async for documents in source.kept_batches(pool, KEPT_STATUSES[name], settings.sync_batch_size):
                        await _write(handle, result, run_id, documents, [], embeddings)
                        shown.advance(len(documents))
                await handle.call(handle.target.finish_rebuild)
            except BaseException:
                await handle.call(handle.target.abort_rebuild)
                raise
            await source.write_watermark(pool, name, next_watermark, run_id)
        result.success = True
    except Exception as error:
        _fail(result, error)
    finally:
        await pool.close()
    result.duration_seconds = round(time.monotonic() - started, 3)
    _observe(result)
    log.info("sync_rebuild_finished", **result.as_dict())
    return result
