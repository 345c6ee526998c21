"""Retention benchmark on the embedded stack: how large the database grows over months of history, and how much of
it the retention job (`cold_path/retention.py`) takes back, at what cost.

    .venv/bin/python bench/retention.py [--policies 30000] [--days 400] [--changed-per-day 0.02]
                                        [--rescore-all-every-days 90] [--letters-per-day 20]

In a database of its own (dropped afterwards):
1. The pipeline's own rows, written by the pipeline: `devstack.synthetic.make_catalogue(policies)` stored as the
   hot path stores it, then one real cold-path run scores it (a `processing_history` hot and cold row, a
   `quality_metrics` row and a status change in `audit_logs` per policy, the run's `pipeline_metadata` row). These
   are dated `--days` days back: the catalogue's first load.
2. The months since, day by day, from those rows as templates (same contents, so the same row widths), by SQL:
   each day `--changed-per-day` of the policies change (a hot row, a status change active to pending, a cold
   row, a score, a status change back: what the hot path and the hourly cold path write for a changed record);
   every `--rescore-all-every-days` days every policy is scored again (rules changed: a cold row and a score
   each); every hour a cold-path run and a sync run (`pipeline_metadata`, the sync's three target results) and a
   consistency check (`consistency_reports`, three targets), a repair report daily; `--letters-per-day` dead
   letters a day with a record as payload, 80% resolved, 20% exhausted (waiting for a person).
3. Sizes without retention: after VACUUM ANALYZE (as autovacuum leaves a table), then after VACUUM FULL (the
   files rewritten: what the tables hold). `pg_database_size`, `pg_total_relation_size` and rows of each table.
4. A dry run, then the retention job with the default RETENTION_DAYS_*: wall time and CPU seconds of this process
   and of PostgreSQL (server and backends, from /proc); then the next day's run (nothing new to delete).
5. Sizes with retention: right after the job (deleted rows' space is free inside the files, which do not
   shrink), after VACUUM (the space is reusable: a table stops growing), and after VACUUM FULL, to compare with
   the VACUUM FULL figures of 3: what a database kept by the daily job holds (its files stay near that, plus a
   day's churn and autovacuum's slack, since freed space is reused).

Programmes stay in the catalogue (ARCHIVE_AFTER_DAYS 3650): an archived programme is scored no more.
Not measured here: `text_embeddings` and the sync targets (no sync runs against real targets; an embedding is
kept per text, not per run), and `event_outbox` (empty once the relay has sent). The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from aegis_pipeline.cold_path.retention import apply_retention
from aegis_pipeline.cold_path.retention_rules import RetentionReport
from aegis_pipeline.cold_path.run import run_cold_path
from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.common.logging import configure_logging
from aegis_pipeline.devstack import stack
from aegis_pipeline.devstack.synthetic import make_catalogue
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings, load_core_settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.sync.consistency import ConsistencyReport, TargetCheck
from aegis_pipeline.sync.run import TargetResult

MEASURED = ("policies", "processing_history", "quality_metrics", "audit_logs", "pipeline_metadata",
            "consistency_reports", "dead_letters", "policy_fingerprints", "policy_duplicates", "collected_records",
            "event_outbox", "text_embeddings")
HISTORY = ("processing_history", "quality_metrics", "audit_logs", "pipeline_metadata", "consistency_reports",
           "dead_letters")

# --- 1. the pipeline's rows, dated back to the catalogue's first load ------------------------------------------

AGE_SQL = [  # $1: days
    "UPDATE processing_history SET processed_at = processed_at - make_interval(days => $1)",
    "UPDATE quality_metrics SET calculated_at = calculated_at - make_interval(days => $1)",
    'UPDATE audit_logs SET "timestamp" = "timestamp" - make_interval(days => $1)',
    "UPDATE pipeline_metadata SET started_at = started_at - make_interval(days => $1), "
    "completed_at = completed_at - make_interval(days => $1)",
]

# --- 2. the months since: $1 days, $2 changes per 10,000 policies a day, $3 the real run's id --------------------
# Day d (1 .. days-1) is `days - d` days ago. A policy changes on day d when a hash of (id, d) falls under $2.
CHANGED = "(hashtext(x.policy_id::text || ':' || d) & 2147483647) % 10000 < $2"
DAY = "now() - make_interval(days => $1 - d)"
HISTORY_SQL = [
    # The hot path stores each changed record: a hot row (the real hot rows are the only ones yet).
    f"""INSERT INTO processing_history (policy_id, processing_path, status, processing_time_ms, processed_at)
    SELECT x.policy_id, 'hot', 'pending_validation', x.processing_time_ms, {DAY} + interval '9 hours'
    FROM generate_series(1, $1 - 1) AS d, processing_history x
    WHERE x.processing_path = 'hot' AND x.run_id IS NULL AND {CHANGED}
      AND x.policy_id IN (SELECT id FROM policies WHERE status IN ('active', 'rejected')) AND $3::text IS NOT NULL""",  # noqa: S608 (constants; values bound)
    # The cold path scores it again within the hour: a cold row like the real run's.
    f"""INSERT INTO processing_history (policy_id, processing_path, status, quality_score, validation_errors,
                                    processing_time_ms, run_id, processed_at)
    SELECT x.policy_id, 'cold', x.status, x.quality_score, x.validation_errors, x.processing_time_ms,
           'cold-history-' || d, {DAY} + interval '9 hours 30 minutes'
    FROM generate_series(1, $1 - 1) AS d, processing_history x
    WHERE x.processing_path = 'cold' AND x.run_id = $3 AND x.status IN ('active', 'rejected') AND {CHANGED}""",  # noqa: S608
    f"""INSERT INTO quality_metrics (policy_id, total_score, completeness, accuracy, consistency, timeliness,
                                 calculation_method, run_id, calculated_at)
    SELECT x.policy_id, x.total_score, x.completeness, x.accuracy, x.consistency, x.timeliness,
           x.calculation_method, 'cold-history-' || d, {DAY} + interval '9 hours 30 minutes'
    FROM generate_series(1, $1 - 1) AS d, quality_metrics x WHERE x.run_id = $3 AND {CHANGED}""",  # noqa: S608
    # Its two status changes: the hot path's (back to pending_validation), then the cold path's (as the real one).
    f"""INSERT INTO audit_logs (entity_type, entity_id, action, actor, changes, metadata, "timestamp")
    SELECT 'policy', x.entity_id, 'status_changed', 'hot_path',
           jsonb_build_object('status', jsonb_build_object('from', x.changes->'status'->>'to',
                                                           'to', 'pending_validation')),
           jsonb_build_object('reason', 'content changed', 'version', 2), {DAY} + interval '9 hours'
    FROM generate_series(1, $1 - 1) AS d,
         (SELECT entity_id, entity_id::uuid AS policy_id, changes FROM audit_logs
          WHERE actor = 'cold_path:' || $3 AND action = 'status_changed'
            AND changes->'status'->>'to' IN ('active', 'rejected')) AS x
    WHERE {CHANGED}""",  # noqa: S608
    f"""INSERT INTO audit_logs (entity_type, entity_id, action, actor, changes, metadata, "timestamp")
    SELECT 'policy', x.entity_id, 'status_changed', 'cold_path:cold-history-' || d, x.changes, x.metadata,
           {DAY} + interval '9 hours 30 minutes'
    FROM generate_series(1, $1 - 1) AS d,
         (SELECT entity_id, entity_id::uuid AS policy_id, changes, metadata FROM audit_logs
          WHERE actor = 'cold_path:' || $3 AND action = 'status_changed'
            AND changes->'status'->>'to' IN ('active', 'rejected')) AS x
    WHERE {CHANGED}""",  # noqa: S608
]
# Every $2 days every policy is scored again (the rules changed): a cold row and a score each. $1 days, $3 run id.
RESCORE_SQL = [
    f"""INSERT INTO processing_history (policy_id, processing_path, status, quality_score, validation_errors,
                                    processing_time_ms, run_id, processed_at)
    SELECT x.policy_id, 'cold', x.status, x.quality_score, x.validation_errors, x.processing_time_ms,
           'rescore-' || d, {DAY} + interval '3 hours'
    FROM generate_series($2, $1 - 1, $2) AS d, processing_history x
    WHERE x.processing_path = 'cold' AND x.run_id = $3 AND x.status IN ('active', 'rejected')""",  # noqa: S608
    f"""INSERT INTO quality_metrics (policy_id, total_score, completeness, accuracy, consistency, timeliness,
                                 calculation_method, run_id, calculated_at)
    SELECT x.policy_id, x.total_score, x.completeness, x.accuracy, x.consistency, x.timeliness,
           x.calculation_method, 'rescore-' || d, {DAY} + interval '3 hours'
    FROM generate_series($2, $1 - 1, $2) AS d, quality_metrics x WHERE x.run_id = $3""",  # noqa: S608
]
# Hourly runs and checks, a daily repair. $1 days, $2 the real cold run's id, $3 a sync run's metadata, $4 a check
# report, $5 a repair report (as sync/run.py and sync/consistency.py store them).
HOURLY_SQL = [
    f"""INSERT INTO pipeline_metadata (pipeline_run_id, processing_path, started_at, completed_at, status,
                                   records_processed, records_failed, metadata)
    SELECT 'airflow:scheduled__' || d || '_' || h, 'cold', {DAY} + make_interval(hours => h),
           {DAY} + make_interval(hours => h, secs => 40), x.status, x.records_processed / 500, 0, x.metadata
    FROM generate_series(1, $1 - 1) AS d, generate_series(0, 23) AS h, pipeline_metadata x
    WHERE x.pipeline_run_id = $2 AND $3::jsonb IS NOT NULL AND $4::jsonb IS NOT NULL AND $5::jsonb IS NOT NULL""",  # noqa: S608
    f"""INSERT INTO pipeline_metadata (pipeline_run_id, processing_path, started_at, completed_at, status,
                                   records_processed, records_failed, metadata)
    SELECT 'airflow:scheduled__' || d || '_' || h, 'cold', {DAY} + make_interval(hours => h, mins => 2),
           {DAY} + make_interval(hours => h, mins => 3), 'completed', 25, 0, $3::jsonb
    FROM generate_series(1, $1 - 1) AS d, generate_series(0, 23) AS h
    WHERE $2::text IS NOT NULL AND $4::jsonb IS NOT NULL AND $5::jsonb IS NOT NULL""",  # noqa: S608
    f"""INSERT INTO consistency_reports (kind, consistent, report, created_at)
    SELECT 'check', true, $4::jsonb, {DAY} + make_interval(hours => h, mins => 4)
    FROM generate_series(1, $1 - 1) AS d, generate_series(0, 23) AS h
    WHERE $2::text IS NOT NULL AND $3::jsonb IS NOT NULL AND $5::jsonb IS NOT NULL""",  # noqa: S608
    f"""INSERT INTO consistency_reports (kind, consistent, report, created_at)
    SELECT 'repair', true, $5::jsonb, {DAY} + interval '1 hour 10 minutes'
    FROM generate_series(1, $1 - 1) AS d
    WHERE $2::text IS NOT NULL AND $3::jsonb IS NOT NULL AND $4::jsonb IS NOT NULL""",  # noqa: S608
]
# $1 days, $2 letters a day, $3 their error code: a record as payload (its raw data), 80% resolved (retried a
# day later), 20% exhausted.
LETTERS_SQL = f"""
INSERT INTO dead_letters (stage, source_system, record_key, error_code, error_message, error_details, payload,
                          retry_count, status, first_failed_at, last_failed_at, last_retry_at)
