"""What every DAG task does around the pipeline's own functions: check the run's params, load the settings, log
into the task log with the task's context, run the coroutine, push the metrics, and turn a failure into what
Airflow understands (retry it, or fail for good), with its DP code in the message. And the DAGs' params, with
the JSON schema the trigger form and the REST API validate a run's configuration against.

Imported by the DAG files; imports nothing of the pipeline at module level (DAG files must import fast).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from airflow.sdk import Param

    from aegis_pipeline.common.errors import PipelineError

T = TypeVar("T")

# Each task: 3 retries, 1 min then doubling (jittered by Airflow) up to 15 min.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-pipeline",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
}

# The sources of the shipped sources file (helm/aegis-data-pipeline/files/sources.yaml, which the image does not
# carry: a test keeps the two equal) and the sync targets (`sync.targets.TARGET_NAMES`, too slow to import while
# a DAG file is parsed: a test keeps them equal too).
SHIPPED_SOURCES = ("mss_biz", "bizinfo", "kstartup", "gov24", "seongdong_notice")
SYNC_TARGETS = ("vectors", "graph", "search")
# The embedded stack's sample sources: what `aegis-pipeline collect` collects when no sources file is configured.
_SAMPLE_SOURCES_FILE = Path(__file__).parent / "devstack" / "sample_sources.yaml"


def run_pipeline_step(step: Callable[[Any], Awaitable[T]], *, metrics_job: str) -> T:
    """`step(settings)` to completion, inside the running Airflow task.

    - First the DAG run's configuration is checked against the DAG's params (`check_run_conf`): a bad one fails
      the task at once with DP_4003, before anything runs.
    - Every log line goes to the task log at its own level (`_pipeline_logging`) and carries the task's context:
      `dag_id`, `task_id`, `dag_run_id`, `try_number`.
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
    from aegis_pipeline.common.errors import ErrorCode, PipelineError
    from aegis_pipeline.common.metrics import push_batch_metrics
    from aegis_pipeline.settings import SettingsError, load_settings

    check_run_conf()
    try:
        settings = load_settings()
    except SettingsError as error:  # a SystemExit, which Airflow would retry
        raise fail_at_once(PipelineError(str(error), code=ErrorCode.BATCH_PROCESSING_ERROR)) from error
    with _pipeline_logging(settings), _task_log_context(settings):
        try:
            return asyncio.run(step(settings))
        except PipelineError as error:
            if error.retriable:
                raise
            raise fail_at_once(error) from error
        except Exception as error:
            raise PipelineError(f"{type(error).__name__}: {error}",
                                code=ErrorCode.BATCH_PROCESSING_ERROR) from error
        finally:
            if settings.prometheus_pushgateway_url:
                push_batch_metrics(settings.prometheus_pushgateway_url, metrics_job)


