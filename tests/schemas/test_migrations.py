"""Migrations from an empty database, and what the schema enforces."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from aegis_pipeline.schemas.migrations import current_revision, downgrade_to, head_revision, upgrade_to_head
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

pytestmark = pytest.mark.integration

TABLES = {"policies", "pipeline_metadata", "processing_history", "quality_metrics", "audit_logs", "dead_letters",
          "collection_checkpoints", "collected_records", "event_outbox", "policy_duplicates",
          "policy_fingerprints", "sync_watermarks", "text_embeddings", "consistency_reports",
          "broker_sentinels", "scoring_rules_versions"}


@pytest.fixture
async def empty_database(stack: Settings) -> Settings:
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    server_dsn = stack.postgres_dsn(database="postgres")
    await postgres.ensure_database(server_dsn, name)
    return stack.model_copy(update={"postgres_db": name})


async def table_names(settings: Settings) -> set[str]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


async def test_upgrade_from_empty_then_down_and_up_again(empty_database: Settings) -> None:
    assert await table_names(empty_database) == set()
    await asyncio.to_thread(upgrade_to_head, empty_database)
    assert await table_names(empty_database) == TABLES | {"alembic_version"}
    assert await asyncio.to_thread(current_revision, empty_database) == head_revision()

    await asyncio.to_thread(upgrade_to_head, empty_database)  # idempotent
    await asyncio.to_thread(downgrade_to, empty_database, "base")
    assert await table_names(empty_database) == {"alembic_version"}
    await asyncio.to_thread(upgrade_to_head, empty_database)
    assert await table_names(empty_database) == TABLES | {"alembic_version"}


async def test_indexes_are_real_postgres_indexes(stack: Settings) -> None:
    async with postgres.connect(stack.postgres_dsn()) as connection:
        names = {row["indexname"] for row in await connection.fetch("SELECT indexname FROM pg_indexes")}
    assert {"idx_policies_status", "idx_pipeline_metadata_run_id", "idx_processing_history_policy_id",
            "idx_quality_metrics_policy_id", "idx_audit_logs_entity_id", "idx_dead_letters_status"} <= names


async def test_schema_refuses_what_the_design_forbids(stack: Settings) -> None:
    insert = """
        INSERT INTO policies (source_system, external_id, title, content, issuing_organization, content_hash,
                              status)
        VALUES ($1, $2, '청년 창업 지원', '내용', '중소벤처기업부', repeat('a', 64), $3)
    """
    external_id = uuid.uuid4().hex
    async with postgres.connect(stack.postgres_dsn()) as connection:
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(insert, "bizinfo", external_id, "published")  # not one of the 4 statuses
        await connection.execute(insert, "bizinfo", external_id, "pending_validation")
        with pytest.raises(asyncpg.UniqueViolationError):  # one record per (source, external id)
            await connection.execute(insert, "bizinfo", external_id, "pending_validation")
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(
                "INSERT INTO dead_letters (stage, error_code, error_message) VALUES ('hot', 'E42', 'x')"
            )
        await connection.execute("DELETE FROM policies WHERE external_id = $1", external_id)
