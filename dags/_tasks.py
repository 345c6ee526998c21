"""What every DAG task does around the pipeline's own functions: load the settings, run the coroutine, and turn a
pipeline error into what Airflow understands (retry it, or fail for good), with its DP code in the message.

Imported by the DAG files; imports nothing of the pipeline at module level (DAG files must import fast).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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

    try:
        return asyncio.run(step(load_settings()))
    except PipelineError as error:
        if error.retriable:
            raise
        raise AirflowFailException(str(error)) from error