def fail_at_once(error: PipelineError) -> Exception:
    """What to raise for a `PipelineError` no retry can fix (a bad param, a configuration error, a request the
    engine refused): Airflow's `AirflowFailException`, which fails the task without using its retries, its
    message the error's, DP code first. The one place a DAG task turns an error into a final failure."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(error))


def check_run_conf() -> None:
    """Fail the running task at once (DP_4003) when its DAG run's configuration does not fit the DAG's params.

    The trigger form and the REST API refuse a configuration that breaks a param's JSON schema before the run
    exists; this catches what still gets through: a key that is no param (`limt` for `limit`: the schema
    checks only the params it has, and the run would go on without the limit), and a run created some other way
    or under an older version of the DAG (each value checked again against the param's schema)."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import ParamValidationError

    from aegis_pipeline.common.errors import ErrorCode, PipelineError

    context = get_current_context()
    dag_params = context["dag"].params
    conf = dict(getattr(context.get("dag_run"), "conf", None) or {})
    if unknown := sorted(set(conf) - set(dag_params)):
        raise fail_at_once(PipelineError(
            f"{', '.join(map(repr, unknown))} {'is no param' if len(unknown) == 1 else 'are no params'} of "
            f"{context['dag'].dag_id} (its params: {', '.join(dag_params) or 'none'})",
            code=ErrorCode.BATCH_PROCESSING_ERROR))
    merged = copy.deepcopy(dag_params)  # setting a value sets it on the Param: the DAG's own stay as they are
    try:
        merged.update(conf)
        merged.validate()
    except ParamValidationError as error:
        raise fail_at_once(PipelineError(f"bad param: {error}", code=ErrorCode.BATCH_PROCESSING_ERROR)) from error


def limit_param(description: str) -> Param:
    """At most this many (a whole number, 1 or more), or no limit (null, the default)."""
    from airflow.sdk import Param

    return Param(None, type=["null", "integer"], minimum=1, description=description)


def source_param(description: str) -> Param:
    """One source by name (a list in the trigger form: `source_names()`), or every source (null, the default)."""
    from airflow.sdk import Param

    return Param(None, type=["null", "string"], enum=[None, *source_names()], description=description)


def targets_param(description: str) -> Param:
    """Some of the sync targets (a multi-select in the trigger form), or all of them (null or empty, the
    default)."""
    from airflow.sdk import Param

    return Param(None, type=["null", "array"], items={"type": "string", "enum": list(SYNC_TARGETS)},
                 uniqueItems=True, examples=list(SYNC_TARGETS), description=description)


def source_names() -> list[str]:
    """The source names a DAG's `source` param accepts, sorted: the shipped sources file's, and those of the
    sources file the collectors of this deployment read (SOURCES_FILE, else `sources.yaml` where it exists, else
    the embedded stack's sample sources, as `aegis-pipeline collect` picks).

    Read while the DAG file is parsed, so it only reads: a file missing or unreadable (the DAG processor without
    the sources ConfigMap, a broken file) adds no names, and the file's definitions are not validated here (the
    tasks that use them do, and fail with the DP code)."""
    from aegis_pipeline.settings import explicit_values

    configured = explicit_values().get("sources_file")
    if configured:
        sources_file = Path(configured)
    elif Path("sources.yaml").is_file():
        sources_file = Path("sources.yaml")
    else:
        sources_file = _SAMPLE_SOURCES_FILE
    return sorted({*SHIPPED_SOURCES, *_names_in(sources_file)})


def _names_in(sources_file: Path) -> set[str]:
    import yaml

    try:
        document = yaml.safe_load(sources_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError):
        return set()
    sources = document.get("sources") if isinstance(document, dict) else None
    return {source["name"] for source in sources or [] if isinstance(source, dict)
            and isinstance(source.get("name"), str)}


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
    """The pipeline's own logging (as on the command line: JSON or console lines, secrets and contact data
    redacted, libraries at WARNING) while its code runs, each line written to the task log at its own level;
    Airflow's logging again afterwards.

    Why not stderr, as on the command line: Airflow's task supervisor records every line a task writes to stderr
    at ERROR (`task.stderr`), so an INFO line would show as an error. Each line, once rendered and redacted, is
    handed to the handlers Airflow gave the task's root logger (the task log) as a standard `logging` record at
    its level: Airflow records a standard record at its own level, as for any task that logs with `logging`.

    Why not Airflow's structlog set-up: its task supervisor receives each structured event as keyword arguments
    and fails on fields it uses itself (Airflow 3.3.2: an event with a `target` field kills the task with
    "_log_to_target() got multiple values for argument 'target'"). A rendered line is one text, and the fields
    stay inside it."""
    import structlog
    from pydantic import SecretStr

    from aegis_pipeline.common.logging import configure_logging, register_secrets

    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(settings.log_level, json_lines=settings.log_json)
    register_secrets(value.get_secret_value() for value in settings.__dict__.values() if isinstance(value, SecretStr))
    # A logger outside the hierarchy (not under root, whose handler is ours now), writing to Airflow's handlers.
    # configure_logging's structlog filters by LOG_LEVEL and its root logger keeps libraries at WARNING: every
    # line that reaches it is written.
    task_log = logging.Logger("aegis_pipeline", logging.DEBUG)
    task_log.handlers[:] = saved_handlers
    structlog.configure(logger_factory=lambda *args: task_log)  # the same processors, rendered into task_log
    (stderr_handler,) = root.handlers  # configure_logging's: its formatter renders a library's record
    root.handlers[:] = [_ToTaskLog(task_log, stderr_handler.formatter or logging.Formatter())]
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


class _ToTaskLog(logging.Handler):
    """The root logger's handler while the pipeline's code runs: a library's record (aiokafka, httpx, ...),
    rendered and redacted as on the command line (`formatter`, configure_logging's), written to the task log at
    the record's level."""

    def __init__(self, task_log: logging.Logger, formatter: logging.Formatter) -> None:
        super().__init__()
        self.task_log = task_log
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)  # the traceback, if any, is in the line (redacted): none is passed on
        except Exception:
            self.handleError(record)
            return
        self.task_log.log(record.levelno, line)
