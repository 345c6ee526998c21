"""Retention: delete the history past each table's RETENTION_DAYS_* (`cold_path.retention_rules`, which says what
each table keeps however old), daily (`policy_retention` DAG) or by hand (`aegis-pipeline retention`).

Bounded work per statement. Each table is walked oldest first in batches of RETENTION_BATCH_SIZE rows past its
cutoff, by a keyset on (age, id): one statement per batch, each its own short transaction, picks the batch's
rows, decides which must stay, locks the others (`SKIP LOCKED`: a row a writer holds is left for the next run)
and deletes them. So no statement holds locks or an open transaction for long, nor grows a transaction with the
whole backlog, and rows that must stay (which may sit at the old end for ever) are read once per run, not once
per batch. What a batch deleted stays deleted if a later one fails; the next run goes on from there.

A run is recorded in `pipeline_metadata` (`metadata.kind` = "retention": the rows deleted and kept per table,
the cutoffs, the batches) and counted in `retention_rows_deleted_total{table}`, `retention_old_rows_kept{table}`
and `retention_last_success_timestamp_seconds`, pushed as job `aegis-retention`. A dry run walks the same rows
read-only and counts what it would delete: it deletes nothing, records nothing and moves no metric.

Deleted space is reused by the table's later rows once (auto)vacuum has passed; the files do not shrink
(docs/scale.md, Retention).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import orjson

from aegis_pipeline.cold_path.retention_rules import (
    CLOSED_LETTER_STATUSES,
    RetentionReport,
    TableOutcome,
    TableRule,
    table_rules,
)
from aegis_pipeline.common import metrics
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.common.progress import progress
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

log = get_logger(__name__)

_FIRST_AT = datetime(1, 1, 1, tzinfo=UTC)        # before every row: the keyset walk starts after it
_FIRST_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class _TableSql:
    """How one table's rows are judged, as SQL on the row `t` (`n`: another row of the table).

    `age`: the column that dates a row; `only`: rows that may go at all; `keep`: of those, rows that stay however
    old (may use $1, the cutoff). `keep` must never be NULL for a row that may go; a NULL keeps the row."""

    age: str
    keep: str
    only: str = "true"


def _no_newer(table: str, age: str, same: str) -> str:
    """No row of `table` that is `same` as `t` is newer (by age, then id: exactly one row is the latest).

    For groups found by an index (a policy's rows): each candidate reads its own group's rows."""
    return f"NOT EXISTS (SELECT 1 FROM {table} n WHERE {same} AND (n.{age}, n.id) > (t.{age}, t.id))"  # noqa: S608


def _is_newest(table: str, age: str, same: str) -> str:
    """`t` is the newest row of `table` that is `same` as `t` (by age, then id).

    For a few large groups (a kind of run or report): read from the newest row back along the age index until the
    group's first, a few rows. (As NOT EXISTS, the planner read the table from its oldest row, which in a table
    written in time order are all older, up to the candidate: quadratic in the table's size.)"""
    return (f"t.id = (SELECT n.id FROM {table} n WHERE {same} "  # noqa: S608
            f"ORDER BY n.{age} DESC, n.id DESC LIMIT 1)")


def _report_targets(row: str) -> str:
    """The targets a consistency report names: a check's `targets`, a repair's `results` (JSON object keys)."""
    named = f"coalesce({row}.report->'targets', {row}.report->'results')"
    return f"(CASE WHEN jsonb_typeof({named}) = 'object' THEN {named} END)"


def _latest_for_a_target() -> str:
    """`t` is the latest report of its kind that names one of the targets it names."""
    newest = _is_newest("consistency_reports", "created_at",
                        f"n.kind = t.kind AND {_report_targets('n')} ? target.name")
    return f"EXISTS (SELECT 1 FROM jsonb_object_keys({_report_targets('t')}) AS target(name) WHERE {newest})"  # noqa: S608


_CLOSED = ", ".join(f"'{status}'" for status in CLOSED_LETTER_STATUSES)
_RUN_KIND = "coalesce({row}.metadata->>'kind', {row}.processing_path)"  # cold, sync, retention...

_TABLES: dict[str, _TableSql] = {
    # A status change is an entry whose `changes` has `status` (the hot path's, the cold path's, archiving).
    "audit_logs": _TableSql(
        age='"timestamp"',
        keep="coalesce(t.changes ? 'status', false) AND " + _no_newer(
            "audit_logs", '"timestamp"',
            "n.entity_type = t.entity_type AND n.entity_id = t.entity_id AND coalesce(n.changes ? 'status', false)")),
    "processing_history": _TableSql(
        age="processed_at",
        keep=_no_newer("processing_history", "processed_at",
                       "n.policy_id = t.policy_id AND n.processing_path = t.processing_path")),
    "quality_metrics": _TableSql(
        age="calculated_at",
        keep=_no_newer("quality_metrics", "calculated_at", "n.policy_id = t.policy_id")),
    "consistency_reports": _TableSql(
        age="created_at",
        keep=_is_newest("consistency_reports", "created_at", "n.kind = t.kind") + " OR " + _latest_for_a_target()),
    # Only closed letters may go; one closed (retried last) within the retention stays.
    "dead_letters": _TableSql(
        age="last_failed_at",
        only=f"t.status IN ({_CLOSED})",
        keep=f"t.status NOT IN ({_CLOSED}) OR coalesce(t.last_retry_at, t.last_failed_at) >= $1"),
    "pipeline_metadata": _TableSql(
        age="started_at",
        keep=_is_newest("pipeline_metadata", "started_at",
                        f"{_RUN_KIND.format(row='n')} = {_RUN_KIND.format(row='t')}")),
}


def _statements(table: str, sql: _TableSql) -> tuple[str, str]:
    """(delete, dry run) statements of one batch. Parameters: $1 the cutoff, $2 and $3 the keyset position (age,
    id) of the last row the previous batch examined, $4 the batch size. Each returns one row: rows `examined`
    (past the cutoff, after the position), of those `deleted` (dry run: would be), and the new position."""
    candidates = f"""candidates AS (
    SELECT t.id, t.{sql.age} AS at FROM {table} t
    WHERE t.{sql.age} < $1 AND t.{sql.age} >= $2 AND (t.{sql.age}, t.id) > ($2, $3::uuid) AND ({sql.only})
    ORDER BY t.{sql.age}, t.id LIMIT $4
)"""  # noqa: S608 (code, no input: as STATEMENTS below)
    doomed = f"""doomed AS (
    SELECT t.id FROM {table} t JOIN candidates c ON c.id = t.id
    WHERE NOT coalesce(({sql.keep}), true)"""  # noqa: S608
    result = """
SELECT (SELECT count(*) FROM candidates) AS examined, (SELECT count(*) FROM {gone}) AS deleted,
       last.at AS last_at, last.id::text AS last_id
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT at, id FROM candidates ORDER BY at DESC, id DESC LIMIT 1) AS last ON true"""
    removed = f"removed AS (DELETE FROM {table} d USING doomed WHERE d.id = doomed.id RETURNING d.id)"  # noqa: S608
    delete = f"WITH {candidates},\n{doomed}\n    FOR UPDATE OF t SKIP LOCKED\n),\n{removed}" + result.format(
        gone="removed")
    dry_run = f"WITH {candidates},\n{doomed}\n)" + result.format(gone="doomed")
    return delete, dry_run


# Built once from the constants above (table names and predicates are code, never input; values are bound).
STATEMENTS: dict[str, tuple[str, str]] = {table: _statements(table, sql) for table, sql in _TABLES.items()}

RECORD_RUN_SQL = """
INSERT INTO pipeline_metadata (pipeline_run_id, processing_path, started_at, completed_at, status,
                               records_processed, records_failed, metadata)
VALUES ($1, 'cold', $2, now(), 'completed', $3, 0, $4::jsonb)
"""


async def apply_retention(settings: Settings, *, dry_run: bool = False, run_id: str | None = None) -> RetentionReport:
    """Delete, table after table, the rows past their retention that need not stay; returns what was deleted and
    kept per table. `dry_run`: count only. Raises `StoreUnavailableError` (retriable) when PostgreSQL fails; what
    earlier batches deleted stays deleted."""
    run_id = run_id or f"retention-{uuid.uuid4()}"
    started = time.monotonic()
    pool = await postgres.create_pool(settings)
    try:
        with postgres.translate_errors("read clock"):
            now = await pool.fetchval("SELECT now()")
        report = RetentionReport(run_id=run_id, dry_run=dry_run, batch_size=settings.retention_batch_size,
                                 started_at=now)
        for rule in table_rules(settings):
            if not dry_run:
                metrics.retention_rows_deleted_total.labels(table=rule.table).inc(0)  # every table in the push
            report.tables[rule.table] = await _apply_rule(pool, settings, rule, now, dry_run=dry_run)
        report.duration_seconds = round(time.monotonic() - started, 3)
        if not dry_run:
            await _record_run(pool, report)
            for table, outcome in report.tables.items():
                metrics.retention_old_rows_kept.labels(table=table).set(outcome.kept)
            metrics.retention_last_success_timestamp_seconds.set(time.time())
    finally:
        await pool.close()
    log.info("retention_finished", run_id=run_id, dry_run=dry_run, deleted=report.counts(),
             kept={table: outcome.kept for table, outcome in report.tables.items()},
             duration_seconds=report.duration_seconds)
    return report


async def _apply_rule(pool: asyncpg.Pool, settings: Settings, rule: TableRule, now: datetime, *,
                      dry_run: bool) -> TableOutcome:
    cutoff = rule.cutoff(now)
    outcome = TableOutcome(table=rule.table, days=rule.days, cutoff=cutoff)
    if cutoff is None:
        return outcome
    delete_sql, dry_run_sql = STATEMENTS[rule.table]
    batch_size = settings.retention_batch_size
    started = time.monotonic()
    position: tuple[datetime, str] = (_FIRST_AT, _FIRST_ID)
    with progress(f"retention {rule.table}", unit="rows", log_every_seconds=settings.progress_log_seconds) as shown:
        while True:
            with postgres.translate_errors(f"retention of {rule.table}"):
                if dry_run:
                    async with pool.acquire() as connection, connection.transaction(readonly=True):
                        row = await connection.fetchrow(dry_run_sql, cutoff, *position, batch_size)
                else:  # one statement, one transaction
                    row = await pool.fetchrow(delete_sql, cutoff, *position, batch_size)
            outcome.batches += 1
            outcome.examined += row["examined"]
            outcome.deleted += row["deleted"]
            if row["deleted"] and not dry_run:
                metrics.retention_rows_deleted_total.labels(table=rule.table).inc(row["deleted"])
            shown.advance(row["examined"])
            if row["examined"] < batch_size:
                break
            position = (row["last_at"], row["last_id"])
    outcome.seconds = round(time.monotonic() - started, 3)
    log.info("retention_table_done", table=rule.table, dry_run=dry_run, cutoff=cutoff.isoformat(),
             deleted=outcome.deleted, kept=outcome.kept, batches=outcome.batches, seconds=outcome.seconds)
    return outcome


async def _record_run(pool: asyncpg.Pool, report: RetentionReport) -> None:
    metadata = {"kind": "retention", "deleted": report.counts(),
                "kept": {table: outcome.kept for table, outcome in report.tables.items()},
                "cutoffs": {table: outcome.cutoff.isoformat() if outcome.cutoff else None
                            for table, outcome in report.tables.items()},
                "batches": {table: outcome.batches for table, outcome in report.tables.items()},
                "batch_size": report.batch_size, "duration_seconds": report.duration_seconds}
    with postgres.translate_errors("record retention run"):
        await pool.execute(RECORD_RUN_SQL, report.run_id, report.started_at, report.deleted,
                           orjson.dumps(metadata).decode("utf-8"))
