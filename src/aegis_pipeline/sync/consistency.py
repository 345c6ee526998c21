"""Consistency of each target with PostgreSQL: check (missing, stale, orphaned documents) and repair.

The check reads PostgreSQL's (id, checksum) of the policies a target holds (`targets.base.KEPT_STATUSES`: active
ones; the graph keeps archived ones too) once per kind of target, sums them per bucket of ids, asks each target
for its own bucket sums (an aggregation where the engine has one: Elasticsearch, Cypher; Milvus reads scalars
only), and reads documents only in the buckets that differ. So an unchanged target costs one aggregation, and
100 drifted documents cost about 100 buckets' worth of reads. The diffing itself is `sync.digest` (pure).
The graph's aggregation also compares each policy's outgoing links (DUPLICATE_OF included) with the digest it was
written with, from PostgreSQL's view (`sync.targets.graph`): a policy whose links differ is stale, so a link lost,
added or pointing at the wrong node is found and repaired like another checksum.

`repair` fixes exactly what a check found: missing and stale documents are written again from PostgreSQL's
current state, orphaned ones deleted. Both store their report (`consistency_reports`) and set the
`consistency_drift_documents` gauge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import ErrorCode, PipelineError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.common.progress import progress
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.sync import source
from aegis_pipeline.sync.digest import BUCKETS, Drift, bucket_of, diff, differing_buckets, summarize
from aegis_pipeline.sync.embeddings import EmbeddingProvider
from aegis_pipeline.sync.run import OpenTarget, TargetResult, _store_name, _write, check_target_names, new_run_id
from aegis_pipeline.sync.targets.base import KEPT_STATUSES

log = get_logger(__name__)
KINDS = ("missing", "stale", "orphaned")
_STORED_IDS = 1000  # ids kept per kind in the stored report (counts are always complete)
# Differing buckets read per call: a target far off (emptied, restored from an old copy) is read in steps that the
# check's progress can show; a few drifted documents still take one call.
_BUCKETS_PER_READ = 128


@dataclass
class TargetCheck:
    target: str
    store: str
    drift: Drift = field(default_factory=Drift)
    buckets_differing: int = 0
    documents_read: int = 0     # read in full from the target (only in differing buckets)
    error_code: str | None = None
    error: str | None = None
    duration_seconds: float = 0.0

    @property
    def consistent(self) -> bool:
        return self.error is None and self.drift.total == 0

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = self.drift.counts()
        if self.error:
            data["error"] = f"{self.error_code}: {self.error}"
        return data


@dataclass
class ConsistencyReport:
    """The design's ConsistencyReport (§5.1): whether each target agrees with PostgreSQL, and how not."""

    checked_at: datetime
    targets: dict[str, TargetCheck]
    duration_seconds: float = 0.0
    report_id: str | None = None

    @property
    def consistent(self) -> bool:
        return all(check.consistent for check in self.targets.values())

    def summary(self) -> dict[str, Any]:
        """{"consistent": bool, "targets": {name: {"missing": n, "stale": n, "orphaned": n}}}"""
        return {"consistent": self.consistent,
                "targets": {name: check.summary() for name, check in self.targets.items()}}

    def inconsistencies(self) -> list[dict[str, Any]]:
        """One entry per target and kind of drift found: its count and (at most `_STORED_IDS` of) its ids."""
        return [{"target": name, "kind": kind, "count": len(ids), "ids": ids[:_STORED_IDS]}
                for name, check in self.targets.items() for kind in KINDS if (ids := getattr(check.drift, kind))]

    def stored_form(self) -> dict[str, Any]:
        """The design's ConsistencyReport fields (§5.1), then the counts per target (errors included)."""
        return {"is_consistent": self.consistent, "inconsistencies": self.inconsistencies(), "fixes_applied": [],
                "checked_at": self.checked_at.isoformat(), "targets": self.summary()["targets"],
                "duration_seconds": self.duration_seconds}


