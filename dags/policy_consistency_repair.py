"""`policy_consistency_repair`, daily: compare each target (Milvus, the graph, Elasticsearch) with PostgreSQL
and repair what is missing, stale or orphaned (`sync.consistency.check_consistency`, then `repair`), then send
the events the repair wrote. Param `targets`: only these targets, some of `vectors`, `graph` and `search`
(default: all); the trigger form and the REST API refuse any other.

`check_and_repair` fails, with the target's DP code, when a target could not be checked or its repair did not
finish (Airflow retries it: the next try checks again and repairs what is still wrong)."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

from aegis_pipeline.airflow_tasks import DEFAULT_ARGS, fail_if_targets_failed, run_pipeline_step, targets_param


@dag(
    dag_id="policy_consistency_repair",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["aegis", "sync"],
    doc_md=__doc__,
    params={"targets": targets_param("Only these targets: vectors (Milvus), graph, search (Elasticsearch); "
                                     "empty: all")},
)
def policy_consistency_repair() -> None:
    @task
    def check_and_repair(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from aegis_pipeline.common.errors import ErrorCode
        from aegis_pipeline.sync.consistency import ConsistencyReport, RepairReport, check_consistency, repair

        targets = (params or {}).get("targets") or None

        async def check_then_repair(settings: Any) -> tuple[ConsistencyReport, RepairReport]:
            checked = await check_consistency(settings, targets=targets)
            return checked, await repair(settings, checked)

        checked, repaired = run_pipeline_step(check_then_repair, metrics_job="consistency")
        # A target that could not be checked is not repaired (and not in `repaired.results`): a failure too.
        failures = {name: (target.error_code, target.error)
                    for name, target in checked.targets.items() if target.error}
        for name, result in repaired.results.items():
            if result.error:
                failures[name] = (result.error_code, result.error)
            elif result.deferred:  # the encode budget ran out: the next try encodes and writes the rest
                failures[name] = (ErrorCode.CONSISTENCY_CHECK_FAILED.value,
                                  f"{result.deferred} documents still wait for an embedding (SYNC_MAX_ENCODE_PER_RUN)")
        fail_if_targets_failed("consistency repair", failures)
        return {"check_report_id": checked.report_id, "repair_report_id": repaired.report_id, **repaired.summary()}

    @task
    def send_events(repaired: dict[str, Any]) -> int:
        from aegis_pipeline.stores.outbox import send_pending_events

        return run_pipeline_step(send_pending_events, metrics_job="events")

    send_events(check_and_repair())


policy_consistency_repair()
