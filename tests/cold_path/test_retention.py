"""Retention on the real PostgreSQL, with history the pipeline itself wrote: twelve policies stored by the hot path
and scored by the cold path 200 days ago, six of them changed and scored again 100 days ago, six (three of those
and three others) today; consistency reports, dead letters and sync runs of known ages beside them.

A run with batches of 3 deletes exactly the rows past their table's retention that need not stay, in several
batches each; keeps every policy's latest score, latest row per path and latest status change, the open dead
letters and the one resolved lately, the latest report per kind and target, the latest run of each kind; leaves
every recent row; counts per table in its report, its `pipeline_metadata` row and its metrics. A dry run before it
counts the same and changes nothing; a second run finds nothing to delete. The command prints per table (or
JSON) and pushes its metrics as job `aegis-retention`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from aegis_pipeline.cli.main import main
from aegis_pipeline.cold_path.retention import apply_retention
from aegis_pipeline.cold_path.retention_rules import TABLES
from aegis_pipeline.cold_path.run import run_cold_path
from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.domain.records import RawPolicyData
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.stores.dead_letters import DeadLetter, DeadLetterQueue

if TYPE_CHECKING:
    from conftest import FakePushgateway

pytestmark = pytest.mark.integration

SOURCE = "retention"
TODAY = datetime.now(UTC).date()
RETENTION = {"retention_days_audit_logs": 90, "retention_days_processing_history": 90,
             "retention_days_quality_metrics": 90, "retention_days_consistency_reports": 30,
             "retention_days_dead_letters": 30, "retention_days_pipeline_metadata": 90, "retention_batch_size": 3}

POLICIES = range(12)
CHANGED_100_DAYS_AGO = set(range(0, 6))
CHANGED_TODAY = set(range(3, 9))
# Policies whose latest score, history rows and status change are older than the 90 days: they stay.
LATEST_IS_OLD = len(set(POLICIES) - CHANGED_TODAY)  # 6: changed 100 days ago only (3), never changed (3)
OLD_SCORINGS = len(POLICIES) + len(CHANGED_100_DAYS_AGO)  # 18 scorings 200 and 100 days ago

EXPECTED_DELETED = {
    # A score per scoring; the latest of each policy stays.
    "quality_metrics": OLD_SCORINGS - LATEST_IS_OLD,                      # 12
    # A hot row (stored) and a cold row (scored) per scoring; the latest of each policy per path stays.
    "processing_history": 2 * (OLD_SCORINGS - LATEST_IS_OLD),             # 24
    # Status changes: the cold path's at each scoring, the hot path's at each change of a scored record (100 days
    # ago: 6); the latest of each policy stays. And one old entry that is no status change (goes).
    "audit_logs": OLD_SCORINGS + len(CHANGED_100_DAYS_AGO) - LATEST_IS_OLD + 1,  # 19
    "consistency_reports": 3,  # reports c1, c2, r1 (seed_reports)
    "dead_letters": 2,         # letters "resolved-long-ago" and "purged" (seed_letters)
    "pipeline_metadata": 3,    # the cold runs of 200 and 100 days ago, the sync run of 150 days ago
}
EXPECTED_KEPT = {  # past the retention, and kept because they must stay
    "quality_metrics": LATEST_IS_OLD, "processing_history": 2 * LATEST_IS_OLD, "audit_logs": LATEST_IS_OLD,
    "consistency_reports": 3,  # c3 (latest check naming search), r2 (latest repair naming vectors), r3 (latest repair)
    "dead_letters": 1,         # "resolved-lately": failed long ago, retried (and resolved) 5 days ago
    "pipeline_metadata": 1,    # the sync run of 120 days ago: the latest sync run
}
# (label, kind, days ago, targets the report names) as sync/consistency.py stores them: a check's `targets`, a
# repair's `results`.
REPORTS = [("c1", "check", 60, ("vectors", "graph", "search")), ("c2", "check", 50, ("vectors", "graph", "search")),
           ("c3", "check", 40, ("search",)), ("c4", "check", 1, ("vectors", "graph")),
           ("r1", "repair", 80, ("vectors",)), ("r2", "repair", 70, ("vectors",)), ("r3", "repair", 45, ())]
# record key: (status, days since the last failure, days since the last retry)
LETTERS = {"resolved-long-ago": ("resolved", 100, 95), "resolved-lately": ("resolved", 100, 5),
           "pending": ("pending", 100, None), "exhausted": ("exhausted", 100, 99),
           "resolved-recent": ("resolved", 5, 4), "purged": ("purged", 60, None)}


def record(index: int, revision: int) -> RawPolicyData:
    """Policy `index` at `revision`, open for application (so no lifecycle step archives it)."""
    return make_record(index, source=SOURCE, revision=revision).model_copy(update={
        "application_start_date": TODAY - timedelta(days=5), "application_end_date": TODAY + timedelta(days=40)})


async def fetch(settings: Settings, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return [dict(row) for row in await connection.fetch(sql, *args)]


async def store_and_score(settings: Settings, records: Iterable[RawPolicyData]) -> None:
    """As the pipeline does it: the hot path stores the records, then a cold-path run scores them."""
    pool = await postgres.create_pool(settings)
    try:
        await PolicyStore(pool).store_batch([normalize_record(item) for item in records], lambda stored: [])
    finally:
        await pool.close()
    await run_cold_path(settings, source=SOURCE)


AGE_SQL = [  # what the pipeline wrote within the last hour, moved `$1` days into the past
    "UPDATE processing_history SET processed_at = processed_at - make_interval(days => $1) "
    "WHERE processed_at > now() - interval '1 hour'",
    "UPDATE quality_metrics SET calculated_at = calculated_at - make_interval(days => $1) "
    "WHERE calculated_at > now() - interval '1 hour'",
    'UPDATE audit_logs SET "timestamp" = "timestamp" - make_interval(days => $1) '
    "WHERE \"timestamp\" > now() - interval '1 hour'",
    "UPDATE pipeline_metadata SET started_at = started_at - make_interval(days => $1), "
    "completed_at = completed_at - make_interval(days => $1) WHERE started_at > now() - interval '1 hour'",
    "UPDATE policies SET scored_at = scored_at - make_interval(days => $1) WHERE scored_at > now() - interval '1 hour'",
]


async def age(settings: Settings, days: int) -> None:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        for statement in AGE_SQL:
            await connection.execute(statement, days)


async def seed_reports(settings: Settings) -> None:
    """REPORTS as stored consistency reports."""
    async with postgres.connect(settings.postgres_dsn()) as connection:
        for _label, kind, days, targets in REPORTS:
            counts = {name: {"missing": 0, "stale": 0, "orphaned": 0} for name in targets}
            report = ({"is_consistent": True, "inconsistencies": [], "fixes_applied": [], "targets": counts}
                      if kind == "check" else
                      {"is_consistent": True, "inconsistencies": [], "fixes_applied": [], "errors": {},
                       "results": {name: {"target": name, "success": True} for name in targets}})
            await connection.execute(
                "INSERT INTO consistency_reports (kind, consistent, report, created_at) "
                "VALUES ($1, true, $2::jsonb, now() - make_interval(days => $3))",
                kind, orjson.dumps(report).decode(), days)


async def seed_letters(settings: Settings) -> None:
    """LETTERS, sent through the dead-letter queue, then given their state and ages."""
    pool = await postgres.create_pool(settings)
    try:
        await DeadLetterQueue(pool, None, settings.kafka_topic_dlq).send([
            DeadLetter(stage="hot", error_code=ErrorCode.VALIDATION_FAILED, error_message="invalid", record_key=key,
                       payload={"title": key}) for key in LETTERS])
        for key, (status, failed_days, retried_days) in LETTERS.items():
            await pool.execute(
                "UPDATE dead_letters SET status = $2, last_failed_at = now() - make_interval(days => $3), "
                "first_failed_at = now() - make_interval(days => $3), "
                "last_retry_at = now() - make_interval(days => $4::int) WHERE record_key = $1",
                key, status, failed_days, retried_days)
    finally:
        await pool.close()


async def seed_other_rows(settings: Settings) -> None:
    """Two sync runs (150 and 120 days ago), and audit entries that are no status change (200 and 5 days ago)."""
    async with postgres.connect(settings.postgres_dsn()) as connection:
        for days in (150, 120):
            await connection.execute(
                "INSERT INTO pipeline_metadata (pipeline_run_id, processing_path, started_at, completed_at, status, "
                "metadata) VALUES ($1, 'cold', now() - make_interval(days => $2), "
                "now() - make_interval(days => $2), 'completed', '{\"kind\": \"sync\", \"results\": []}'::jsonb)",
                f"sync-{days}", days)
        for index, days in ((9, 200), (10, 5)):
            await connection.execute(
                "INSERT INTO audit_logs (entity_type, entity_id, action, actor, changes, metadata, \"timestamp\") "
                "SELECT 'policy', id::text, 'duplicate_linked', 'test', '{\"canonical_id\": \"x\"}'::jsonb, "
                "'{}'::jsonb, now() - make_interval(days => $2) FROM policies WHERE external_id = $1",
                f"PBLN_{index:012d}", days)


@pytest.fixture
async def history(stack: Settings) -> AsyncIterator[Settings]:
    """A database of this test's own, with the history of the module's docstring."""
    database = f"retention_{uuid.uuid4().hex[:8]}"
    server = stack.postgres_dsn(database="postgres")
    await postgres.ensure_database(server, database)
    settings = stack.model_copy(update={"postgres_db": database, **RETENTION})
    try:
        await asyncio.to_thread(upgrade_to_head, settings)
        await store_and_score(settings, [record(index, 0) for index in POLICIES])
        await age(settings, 200)
        await store_and_score(settings, [record(index, 1) for index in sorted(CHANGED_100_DAYS_AGO)])
        await age(settings, 100)
        await store_and_score(settings, [record(index, 2) for index in sorted(CHANGED_TODAY)])
        await seed_reports(settings)
        await seed_letters(settings)
        await seed_other_rows(settings)
        yield settings
    finally:
        await postgres.drop_database(server, database)


async def counts(settings: Settings) -> dict[str, int]:
    rows = await fetch(settings, " UNION ALL ".join(f"SELECT '{table}' AS t, count(*) AS n FROM {table}"  # noqa: S608
                                                    for table in TABLES))
    return {row["t"]: row["n"] for row in rows}


LATEST_SQL = {  # what must stay, whatever its age (besides the explicit seeds)
    "quality_metrics": "SELECT DISTINCT ON (policy_id) id::text FROM quality_metrics "
                       "ORDER BY policy_id, calculated_at DESC, id DESC",
    "processing_history": "SELECT DISTINCT ON (policy_id, processing_path) id::text FROM processing_history "
                          "ORDER BY policy_id, processing_path, processed_at DESC, id DESC",
    "audit_logs": "SELECT DISTINCT ON (entity_id) id::text FROM audit_logs WHERE changes ? 'status' "
                  "ORDER BY entity_id, \"timestamp\" DESC, id DESC",
}
RECENT_SQL = {  # rows younger than their retention
    "quality_metrics": "SELECT id::text FROM quality_metrics WHERE calculated_at > now() - interval '89 days'",
    "processing_history": "SELECT id::text FROM processing_history WHERE processed_at > now() - interval '89 days'",
    "audit_logs": "SELECT id::text FROM audit_logs WHERE \"timestamp\" > now() - interval '89 days'",
}


async def id_sets(settings: Settings, statements: dict[str, str]) -> dict[str, set[str]]:
    return {table: {row["id"] for row in await fetch(settings, sql)} for table, sql in statements.items()}


def deleted_metric() -> dict[str, float]:
    return {table: REGISTRY.get_sample_value("retention_rows_deleted_total", {"table": table}) or 0.0
            for table in TABLES}


async def test_old_rows_go_in_batches_and_what_must_stay_stays(history: Settings) -> None:
    before, latest, recent = await counts(history), await id_sets(history, LATEST_SQL), await id_sets(history,
                                                                                                    RECENT_SQL)
    assert before["quality_metrics"] == len(POLICIES) + len(CHANGED_100_DAYS_AGO) + len(CHANGED_TODAY)  # 24
    metric_before = deleted_metric()

    dry = await apply_retention(history, dry_run=True)

    assert dry.counts() == EXPECTED_DELETED  # what it would delete
    assert await counts(history) == before   # and nothing is deleted, recorded or counted
    assert deleted_metric() == metric_before

    report = await apply_retention(history)

    assert report.counts() == EXPECTED_DELETED
    assert {table: outcome.kept for table, outcome in report.tables.items()} == EXPECTED_KEPT
    # Batches of 3 rows past the cutoff, the keyset moving on past the rows that stay: every table took several.
    assert {table: outcome.batches for table, outcome in report.tables.items()} == {
        table: (EXPECTED_DELETED[table] + EXPECTED_KEPT[table]) // 3 + 1 for table in TABLES}
    after = await counts(history)
    assert {table: before[table] - after[table] for table in TABLES} == {
        **EXPECTED_DELETED, "pipeline_metadata": EXPECTED_DELETED["pipeline_metadata"] - 1}  # + this run's row
    # Every policy's latest score, latest row per path and latest status change stayed, however old; and every
    # row younger than its table's retention.
    assert {table: ids <= (await id_sets(history, {table: LATEST_SQL[table]}))[table]
            for table, ids in latest.items()} == dict.fromkeys(LATEST_SQL, True)
    assert await id_sets(history, RECENT_SQL) == recent
    never_changed = await fetch(history, "SELECT count(*) AS n FROM quality_metrics m JOIN policies p "
                                         "ON p.id = m.policy_id WHERE p.external_id = $1", "PBLN_000000000010")
    assert never_changed == [{"n": 1}]  # scored once, 200 days ago: its only score stays
    reports = await fetch(history, "SELECT kind, round(extract(epoch FROM now() - created_at) / 86400)::int AS days "
                                   "FROM consistency_reports ORDER BY created_at")
    assert [(row["kind"], row["days"]) for row in reports] == [  # r2, r3, c3, c4: c1, c2 and r1 went
        ("repair", 70), ("repair", 45), ("check", 40), ("check", 1)]
    letters = await fetch(history, "SELECT record_key FROM dead_letters ORDER BY record_key")
    assert [row["record_key"] for row in letters] == ["exhausted", "pending", "resolved-lately", "resolved-recent"]
    runs = await fetch(history, "SELECT pipeline_run_id, coalesce(metadata->>'kind', 'cold') AS kind "
                                "FROM pipeline_metadata ORDER BY started_at")
    assert [row["kind"] for row in runs] == ["sync", "cold", "retention"]
    assert runs[0]["pipeline_run_id"] == "sync-120"

    # The run's counts: its pipeline_metadata row and its metrics.
    (recorded,) = await fetch(history, "SELECT pipeline_run_id, status, records_processed, metadata::text "
                                       "FROM pipeline_metadata WHERE metadata->>'kind' = 'retention'")
    metadata = json.loads(recorded["metadata"])
    assert (recorded["pipeline_run_id"], recorded["status"], recorded["records_processed"]) == (
        report.run_id, "completed", sum(EXPECTED_DELETED.values()))
    assert (metadata["deleted"], metadata["kept"], metadata["batch_size"]) == (EXPECTED_DELETED, EXPECTED_KEPT, 3)
    assert {table: deleted_metric()[table] - metric_before[table] for table in TABLES} == EXPECTED_DELETED
    assert {table: REGISTRY.get_sample_value("retention_old_rows_kept", {"table": table})
            for table in TABLES} == EXPECTED_KEPT

    again = await apply_retention(history)

    assert again.deleted == 0
    assert {table: outcome.kept for table, outcome in again.tables.items()} == EXPECTED_KEPT


async def seed_two_scores(settings: Settings) -> None:
    """A database of its own: one policy stored by the hot path, scored 200 and 150 days ago."""
    await postgres.ensure_database(settings.postgres_dsn(database="postgres"), settings.postgres_db)
    await asyncio.to_thread(upgrade_to_head, settings)
    pool = await postgres.create_pool(settings)
    try:
        (stored,) = (await PolicyStore(pool).store_batch([normalize_record(record(0, 0))], lambda stored: [])).stored
        for days in (200, 150):
            await pool.execute("INSERT INTO quality_metrics (policy_id, total_score, calculated_at) "
                               "VALUES ($1, 0.9, now() - make_interval(days => $2))", stored.policy_id, days)
    finally:
        await pool.close()


def test_the_command_prints_per_table_and_pushes_its_metrics(stack: Settings, pushgateway: FakePushgateway,
                                                             restore_logging: None) -> None:
    """With a retention of 30 days the older of the two scores goes."""
    settings = stack.model_copy(update={"postgres_db": f"retention_cli_{uuid.uuid4().hex[:8]}"})
    try:
        asyncio.run(seed_two_scores(settings))
        env = {"POSTGRES_HOST": settings.postgres_host, "POSTGRES_PORT": str(settings.postgres_port),
               "POSTGRES_USER": settings.postgres_user, "POSTGRES_DB": settings.postgres_db,
               "RETENTION_DAYS_QUALITY_METRICS": "30", "PROMETHEUS_PUSHGATEWAY_URL": pushgateway.url}
        already = deleted_metric()["quality_metrics"]

        dry = CliRunner().invoke(main, ["retention", "--dry-run", "--json"], env=env)
        real = CliRunner().invoke(main, ["retention", "--yes"], env=env)

        assert dry.exit_code == 0, dry.output
        summary = json.loads(dry.stdout)
        assert (summary["dry_run"], summary["deleted"]) == (True, 1)
        assert summary["tables"]["quality_metrics"] | {"cutoff": None, "seconds": None} == {
            "days": 30, "cutoff": None, "deleted": 1, "kept": 1, "batches": 1, "seconds": None}
        assert real.exit_code == 0, real.output
        assert "quality_metrics      older than 30 days: deleted 1, kept 1 that must stay, 1 batches" in real.stdout
        remaining = asyncio.run(fetch(settings, "SELECT (now() - calculated_at) > interval '160 days' AS older "
                                                "FROM quality_metrics"))
        assert remaining == [{"older": False}]  # the latest (150 days) stayed
        assert [(push.method, push.job) for push in pushgateway.pushes] == [("PUT", "aegis-retention")] * 2
        pushed = {sample.labels["table"]: sample.value
                  for family in text_string_to_metric_families(pushgateway.pushes[1].body)
                  for sample in family.samples if sample.name == "retention_rows_deleted_total"}
        assert pushed["quality_metrics"] == already + 1 and set(pushed) == set(TABLES)
    finally:
        asyncio.run(postgres.drop_database(stack.postgres_dsn(database="postgres"), settings.postgres_db))
