"""HTTP for API and feed sources: the one place where transport failures, HTTP statuses and the data.go.kr
error envelope become `common.errors` with their retry meaning.

A request goes: daily request budget -> shared rate limit -> circuit breaker (per source, design §6.2.1) -> httpx.
Retries with backoff wrap all of that, for retriable errors only; a source that says "too many requests" is waited
for as long as it asks (or `rate_limit.retry_after_seconds`). An open circuit fails fast and is not retried. A body
larger than `max_response_bytes` is not read further and is refused (DP_1004, not retried: the same page is as
large again).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from circuitbreaker import CircuitBreaker, CircuitBreakerError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from aegis_pipeline.collectors.definitions import SourceDefinition
from aegis_pipeline.collectors.extract import BODY_EXCERPT_CHARS, RefusedResponseError
from aegis_pipeline.collectors.parsing.encodings import decode_body
from aegis_pipeline.collectors.rate_limit import RateLimiter, RequestBudget
from aegis_pipeline.common.errors import (
    CircuitOpenError,
    PipelineError,
    RateLimitedError,
    SourceConfigError,
    SourceUnavailableError,
)
from aegis_pipeline.common.retry import backoff_seconds, is_retriable

PageCheck = Callable[[str], None]  # raises a PipelineError when a 200 answer is really an error


def error_for_status(response: httpx.Response, source: SourceDefinition) -> PipelineError | None:
    """Map an HTTP status to our error (None for success)."""
    status = response.status_code
    if status < 400:
        return None
    if status == 429:
        retry_after = response.headers.get("Retry-After", "")
        return RateLimitedError(
            f"{source.name} answered 429",
            retry_after_seconds=float(retry_after) if retry_after.isdigit() else source.rate_limit.retry_after_seconds,
            source=source.name,
        )
    if status >= 500 or status == 408:
        return SourceUnavailableError(f"{source.name} answered HTTP {status}", source=source.name, status=status)
    return SourceConfigError(f"{source.name} answered HTTP {status}", source=source.name, status=status)


class SourceHttpClient:
    """Requests to one source, with its rate limit, circuit breaker and retry policy."""

    def __init__(
        self,
        source: SourceDefinition,
        http: httpx.AsyncClient,
        limiter: RateLimiter,
        breaker: CircuitBreaker,
        *,
        max_response_bytes: int,
        budget: RequestBudget | None = None,
    ) -> None:
        self.source = source
        self._budget = budget
        self._max_response_bytes = max_response_bytes
        self._http = http
        self._limiter = limiter
        self._breaker = breaker
        # decorate(), not call_async(): only the decorated wrapper fails fast while the circuit is open.
        self._guarded_request = breaker.decorate(self._request)
        self.requests_sent = 0

    async def fetch_text(self, url: str, params: dict[str, str | int], check: PageCheck | None = None) -> str:
        """GET `url` and return its decoded body; retried while the failure is retriable."""
        def wait(state: RetryCallState) -> float:
            return backoff_seconds(state.attempt_number, state.outcome.exception() if state.outcome else None)

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_retriable),
            stop=stop_after_attempt(self.source.max_retries + 1),
            wait=wait,
            reraise=True,
        ):
            with attempt:
                return await self._fetch_once(url, params, check)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _fetch_once(self, url: str, params: dict[str, str | int], check: PageCheck | None) -> str:
        try:
            return await self._guarded_request(url, params, check)
        except CircuitBreakerError:
            raise CircuitOpenError(
                f"{self.source.name}: circuit open after repeated failures "
                f"({self._breaker.open_remaining:.0f} s until it half-opens)",
                source=self.source.name,
            ) from None

    async def _request(self, url: str, params: dict[str, str | int], check: PageCheck | None) -> str:
        if self._budget is not None:  # every attempt is a request the source counts, retries included
            await self._budget.spend(self.source.name, self.source.daily_request_budget)
        await self._limiter.acquire(self.source.name, self.source.rate_limit.requests_per_second)
        self.requests_sent += 1
        try:
            # `params or None`: httpx replaces a URL's query with any params given, even `{}`, and a board's or an
            # API's next link carries its own query (the soak found a source served its first page forever).
            async with self._http.stream(
                "GET", url, params=params or None, headers=self.source.headers,
                timeout=self.source.timeout_seconds
            ) as response:
                problem = error_for_status(response, self.source)
                if problem is not None:
                    raise problem
                body = await self._read_limited(response)
        except httpx.TimeoutException as error:
            raise SourceUnavailableError(f"{self.source.name}: timed out", source=self.source.name) from error
        except httpx.TransportError as error:
            raise SourceUnavailableError(
                f"{self.source.name}: {type(error).__name__}", source=self.source.name
            ) from error
        text = decode_body(body, response.charset_encoding, self.source.encoding)
        if check is not None:
            check(text)
        return text

    async def _read_limited(self, response: httpx.Response) -> bytes:
        """The body, or `RefusedResponseError` as soon as it passes `max_response_bytes` (nothing more is read)."""
        limit = self._max_response_bytes
        declared = response.headers.get("Content-Length", "")
        declared_too_large = declared.isdigit() and int(declared) > limit
        # Enough bytes for the excerpt the dead-letter queue keeps (a character is at most 4 bytes in UTF-8).
        excerpt_bytes = BODY_EXCERPT_CHARS * 4
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit or (declared_too_large and size >= excerpt_bytes):
                break
        else:
            if not declared_too_large:
                return b"".join(chunks)
        start = decode_body(b"".join(chunks)[:excerpt_bytes], response.charset_encoding, self.source.encoding)
        raise RefusedResponseError(
            f"{self.source.name}: response larger than MAX_RESPONSE_BYTES ({limit} bytes); not read further",
            body=start, source=self.source.name, max_response_bytes=limit,
        )


def new_breaker(source_name: str, *, failure_threshold: int, recovery_seconds: float) -> CircuitBreaker:
    # Only outages count: a bad record or a rate-limit answer says nothing about the source being down.
    return CircuitBreaker(
        failure_threshold=failure_threshold,
        recovery_timeout=recovery_seconds,
        expected_exception=SourceUnavailableError,
        name=f"source:{source_name}",
    )
