"""What every DAG task does around the pipeline's own functions: load the settings, log with the task's context,
run the coroutine, push the metrics, and turn a failure into what Airflow understands (retry it, or fail for
good), with its DP code in the message.

Imported by the DAG files; imports nothing of the pipeline at module level (DAG files must import fast).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")

# Each task: 3 retries, 1 min then doubling (jittered by Airflow) up to 15 min.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-pipeline",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
}


def run_pipeline_step(step: Callable[[Any], Awaitable[T]], *, metrics_job: str) -> T:
    """`step(settings)` to completion, inside the running Airflow task.

    - Every log line carries the task's context: `dag_id`, `task_id`, `dag_run_id`, `try_number`.
    - Afterwards, succeeded or not, the process's metrics go to the Pushgateway (when PROMETHEUS_PUSHGATEWAY_URL
      is set) as the group of the CLI command that does the same work (`metrics_job`: "cold-path", "sync",
      "consistency"; see `common.metrics.push_batch_metrics`). A failed push is only logged. Airflow runs each
      task in a process of its own (a forked task runner, or a pod), so what is pushed is this task's metrics.
    - A `PipelineError` a retry cannot fix fails the task at once (`AirflowFailException`, no retries left to
      waste); a retriable one is raised for Airflow's retries. Any other exception was translated nowhere (a bug,
      or a driver error no store module knows): it is raised as a DP_4003 `PipelineError` with the original as
      its `__cause__`, and retried, since we cannot tell which it is. Either way the message starts with the DP
      code.
    - A setting missing or wrong (`SettingsError`) fails the task at once with DP_4003: no retry can fix it.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from aegis_pipeline.common.errors import ErrorCode, PipelineError
    from aegis_pipeline.common.metrics import push_batch_metrics
    from aegis_pipeline.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as error:  # a SystemExit, which Airflow would retry
        raise AirflowFailException(f"{ErrorCode.BATCH_PROCESSING_ERROR.value}: {error}") from error
    with _pipeline_logging(settings), _task_log_context(settings):
        try:
            return asyncio.run(step(settings))
        except PipelineError as error:
            if error.retriable:
                raise
            raise AirflowFailException(str(error)) from error
        except Exception as error:
            raise PipelineError(f"{type(error).__name__}: {error}",
                                code=ErrorCode.BATCH_PROCESSING_ERROR) from error
        finally:
            if settings.prometheus_pushgateway_url:
                push_batch_metrics(settings.prometheus_pushgateway_url, metrics_job)


def worker_limits(limit: int | None, workers: int) -> list[int | None]:
    """Each of `workers` mapped tasks' share of `limit` (None: no limit, each takes what is left); the shares
    add up to `limit`, and a worker with no share is not started."""
    if limit is None:
        return [None] * workers
    share, extra = divmod(limit, workers)
    return [share + (1 if index < extra else 0) for index in range(min(workers, limit))]


def fail_if_targets_failed(work: str, failures: Mapping[str, tuple[str, str]]) -> None:
    """Fail the task when a target failed, after the step has stored its report and pushed its metrics.

    `failures` maps each failed target ("vectors", "graph", "search") to (its DP code, its error). The message
    starts with the first target's code and names every failed target with its own (DP_3001 Milvus, DP_3002 the
    graph, DP_3003 Elasticsearch). Raised as a `SyncFailedError`, which is retriable: a target that is down now
    may be back at Airflow's next try, and what it missed is still waiting for it (its watermark did not move).
    """
    if not failures:
        return
    from aegis_pipeline.common.errors import ErrorCode, SyncFailedError

    first_code = next(iter(failures.values()))[0]
    details = "; ".join(f"{target} [{code}] {error}" for target, (code, error) in failures.items())
    raise SyncFailedError(f"{work} failed for {details}", code=ErrorCode(first_code))


@contextlib.contextmanager
def _task_log_context(settings: Any) -> Iterator[None]:
    """Bind the running task's identity onto every log line of the step, as the CLI binds its command and run.

    The DAG run's id is bound as `dag_run_id`, not `run_id`: the cold path and sync log the id of their own run
    as `run_id` (`airflow:<dag_run_id>` when a DAG starts them), and that field must keep meaning one thing."""
    import structlog
    from airflow.sdk import get_current_context

    task_instance = get_current_context()["ti"]
    with structlog.contextvars.bound_contextvars(
            service=settings.service_name, dag_id=task_instance.dag_id, task_id=task_instance.task_id,
            dag_run_id=task_instance.run_id, try_number=task_instance.try_number):
        yield


@contextlib.contextmanager
def _pipeline_logging(settings: Any) -> Iterator[None]:
    """The pipeline's own logging (as on the command line: JSON lines on stderr, secrets and contact data
    redacted) while its code runs, Airflow's again afterwards. Airflow captures stderr into the task log.

    Why not Airflow's structlog set-up: its task supervisor receives each structured event as keyword arguments
    and fails on fields it uses itself (Airflow 3.3.2: an event with a `target` field kills the task with
    "_log_to_target() got multiple values for argument 'target'")."""
    import logging

    import structlog
    from pydantic import SecretStr

    from aegis_pipeline.common.logging import configure_logging, register_secrets

    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(settings.log_level, json_lines=settings.log_json)
    register_secrets(value.get_secret_value() for value in settings.__dict__.values() if isinstance(value, SecretStr))
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
