"""`policy_consistency_repair`, daily: compare each target (Milvus, the graph, Elasticsearch) with PostgreSQL
and repair what is missing, stale or orphaned (`sync.consistency.check_consistency`, then `repair`), then send
the events the repair wrote. Param `targets`: only these targets (default: all)."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from dags._tasks import DEFAULT_ARGS, run_pipeline_step


@dag(
    dag_id="policy_consistency_repair",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["aegis", "sync"],
    doc_md=__doc__,
    params={"targets": Param(None, type=["null", "array"], description="Only these targets, e.g. [\"search\"]")},
)
def policy_consistency_repair() -> None:
    @task
    def check_and_repair(params: dict[str, Any] | None = None) -> str:
        from sync.consistency import check_consistency, repair

        targets = (params or {}).get("targets") or None

        async def check_then_repair(settings: Any) -> Any:
            report = await check_consistency(settings, targets=targets)
            return await repair(settings, report)

        return str(run_pipeline_step(check_then_repair))

    @task
    def send_events(repaired: str) -> int:
        from stores.outbox import send_pending_events

        return run_pipeline_step(send_pending_events)

    send_events(check_and_repair())


policy_consistency_repair()
