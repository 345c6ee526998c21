"""The daily `policy_retention` DAG with `dag.test()` on the embedded stack: a dry run deletes nothing, a run deletes
what is past its retention and keeps the latest score, records its run under the DAG run's id, pushes its metrics
as the `retention` command's and logs with the task's context; its DAG file imports fast and does no I/O."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_dags import IMPORT_SCRIPT, REPO, fetch, pushed_samples, run_dags

from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

if TYPE_CHECKING:
    from conftest import FakePushgateway

pytestmark = pytest.mark.integration


async def test_the_daily_dag_deletes_past_retention_and_records_and_pushes_its_run(
        stack: Settings, airflow_env: dict[str, str], pushgateway: FakePushgateway) -> None:
    database = f"retention_dag_{uuid.uuid4().hex[:8]}"
    server = stack.postgres_dsn(database="postgres")
    await postgres.ensure_database(server, database)
    settings = stack.model_copy(update={"postgres_db": database})
    try:
        await asyncio.to_thread(upgrade_to_head, settings)
        pool = await postgres.create_pool(settings)
        try:  # one policy, scored 200 and 150 days ago (QUALITY_METRICS retention 90 days by default)
            (stored,) = (await PolicyStore(pool).store_batch([normalize_record(make_record(0, source="dag"))],
                                                             lambda stored: [])).stored
            for days in (200, 150):
                await pool.execute("INSERT INTO quality_metrics (policy_id, total_score, calculated_at) "
                                   "VALUES ($1, 0.9, now() - make_interval(days => $2))", stored.policy_id, days)
        finally:
            await pool.close()
        env = {**airflow_env, "POSTGRES_HOST": settings.postgres_host, "POSTGRES_PORT": str(settings.postgres_port),
               "POSTGRES_USER": settings.postgres_user, "POSTGRES_DB": database,
               "PROMETHEUS_PUSHGATEWAY_URL": pushgateway.url, "LOG_JSON": "true"}

        output = await run_dags(env, REPO / "dags", [{"dag_id": "policy_retention", "conf": {"dry_run": True}},
                                                     {"dag_id": "policy_retention"}])

        assert output.errors == {}
        dry, real = output.runs
        for run in (dry, real):
            assert run["tasks"] == {"apply_retention": "success"}, output.stdout[-3000:]
        scores = await fetch(settings, "SELECT round(extract(epoch FROM now() - calculated_at) / 86400)::int AS days "
                                       "FROM quality_metrics")
        assert scores == [{"days": 150}]  # the older went, the latest stayed
        (recorded,) = await fetch(settings, "SELECT pipeline_run_id, metadata::text FROM pipeline_metadata "
                                            "WHERE metadata->>'kind' = 'retention'")
        assert recorded["pipeline_run_id"] == f"airflow:{real['dag_run_id']}"  # the dry run recorded nothing
        assert json.loads(recorded["metadata"])["deleted"]["quality_metrics"] == 1
        assert [push.job for push in pushgateway.pushes] == ["aegis-retention"] * 2
        assert pushed_samples(pushgateway.pushes[0].body, "retention_rows_deleted_total") == []  # a dry run: none
        deleted = {sample.labels["table"]: sample.value
                   for family in text_string_to_metric_families(pushgateway.pushes[1].body)
                   for sample in family.samples if sample.name == "retention_rows_deleted_total"}
        assert deleted == {"audit_logs": 0, "processing_history": 0, "quality_metrics": 1, "consistency_reports": 0,
                           "dead_letters": 0, "pipeline_metadata": 0}
        finished = [event for event in output.log_events() if event["event"] == "retention_finished"]
        assert [(event["dag_id"], event["task_id"], event["dag_run_id"], event["dry_run"],
                 event["deleted"]["quality_metrics"]) for event in finished] == [
            ("policy_retention", "apply_retention", dry["dag_run_id"], True, 1),
            ("policy_retention", "apply_retention", real["dag_run_id"], False, 1)]
    finally:
        await postgres.drop_database(server, database)


def test_the_retention_dag_file_imports_fast_and_does_no_io(airflow_env: dict[str, str]) -> None:
    env = {**airflow_env, "AEGIS_DATA_DIR": "/nonexistent", "POSTGRES_HOST": "192.0.2.1"}
    done = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT, "policy_retention"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["seconds"] < 2.0
