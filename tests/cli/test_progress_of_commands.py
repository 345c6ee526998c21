"""Wired commands show their progress off a terminal: `aegis-pipeline sync run`, `sync rebuild` and `consistency
check`, each in its own process on the embedded engines with stderr a pipe (as under Airflow or CI), write
`progress` log lines (JSON) per target, at most every PROGRESS_LOG_SECONDS and one at the end, and leave stdout to
their own output.

The graph and search targets only: they need no embeddings (the vectors target's progress is the same code)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

pytestmark = pytest.mark.integration

SOURCE = "progress-test"
ACTIVE, REJECTED = 8, 2  # the sync upserts the active ones and removes the rejected ones: 10 records to go through
TARGETS = ("graph", "search")


@pytest.fixture
async def seeded_settings(stack: Settings, tmp_path: Path) -> Settings:
    """The stack's settings with a database (migrated, 10 policies), aliases and graph file of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    database = f"progress_{suffix}"
    await postgres.ensure_database(stack.postgres_dsn(database="postgres"), database)
    settings = stack.model_copy(update={"postgres_db": database, "milvus_collection": f"progress_test_{suffix}",
                                        "elasticsearch_index": f"progress-test-{suffix}",
                                        "graph_uri": str(tmp_path / "progress.lbug")})
    await asyncio.to_thread(upgrade_to_head, settings)
    pool = await postgres.create_pool(settings)
    try:
        policies = [normalize_record(make_record(i, source=SOURCE)) for i in range(ACTIVE + REJECTED)]
        await PolicyStore(pool).store_batch(policies, lambda stored: [])
        await pool.execute("UPDATE policies SET status = CASE WHEN external_id = ANY($1::text[]) THEN 'active' "
                           "ELSE 'rejected' END, quality_score = 0.9",
                           [policy.external_id for policy in policies[:ACTIVE]])
    finally:
        await pool.close()
    return settings


def run_cli(settings: Settings, *arguments: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """`aegis-pipeline <arguments>` in its own process (stdout and stderr pipes, not terminals), and its `progress`
    log lines."""
    env = {**os.environ, "POSTGRES_HOST": settings.postgres_host, "POSTGRES_PORT": str(settings.postgres_port),
           "POSTGRES_USER": settings.postgres_user, "POSTGRES_DB": settings.postgres_db,
           "GRAPH_URI": settings.graph_uri, "MILVUS_COLLECTION": settings.milvus_collection,
           "ELASTICSEARCH_INDEX": settings.elasticsearch_index, "LOG_LEVEL": "INFO", "LOG_JSON": "true",
           "SYNC_BATCH_SIZE": "3",  # several batches, so several advances per target
           "PROGRESS_LOG_SECONDS": "0.001"}  # every advance after the first millisecond may log
    pipeline = str(Path(sys.executable).parent / "aegis-pipeline")
    result = subprocess.run([pipeline, *arguments], capture_output=True, text=True, env=env, timeout=180)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return result, [line for line in lines if line["event"] == "progress"]


def by_task(lines: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["task"] == task]


def test_sync_run_rebuild_and_consistency_check_log_their_progress_off_a_terminal(seeded_settings: Settings) -> None:
    targets = [argument for name in TARGETS for argument in ("--target", name)]
    result, lines = run_cli(seeded_settings, "sync", "run", *targets)
    assert result.returncode == 0, result.stderr
    assert "progress" not in result.stdout  # stdout stays the command's own output
    for name in TARGETS:
        *during, final = by_task(lines, f"sync {name}")
        assert {key: final[key] for key in ("done", "total", "unit", "eta_seconds", "final")} == {
            "done": ACTIVE + REJECTED, "total": ACTIVE + REJECTED, "unit": "records", "eta_seconds": 0.0,
            "final": True}
        assert final["rate_per_second"] > 0 and final["elapsed_seconds"] > 0
        assert during and all(not line["final"] and 0 < line["done"] <= line["total"] for line in during)

    result, lines = run_cli(seeded_settings, "sync", "rebuild", "--target", "search")
    assert result.returncode == 0, result.stderr
    final = by_task(lines, "sync rebuild search")[-1]
    assert (final["done"], final["total"], final["final"]) == (ACTIVE, ACTIVE, True)  # active policies only

    result, lines = run_cli(seeded_settings, "consistency", "check", "--json", *targets)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["consistent"] is True  # --json output untouched by progress
    for name in TARGETS:
        final = by_task(lines, f"consistency check {name}")[-1]
        assert (final["done"], final["total"], final["unit"], final["final"]) == (1024, 1024, "buckets", True)
