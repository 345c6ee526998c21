"""What every DAG task does around the pipeline's own functions: load the settings, run the coroutine, and turn a
pipeline error into what Airflow understands (retry it, or fail for good), with its DP code in the message.

Imported by the DAG files; imports nothing of the pipeline at module level (DAG files must import fast).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
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


def run_pipeline_step(step: Callable[[Any], Awaitable[T]]) -> T:
    """`step(settings)` to completion. A `PipelineError` a retry cannot fix fails the task at once
    (`AirflowFailException`, no retries left to waste); a retriable one, or any other error, is raised for
    Airflow's retries. Either way the message starts with the DP code."""
    from airflow.sdk.exceptions import AirflowFailException

    from common.errors import PipelineError
    from settings import load_settings

    settings = load_settings()
    try:
        with _pipeline_logging(settings):
            return asyncio.run(step(settings))
    except PipelineError as error:
        if error.retriable:
            raise
        raise AirflowFailException(str(error)) from error


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

    from common.logging import configure_logging, register_secrets
    from hot_path.cleaning import mask_text

    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(settings.log_level, json_lines=settings.log_json, mask=mask_text)
    register_secrets(value.get_secret_value() for value in settings.__dict__.values() if isinstance(value, SecretStr))
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