@dataclass
class RepairReport:
    report_id: str | None
    repaired_at: datetime
    fixed: dict[str, dict[str, int]]      # target -> kind -> documents fixed
    results: dict[str, TargetResult]      # target -> what was written and deleted

    @property
    def success(self) -> bool:
        """Nothing failed: every target repaired, or busy (a sync of it running: left to the next repair)."""
        return all(result.busy or (result.success and result.deferred == 0) for result in self.results.values())

    @property
    def busy(self) -> list[str]:
        return [name for name, result in self.results.items() if result.busy]

    def summary(self) -> dict[str, Any]:
        return {"success": self.success, "fixed": self.fixed, "busy": self.busy,
                "errors": {name: f"{result.error_code}: {result.error}"
                           for name, result in self.results.items() if result.error}}


def _set_gauges(target: str, counts: dict[str, int]) -> None:
    for kind in KINDS:
        metrics.consistency_drift_documents.labels(target_db=_store_name(target), kind=kind).set(counts[kind])


async def _store_report(pool: asyncpg.Pool, kind: str, consistent: bool, report: dict[str, Any]) -> str:
    with postgres.translate_errors("store consistency report"):
        return str(await pool.fetchval(
            "INSERT INTO consistency_reports (kind, consistent, report) VALUES ($1, $2, $3::jsonb) RETURNING id",
            kind, consistent, orjson.dumps(report).decode("utf-8")))


async def _check_target(settings: Settings, name: str, expected: dict[str, str],
                        expected_digests: dict[int, Any]) -> TargetCheck:
    check = TargetCheck(target=name, store=_store_name(name))
    started = time.monotonic()
    try:
        # Progress in buckets compared: those whose digests agree at once, the others as they are read.
        with progress(f"consistency check {name}", total=BUCKETS, unit="buckets",
                      log_every_seconds=settings.progress_log_seconds) as shown:
            async with OpenTarget(settings, name) as handle:
                assert handle.target is not None
                actual_digests = await handle.call(handle.target.bucket_digests)
                buckets = differing_buckets(expected_digests, actual_digests)
                check.buckets_differing = len(buckets)
                shown.advance(BUCKETS - len(buckets))
                actual: dict[str, str] = {}
                ordered = sorted(buckets)
                for start in range(0, len(ordered), _BUCKETS_PER_READ):
                    chunk = ordered[start:start + _BUCKETS_PER_READ]
                    actual.update(await handle.call(handle.target.checksums, chunk))
                    shown.advance(len(chunk))
                if buckets:
                    check.documents_read = len(actual)
                    wanted = {policy_id: checksum for policy_id, checksum in expected.items()
                              if bucket_of(policy_id) in buckets}
                    check.drift = diff(wanted, actual)
    except Exception as error:
        code = error.code.value if isinstance(error, PipelineError) else ErrorCode.CONSISTENCY_CHECK_FAILED.value
        check.error_code, check.error = code, error.message if isinstance(error, PipelineError) else str(error)
        log.error("consistency_check_failed", target=name, error_code=code, error=str(error),
                  exc_info=not isinstance(error, PipelineError))
    check.duration_seconds = round(time.monotonic() - started, 3)
    return check


async def check_consistency(settings: Settings, *, targets: Sequence[str] | None = None) -> ConsistencyReport:
    """Compare each target (default: all three) with PostgreSQL; store the report and set the drift gauges.

    A target that cannot be read gets an `error` (its DP code) in the report, which is then not consistent.
    """
    names = check_target_names(targets)
    started = time.monotonic()
    checked_at = datetime.now(UTC)
    pool = await postgres.create_pool(settings)
    try:
        expected: dict[frozenset[str], tuple[dict[str, str], Any]] = {}
        for statuses in {KEPT_STATUSES[name] for name in names}:
            checksums = await source.kept_checksums(pool, statuses)
            expected[statuses] = (checksums, summarize(checksums.items()))
        checks = await asyncio.gather(*(_check_target(settings, name, *expected[KEPT_STATUSES[name]])
                                        for name in names))
        report = ConsistencyReport(checked_at, {check.target: check for check in checks},
                                   round(time.monotonic() - started, 3))
        for check in checks:
            if check.error is None:
                _set_gauges(check.target, check.drift.counts())
        report.report_id = await _store_report(pool, "check", report.consistent, report.stored_form())
    finally:
        await pool.close()
    log.info("consistency_checked", report_id=report.report_id, duration_seconds=report.duration_seconds,
             **{name: check.summary() for name, check in report.targets.items()}, consistent=report.consistent)
    return report


