"""The design's error codes (§8.1) and one error hierarchy that carries them.

Each error says whether a retry can help (`retriable`), in the manner of aiokafka's `errors.py`; callers ask
`error.retriable` instead of repeating `except` lists. Driver exceptions are translated once, where the driver
is called (see `stores/`), into these classes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Error codes of the design (§8.1). The value is what logs, the DLQ and metrics carry."""

    # Collection
    DATA_SOURCE_UNAVAILABLE = "DP_1001"
    API_RATE_LIMIT_EXCEEDED = "DP_1002"
    SCRAPING_BLOCKED = "DP_1003"
    INVALID_DATA_FORMAT = "DP_1004"
    # Validation
    VALIDATION_FAILED = "DP_2001"
    QUALITY_SCORE_TOO_LOW = "DP_2002"
    DUPLICATE_DATA_DETECTED = "DP_2003"
    # Sync
    MILVUS_SYNC_FAILED = "DP_3001"
    NEO4J_SYNC_FAILED = "DP_3002"
    ELASTICSEARCH_SYNC_FAILED = "DP_3003"
    CONSISTENCY_CHECK_FAILED = "DP_3004"
    # Processing
    HOT_PATH_TIMEOUT = "DP_4001"
    COLD_PATH_FAILED = "DP_4002"
    BATCH_PROCESSING_ERROR = "DP_4003"


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose.

    `code` is the design's DP code; `retriable` says whether the same work may succeed if tried again
    (default False); `details` are safe-to-log key/value facts (never secrets or personal data).
    """

    code: ErrorCode = ErrorCode.BATCH_PROCESSING_ERROR
    retriable: bool = False

    def __init__(self, message: str, *, code: ErrorCode | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.details = details

    def __str__(self) -> str:
        return f"{self.code.value}: {self.args[0]}"

    @property
    def message(self) -> str:
        """What went wrong, without the DP code (for reports that keep the code in a field of its own)."""
        return str(self.args[0])


class TransientError(PipelineError):
    """A failure that may pass: a timeout, a connection refused, a broker or store that pushed back."""

    retriable = True


class SourceUnavailableError(TransientError):
    code = ErrorCode.DATA_SOURCE_UNAVAILABLE


class RateLimitedError(TransientError):
    """The remote source asked us to slow down; `retry_after_seconds` is how long to wait, if it said."""

    code = ErrorCode.API_RATE_LIMIT_EXCEEDED

    def __init__(self, message: str, *, retry_after_seconds: float | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_seconds = retry_after_seconds


class SourceConfigError(PipelineError):
    """A source that cannot work until a person fixes it (bad key, unknown service, bad definition)."""

    code = ErrorCode.DATA_SOURCE_UNAVAILABLE


class CircuitOpenError(PipelineError):
    """The source failed too often lately; calls fail fast until its circuit half-opens."""

    code = ErrorCode.DATA_SOURCE_UNAVAILABLE


class ScrapingBlockedError(PipelineError):
    code = ErrorCode.SCRAPING_BLOCKED


class EgressRefusedError(PipelineError):
    """The collector refused to fetch a URL for a source (collectors.egress): a redirect off the source's own
    origin and its `allowed_redirect_hosts`, an address in a private, loopback, link-local or metadata range,
    too many redirects. Not retriable, and not an outage (it does not open the source's circuit): the source or
    its definition must change. `reason` is a short word from a fixed set (a metric label)."""

    code = ErrorCode.DATA_SOURCE_UNAVAILABLE

    def __init__(self, message: str, *, reason: str, **details: Any) -> None:
        super().__init__(message, reason=reason, **details)
        self.reason = reason


class SourceDeadlineError(PipelineError):
    """A source run went past its `run_deadline_seconds`: it stopped, keeping what it had published."""

    code = ErrorCode.DATA_SOURCE_UNAVAILABLE


class InvalidDataError(PipelineError):
    """A record or payload that is malformed; retrying the same bytes cannot help."""

    code = ErrorCode.INVALID_DATA_FORMAT


class ValidationFailedError(PipelineError):
    code = ErrorCode.VALIDATION_FAILED


class StoreUnavailableError(TransientError):
    """An engine (PostgreSQL, Kafka, Redis, a sync target) could not be reached or timed out."""


class StoreRefusedError(PipelineError):
    """An engine answered, and refused the work for a reason a retry cannot fix (not authorised, a message too
    large, a request it does not accept): a person must change the configuration or the data first."""


class SyncFailedError(TransientError):
    """A sync target failed; `code` names which one (DP_3001..DP_3003)."""
