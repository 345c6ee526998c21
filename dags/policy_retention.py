"""`policy_retention`, daily at 03:30 UTC: delete the history past each table's retention (`RETENTION_DAYS_*`) in
bounded batches, never a policy's latest score or status change, an open dead letter, the latest consistency
report per target or the latest run of a kind: `aegis_pipeline.cold_path.retention.apply_retention`, the function
`aegis-pipeline retention` calls.

Task `apply_retention` returns the run's summary (rows deleted and kept per table, cutoffs, batches), records the
run in `pipeline_metadata` (`kind` retention) and pushes its metrics as the `retention` command's
(`retention_rows_deleted_total{table}`, job `aegis-retention`). A PostgreSQL that is down fails the try and
Airflow retries it: what earlier batches deleted stays deleted, the retry goes on from there.

Trigger with params from the UI: `dry_run` (true or false), count what would be deleted, delete nothing.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from aegis_pipeline.airflow_tasks import DEFAULT_ARGS, run_pipeline_step


@dag(
    dag_id="policy_retention",
    schedule="30 3 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["aegis", "retention"],
    doc_md=__doc__,
    params={"dry_run": Param(False, type="boolean", description="Count what would be deleted; delete nothing")},
)
def policy_retention() -> None:
    @task
    def apply_retention(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
        from aegis_pipeline.cold_path.retention import apply_retention as apply

        dry_run = bool((params or {}).get("dry_run"))
        report = run_pipeline_step(lambda settings: apply(settings, dry_run=dry_run, run_id=f"airflow:{run_id}"),
                                   metrics_job="retention")
        return report.summary()

    apply_retention()


policy_retention()