async def _repair_target(pool: asyncpg.Pool, settings: Settings, check: TargetCheck, run_id: str,
                         embeddings: EmbeddingProvider) -> TargetResult:
    result = TargetResult(target=check.target, store=check.store)
    started = time.monotonic()
    drift = check.drift
    ids = [*drift.missing, *drift.stale, *drift.orphaned]
    try:
        async with source.target_lock(pool, check.target, wait_seconds=settings.sync_lock_wait_seconds), \
                OpenTarget(settings, check.target) as handle:
            with progress(f"consistency repair {check.target}", total=len(ids),
                          log_every_seconds=settings.progress_log_seconds) as shown:
                for start in range(0, len(ids), settings.sync_batch_size):
                    chunk = ids[start:start + settings.sync_batch_size]
                    current = {record.document.id: record for record in await source.records_by_ids(pool, chunk)}
                    statuses = KEPT_STATUSES[check.target]
                    kept = [current[i].document for i in chunk if i in current and current[i].kept_by(statuses)]
                    gone = [i for i in chunk if i not in current or not current[i].kept_by(statuses)]
                    await _write(handle, result, run_id, kept, gone, embeddings)
                    shown.advance(len(chunk))
            await handle.call(handle.target.flush)  # type: ignore[union-attr]
        result.success = True
    except postgres.LockBusyError as busy:  # a sync or rebuild of the target: the next repair fixes what remains
        result.success, result.busy = True, True
        log.info("consistency_repair_busy", target=check.target, reason=str(busy))
    except Exception as error:
        code = error.code if isinstance(error, PipelineError) else ErrorCode.CONSISTENCY_CHECK_FAILED
        result.error_code, result.error = code.value, error.message if isinstance(error, PipelineError) else str(error)
        log.error("consistency_repair_failed", target=check.target, error_code=code.value, error=str(error),
                  exc_info=not isinstance(error, PipelineError))
    result.duration_seconds = round(time.monotonic() - started, 3)
    return result


async def repair(settings: Settings, report: ConsistencyReport | None = None) -> RepairReport:
    """Fix what `report` found (default: a check run now); store and return what was fixed per target and kind."""
    report = report or await check_consistency(settings)
    run_id = new_run_id("repair")
    pool = await postgres.create_pool(settings)
    fixed: dict[str, dict[str, int]] = {}
    results: dict[str, TargetResult] = {}
    try:
        embeddings = EmbeddingProvider(pool, settings, budget=settings.sync_max_encode_per_run)
        for name, check in report.targets.items():
            if check.error is not None or check.drift.total == 0:
                fixed[name] = dict.fromkeys(KINDS, 0)
                continue
            result = await _repair_target(pool, settings, check, run_id, embeddings)
            results[name] = result
            counts = check.drift.counts()
            done = result.success and not result.busy and result.deferred == 0
            fixed[name] = counts if done else dict.fromkeys(KINDS, 0)
            _set_gauges(name, {kind: counts[kind] - fixed[name][kind] for kind in KINDS})
        repaired = RepairReport(None, datetime.now(UTC), fixed, results)
        stored = {"is_consistent": repaired.success and not repaired.busy,
                  "inconsistencies": report.inconsistencies(),
                  "fixes_applied": [{"target": name, "kind": kind, "count": count}
                                    for name, counts in fixed.items() for kind, count in counts.items() if count],
                  "checked_at": report.checked_at.isoformat(), "repaired_at": repaired.repaired_at.isoformat(),
                  "check_report_id": report.report_id, "run_id": run_id, "errors": repaired.summary()["errors"],
                  "results": {name: result.as_dict() for name, result in results.items()}}
        repaired.report_id = await _store_report(pool, "repair", stored["is_consistent"], stored)
    finally:
        await pool.close()
    log.info("consistency_repaired", **repaired.summary())
    return repaired
