"""`dlq_retry`, every 6 hours: retry the pending dead letters through the stage that refused them (at most 3
times each): `aegis_pipeline.dead_letter_retry.retry_dead_letters`, the function `aegis-pipeline dlq retry` calls.

Task `retry_letters` returns the outcome counts (`retried: resolved 2, exhausted 1`, as the command prints them).
Its log lines carry `dag_id`, `task_id`, `dag_run_id` and `try_number`, and its metrics are pushed to the
Pushgateway as the `dlq` command's (`aegis_pipeline.airflow_tasks`). A store that is down fails the try and
Airflow retries it; a configuration error (an invalid sources file, a wrong setting) fails the task at once, with
its DP code.

Trigger with params from the UI: `ids`, only these dead-letter ids (default: every pending one with retries left);
the trigger form and the REST API refuse an id that is no UUID.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from aegis_pipeline.airflow_tasks import DEFAULT_ARGS, run_pipeline_step


@dag(
    dag_id="dlq_retry",
    schedule="0 */6 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["aegis", "dlq"],
    doc_md=__doc__,
    params={"ids": Param([], type="array", items={"type": "string", "format": "uuid"}, uniqueItems=True,
                         description="Only these dead-letter ids, one per line (empty: every pending one)")},
)
def dlq_retry() -> None:
    @task
    def retry_letters(params: dict[str, Any] | None = None) -> str:
        from aegis_pipeline.dead_letter_retry import retry_dead_letters

        ids = [str(letter_id) for letter_id in (params or {}).get("ids") or []]
        report = run_pipeline_step(lambda settings: retry_dead_letters(settings, ids=ids), metrics_job="dlq")
        return report.summary()

    retry_letters()


dlq_retry()
