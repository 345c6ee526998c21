"""The one backoff policy: how long to wait before trying again, for every retry in the pipeline."""

from __future__ import annotations

import random

from aegis_pipeline.common.errors import PipelineError, RateLimitedError


def is_retriable(error: BaseException) -> bool:
    return isinstance(error, PipelineError) and error.retriable


def backoff_seconds(attempt: int, error: BaseException | None, *, base: float = 0.5, cap: float = 30.0) -> float:
    """How long to wait before attempt `attempt + 1`: what a rate-limited source asked for, else exponential
    from `base` doubling per attempt up to `cap`, with jitter so replicas do not retry in lockstep."""
    if isinstance(error, RateLimitedError) and error.retry_after_seconds is not None:
        return error.retry_after_seconds
    exponential = min(cap, base * 2 ** (attempt - 1))
    return exponential * (0.5 + random.random() / 2)