SELECT 'hot', p.source_system, p.source_system || ':' || p.external_id, $3, 'validation failed: title',
       '{{"field": "title"}}'::jsonb, p.raw_data, CASE WHEN n % 5 = 0 THEN 3 ELSE 1 END,
       CASE WHEN n % 5 = 0 THEN 'exhausted' ELSE 'resolved' END, {DAY}, {DAY}, {DAY} + interval '1 day'
FROM generate_series(1, $1 - 1) AS d CROSS JOIN generate_series(1, $2) AS n
CROSS JOIN LATERAL (SELECT source_system, external_id, raw_data FROM policies OFFSET (d * $2 + n) % 1000 LIMIT 1) p
"""  # noqa: S608

# --- 3, 5. sizes -------------------------------------------------------------------------------------------------
SIZES_SQL = """
SELECT c.relname AS name, pg_total_relation_size(c.oid) AS bytes FROM pg_class c
WHERE c.relkind = 'r' AND c.relname = ANY($1::text[])
"""


def log(message: str) -> None:
    print(message, flush=True)


def _bench_module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def sizes(settings: Settings) -> dict[str, Any]:
    async with postgres.connect(settings.postgres_dsn(), timeout_seconds=30) as connection:
        database = await connection.fetchval("SELECT pg_database_size(current_database())")
        tables = {row["name"]: row["bytes"] for row in await connection.fetch(SIZES_SQL, list(MEASURED))}
        rows = {}
        for table in MEASURED:
            rows[table] = await connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 (a constant name)
    return {"database_bytes": database, "table_bytes": tables, "rows": rows}


async def vacuum(settings: Settings, *, full: bool) -> None:
    async with postgres.connect(settings.postgres_dsn(), timeout_seconds=30) as connection:
        if full:
            await connection.execute("VACUUM (FULL, ANALYZE)", timeout=3600)
        else:
            await connection.execute("VACUUM (ANALYZE)", timeout=3600)


def megabytes(value: int) -> str:
    return f"{value / 1e6:,.1f} MB"


async def build_history(settings: Settings, arguments: argparse.Namespace, scale: Any) -> dict[str, Any]:
    catalogue = make_catalogue(arguments.policies)
    with scale.Meter(settings) as stored:
        await scale.store_catalogue(settings, catalogue)
    async with postgres.connect(settings.postgres_dsn()) as connection:
        await connection.execute("VACUUM (ANALYZE)")
    with scale.Meter(settings) as scored:
        report = await run_cold_path(settings)
    async with postgres.connect(settings.postgres_dsn()) as connection:
        await connection.execute("DELETE FROM event_outbox")  # what the relay does once the broker has them
    log(f"stored {len(catalogue)} in {stored.wall:.0f} s, scored in {scored.wall:.0f} s: {report.counts}")

    sync_run = {"kind": "sync", "results": [
        TargetResult(target=name, store=store, success=True, upserted=12, deleted=1, encoded=12,
                     duration_seconds=1.4).as_dict()
        for name, store in (("vectors", "milvus"), ("graph", "neo4j"), ("search", "elasticsearch"))]}
    check = ConsistencyReport(checked_at=datetime.now(UTC), targets={
        name: TargetCheck(target=name, store=store, duration_seconds=2.1)
        for name, store in (("vectors", "milvus"), ("graph", "neo4j"), ("search", "elasticsearch"))},
        duration_seconds=7.2).stored_form()
    repair = {"is_consistent": True, "inconsistencies": [], "fixes_applied": [], "checked_at": check["checked_at"],
              "repaired_at": check["checked_at"], "check_report_id": str(uuid.uuid4()), "run_id": "repair-x",
              "errors": {}, "results": {}}
    rate = round(arguments.changed_per_day * 10_000)
    with scale.Meter(settings) as generated:
        async with postgres.connect(settings.postgres_dsn(), timeout_seconds=30) as connection:
            for statement in AGE_SQL:
                await connection.execute(statement, arguments.days, timeout=3600)
            for statement in HISTORY_SQL:
                await connection.execute(statement, arguments.days, rate, report.run_id, timeout=3600)
            if arguments.rescore_all_every_days:
                for statement in RESCORE_SQL:
                    await connection.execute(statement, arguments.days, arguments.rescore_all_every_days,
                                             report.run_id, timeout=3600)
            for statement in HOURLY_SQL:
                await connection.execute(statement, arguments.days, report.run_id, orjson.dumps(sync_run).decode(),
                                         orjson.dumps(check).decode(), orjson.dumps(repair).decode(), timeout=3600)
            await connection.execute(LETTERS_SQL, arguments.days, arguments.letters_per_day,
                                     ErrorCode.VALIDATION_FAILED.value, timeout=3600)
    log(f"history of {arguments.days} days written in {generated.wall:.0f} s")
    return {"store_seconds": round(stored.wall, 1), "score_seconds": round(scored.wall, 1),
            "history_seconds": round(generated.wall, 1), "scored": report.counts}


async def measured(scale: Any, settings: Settings, *, dry_run: bool) -> tuple[RetentionReport, Any]:
    """A retention run, its wall time and CPU seconds. The job's connections close as it ends: CPU is read a moment
    later, once the server has reaped their backends (a backend's CPU moves to the server's children times then)."""
    with scale.Meter(settings) as meter:
        started = time.perf_counter()
        report = await apply_retention(settings, dry_run=dry_run)
        wall = time.perf_counter() - started
        await asyncio.sleep(1.0)
    meter.wall = wall
    return report, meter


def print_sizes(title: str, figures: dict[str, Any], baseline: dict[str, Any] | None = None) -> None:
    log(f"\n{title}: database {megabytes(figures['database_bytes'])}"
        + (f" (without retention {megabytes(baseline['database_bytes'])})" if baseline else ""))
    for table in MEASURED:
        line = f"  {table:<20} {figures['rows'][table]:>10,} rows {megabytes(figures['table_bytes'].get(table, 0)):>12}"
        if baseline:
            line += (f"   (without: {baseline['rows'][table]:>10,} rows "
                     f"{megabytes(baseline['table_bytes'].get(table, 0)):>12})")
        log(line)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=30_000)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--changed-per-day", type=float, default=0.02)
    parser.add_argument("--rescore-all-every-days", type=int, default=90)
    parser.add_argument("--letters-per-day", type=int, default=20)
    parser.add_argument("--keep-database", action="store_true", help="leave the scratch database (its name printed)")
    arguments = parser.parse_args()
    configure_logging(os.environ.get("LOG_LEVEL") or ("WARNING" if sys.stderr.isatty() else "INFO"),
                      json_lines=False)
    scale = _bench_module("scale")
    base = await asyncio.to_thread(stack.up, load_core_settings())
    database = f"bench_retention_{uuid.uuid4().hex[:8]}"
    await postgres.ensure_database(base.postgres_dsn(database="postgres"), database)
    # Programmes stay in the catalogue (ARCHIVE_AFTER_DAYS at its maximum): the synthetic catalogue spans 2014-2027,
    # and an archived programme is scored no more, so it would write no history.
    settings = base.model_copy(update={"postgres_db": database, **(
        {"archive_after_days": 3650} if "archive_after_days" in Settings.model_fields else {})})
    log(f"database {database}: {arguments.policies} policies, {arguments.days} days of history, "
        f"{arguments.changed_per_day:.1%} changed a day, everything rescored every "
        f"{arguments.rescore_all_every_days} days, {arguments.letters_per_day} dead letters a day")
    try:
        await asyncio.to_thread(upgrade_to_head, settings)
        built = await build_history(settings, arguments, scale)
        await vacuum(settings, full=False)
        without = await sizes(settings)
        print_sizes("without retention, as (auto)vacuum leaves it", without)
        await vacuum(settings, full=True)
        without_full = await sizes(settings)
        print_sizes("without retention, after VACUUM FULL (what the tables hold)", without_full)

        dry, dry_meter = await measured(scale, settings, dry_run=True)
        report, meter = await measured(scale, settings, dry_run=False)
        after_job = await sizes(settings)
        next_day, next_day_meter = await measured(scale, settings, dry_run=False)
        await vacuum(settings, full=False)
        after_vacuum = await sizes(settings)
        await vacuum(settings, full=True)
        after_full = await sizes(settings)

        log(f"\nretention job (batches of {report.batch_size}): deleted {report.deleted:,} rows in {meter.wall:.1f} s "
            f"wall; CPU {meter.pipeline_cpu:.1f} s this process, "
            f"{meter.postgres_cpu if meter.postgres_cpu is not None else float('nan'):.1f} s PostgreSQL; "
            f"dry run {dry_meter.wall:.1f} s (would delete {dry.deleted:,}); next day's run "
            f"{next_day_meter.wall:.2f} s (deleted {next_day.deleted})")
        for table, outcome in report.tables.items():
            log(f"  {table:<20} > {outcome.days:>3} days: deleted {outcome.deleted:>9,}, kept {outcome.kept:>7,} "
                f"that must stay, {outcome.batches:>4} batches, {outcome.seconds:>6.1f} s")
        print_sizes("right after the job (files keep their size)", after_job, without)
        print_sizes("after VACUUM (space reusable)", after_vacuum, without)
        print_sizes("with retention, after VACUUM FULL (what the tables hold)", after_full, without_full)
        history_without = sum(without_full["table_bytes"].get(table, 0) for table in HISTORY)
        history_with = sum(after_full["table_bytes"].get(table, 0) for table in HISTORY)
        log(f"\nhistory tables: {megabytes(history_without)} without retention, {megabytes(history_with)} with "
            f"({history_with / history_without:.0%}); database {megabytes(without_full['database_bytes'])} -> "
            f"{megabytes(after_full['database_bytes'])} (both after VACUUM FULL)")
        print(json.dumps({
            "policies": arguments.policies, "days": arguments.days, "changed_per_day": arguments.changed_per_day,
            "rescore_all_every_days": arguments.rescore_all_every_days, "letters_per_day": arguments.letters_per_day,
            "build": built,
            "retention": {"deleted": report.counts(), "kept": {t: o.kept for t, o in report.tables.items()},
                          "batches": {t: o.batches for t, o in report.tables.items()},
                          "seconds_per_table": {t: o.seconds for t, o in report.tables.items()},
                          "wall_seconds": round(meter.wall, 2), "pipeline_cpu_seconds": round(meter.pipeline_cpu, 2),
                          "postgres_cpu_seconds": None if meter.postgres_cpu is None else round(meter.postgres_cpu, 2),
                          "dry_run_wall_seconds": round(dry_meter.wall, 2),
                          "next_day_wall_seconds": round(next_day_meter.wall, 3), "next_day_deleted": next_day.deleted},
            "without_retention": without, "without_retention_vacuum_full": without_full, "after_job": after_job,
            "after_vacuum": after_vacuum,
            "after_vacuum_full": after_full,
            "history_bytes": {"without_retention": history_without, "with_retention": history_with},
        }))
    finally:
        if arguments.keep_database:
            log(f"kept database {database}")
        else:
            await postgres.drop_database(base.postgres_dsn(database="postgres"), database)


if __name__ == "__main__":
    asyncio.run(main())
