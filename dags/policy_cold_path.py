"""`policy_cold_path`, hourly: score what waits for a score, sync the targets, check them, send the events.

Tasks (each idempotent: re-running one finds what is left to do; they pass run ids and counts, not records):
1. `plan_scoring`: `cold_path.run.start_run` opens the run and hands out one assignment per worker.
2. `score`, mapped over the `workers` assignments (dynamic task mapping): `cold_path.run.score_batches` (load,
   full validation, quality score, duplicates, status). Each mapped task claims its batches with SKIP LOCKED, so
   a backlog spreads over whatever workers the executor has (Celery or Kubernetes in production) and no record
   is scored twice; duplicate decisions take turns, the validation and scoring before them do not. Once nothing
   waits, each task rescores records scored under older rules (`cold_path.scoring_rules`), oldest rules first, for at
   most COLD_PATH_RESCORE_SECONDS; the next hourly run goes on.
3. `summarise_scoring`: `cold_path.run.finish_run` counts what every worker decided under the run id, how many
   records were rescored and how many are still on older rules (`cold_path_stale_score_records`).
4. `sync`: `sync.run.run_sync` (PostgreSQL to Milvus, the graph, Elasticsearch). A target that failed fails the
   task with its DP code (DP_3001..DP_3003), after the others synced; Airflow retries it.
5. `check_consistency`: `sync.consistency.check_consistency` (each target against PostgreSQL). Drift does not
   fail it (the drift gauges and alerts report it, `policy_consistency_repair` fixes it); a target that could not
   be checked does.
6. `send_events`: relay the outbox (`data.quality_updated` and the sync's events) to Kafka.

Every task's log lines carry `dag_id`, `task_id`, `dag_run_id` and `try_number`, and its metrics are pushed to
the Pushgateway as the matching CLI command's (`aegis_pipeline.airflow_tasks`).

Trigger with params from the UI: `limit` (at most this many records: a whole number, 1 or more), `source` (only
this source: one of the sources files' names, `airflow_tasks.source_names`), `rescore_all` (score every record
again now, whatever rules scored it), `workers` (how many tasks score at once, 1 to 32; a backfill wants more).
The trigger form and the REST API refuse a value that breaks these; a key that is no param fails the run's first
task at once (DP_4003).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from aegis_pipeline.airflow_tasks import (
    DEFAULT_ARGS,
    fail_if_targets_failed,
    limit_param,
    run_pipeline_step,
    source_param,
    worker_limits,
)


@dag(
    dag_id="policy_cold_path",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["aegis", "cold-path"],
    doc_md=__doc__,
    params={
        "limit": limit_param("Score at most this many records (empty: all that wait)"),
        "source": source_param("Only records of this source (empty: every source)"),
        "rescore_all": Param(False, type="boolean",
                             description="Score every record again now, not only new ones and, within the run's "
                                         "budget, those scored under older rules"),
        "workers": Param(2, type="integer", minimum=1, maximum=32,
                         description="Scoring tasks that run at once (each claims its own batches)"),
    },
)
def policy_cold_path() -> None:
    @task
    def plan_scoring(params: dict[str, Any] | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        from aegis_pipeline.cold_path.run import start_run

        options = params or {}
        cold_run_id, limit, source = f"airflow:{run_id}", options.get("limit"), options.get("source") or None
        rescore_since = run_pipeline_step(lambda settings: start_run(
            settings, cold_run_id, limit=limit, source=source, rescore_all=bool(options.get("rescore_all"))),
            metrics_job="cold-path")
        return [{"run_id": cold_run_id, "source": source, "limit": share,
                 "rescore_since": rescore_since.isoformat() if rescore_since else None}
                for share in worker_limits(limit, int(options.get("workers") or 1))]

    @task
    def score(assignment: dict[str, Any]) -> dict[str, Any]:
        from datetime import datetime

        from aegis_pipeline.cold_path.run import score_batches

        since = assignment["rescore_since"]
        report = run_pipeline_step(lambda settings: score_batches(
            settings, assignment["run_id"], limit=assignment["limit"], source=assignment["source"],
            rescore_since=datetime.fromisoformat(since) if since else None), metrics_job="cold-path")
        return {"run_id": assignment["run_id"], "failed": report.failed, "requeued": report.requeued,
                "batches": report.batches, "rescored": report.rescored}

    @task
    def summarise_scoring(workers: list[dict[str, Any]]) -> dict[str, Any]:
        from aegis_pipeline.cold_path.run import WorkerReport, finish_run

        run_id = workers[0]["run_id"]
        reports = [WorkerReport(failed=worker["failed"], requeued=worker["requeued"], batches=worker["batches"],
                                batch_seconds=(), rescored=worker.get("rescored", 0)) for worker in workers]
        report = run_pipeline_step(lambda settings: finish_run(settings, run_id, reports), metrics_job="cold-path")
        return {"run_id": report.run_id, "counts": report.counts, "failed": report.failed, "workers": len(workers),
                "score_distribution": report.score_distribution, "rules_version": report.rules_version,
                "rescored": report.rescored, "stale_remaining": report.stale_remaining}

    @task
    def sync(scored: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        from aegis_pipeline.sync.run import run_sync

        report = run_pipeline_step(lambda settings: run_sync(settings, run_id=f"airflow:{run_id}"),
                                   metrics_job="sync")
        # run_sync does not raise for a failed target (the others went on, its watermark stayed): fail here.
        fail_if_targets_failed("sync", {result.target: (result.error_code, result.error)
                                        for result in report.results if not result.success})
        return {"run_id": report.run_id, "scored": scored["counts"],
                "sync": [result.as_dict() for result in report.results]}

    @task
    def check_consistency(synced: dict[str, Any]) -> dict[str, Any]:
        from aegis_pipeline.sync.consistency import check_consistency as check

        report = run_pipeline_step(lambda settings: check(settings), metrics_job="consistency")
        # Drift is a finding, not a failure: the gauges and alerts report it, the daily repair DAG fixes it.
        # A target that could not be checked at all is a failure.
        fail_if_targets_failed("consistency check", {name: (target.error_code, target.error)
                                                     for name, target in report.targets.items() if target.error})
        return {**synced, "consistency": {"report_id": report.report_id, **report.summary()}}

    @task
    def send_events(checked: dict[str, Any]) -> int:
        from aegis_pipeline.stores.outbox import send_pending_events

        return run_pipeline_step(send_pending_events, metrics_job="events")

    send_events(check_consistency(sync(summarise_scoring(score.expand(assignment=plan_scoring())))))


policy_cold_path()
