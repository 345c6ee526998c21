"""`dlq_retry`, every 6 hours: retry the pending dead letters through the stage that refused them (at most 3
times each), exactly as `aegis-pipeline dlq retry` does: the task runs that command, the one implementation.
Param `ids`: only these letters (default: every pending one with retries left)."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from aegis_pipeline.airflow_tasks import DEFAULT_ARGS


@dag(
    dag_id="dlq_retry",
    schedule="0 */6 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["aegis", "dlq"],
    doc_md=__doc__,
    params={"ids": Param([], type="array", description="Only these dead-letter ids")},
)
def dlq_retry() -> None:
    @task
    def retry_letters(params: dict[str, Any] | None = None) -> str:
        import shutil
        import subprocess
        import sys
        from pathlib import Path

        from airflow.sdk.exceptions import AirflowFailException

        from aegis_pipeline.common.errors import ErrorCode, PipelineError

        command = shutil.which("aegis-pipeline") or str(Path(sys.executable).with_name("aegis-pipeline"))
        arguments = [command, "dlq", "retry"]
        for letter_id in (params or {}).get("ids") or []:
            arguments += ["--id", str(letter_id)]
        done = subprocess.run(arguments, capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode != 0:
            # The end of stderr names the cause (its own DP code, when the command raised a pipeline error).
            error = PipelineError(f"`aegis-pipeline dlq retry` exited {done.returncode}: "
                                  f"{done.stderr.strip()[-2000:]}", code=ErrorCode.BATCH_PROCESSING_ERROR)
            if done.returncode == 2:  # a usage or configuration error (e.g. the sources file): no retry can help
                raise AirflowFailException(str(error))
            raise error
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    retry_letters()


dlq_retry()
