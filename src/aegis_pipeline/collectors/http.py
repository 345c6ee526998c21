"""HTTP for API and feed sources: the one place where transport failures, HTTP statuses and the data.go.kr
error envelope become `common.errors` with their retry meaning.

A request goes: daily request budget -> shared rate limit -> circuit breaker (per source, design §6.2.1) -> httpx.
Retries with backoff wrap all of that, for retriable errors only; a source that says "too many requests" is waited
for as long as it asks (or `rate_limit.retry_after_seconds`). An open circuit fails fast and is not retried. A body
larger than `max_response_bytes` (the source's own, else MAX_RESPONSE_BYTES) is not read further and is refused
(DP_1004, not retried: the same page is as large again).

Egress (`collectors.egress`): every URL fetched, the first and each redirect hop, is checked against the source's
policy before it is asked for, and the connection goes through the policy (`egress.applying`; with the shared
client's `EgressTransport` the address is checked before connecting, and every response's peer address after).
Redirects are followed here, not by httpx: at most `max_redirects` hops, the source's headers sent to its own
origin only. A refusal is `EgressRefusedError` (DP_1001, not retried, not an outage for the circuit breaker).

Deadlines bound time, not reads: `timeout_seconds` is httpx's per-read timeout, `request_deadline_seconds` the
whole request (connect, every hop, every read of the body: a server trickling a byte every few seconds is cut
there; SourceUnavailableError, retried as a timeout is), and `deadline_at` (the run's end, `time.monotonic()`)
caps every request and every wait between retries: past it, `SourceDeadlineError` (DP_1001, not retried).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import httpx
from circuitbreaker import CircuitBreaker, CircuitBreakerError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from aegis_pipeline.collectors import egress
from aegis_pipeline.collectors.definitions import SourceDefinition
from aegis_pipeline.collectors.extract import BODY_EXCERPT_CHARS, RefusedResponseError
from aegis_pipeline.collectors.parsing.encodings import decode_body
from aegis_pipeline.collectors.rate_limit import RateLimiter, RequestBudget
from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import (
    CircuitOpenError,
    EgressRefusedError,
    PipelineError,
    RateLimitedError,
    SourceConfigError,
    SourceDeadlineError,
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
    """Requests to one source, with its rate limit, circuit breaker, retry policy, egress policy and deadlines.

    `max_response_bytes`: the limit when the source sets none (MAX_RESPONSE_BYTES). `policy`: the source's egress
    policy, default `egress.policy_for(source)` (tests inject one with their own resolver). `deadline_at`: when the
    source's run must end (`time.monotonic()` clock); default None, no run deadline."""

    def __init__(
        self,
        source: SourceDefinition,
        http: httpx.AsyncClient,
        limiter: RateLimiter,
        breaker: CircuitBreaker,
        *,
        max_response_bytes: int,
        budget: RequestBudget | None = None,
        policy: egress.EgressPolicy | None = None,
        deadline_at: float | None = None,
    ) -> None:
        self.source = source
        self._budget = budget
        self._max_response_bytes = source.max_response_bytes or max_response_bytes
        self.policy = policy or egress.policy_for(source)
        self._deadline_at = deadline_at
        self._http = http
        self._limiter = limiter
        self._breaker = breaker
        # decorate(), not call_async(): only the decorated wrapper fails fast while the circuit is open.
        self._guarded_request = breaker.decorate(self._request)
        self.requests_sent = 0

    async def fetch_text(self, url: str, params: dict[str, str | int], check: PageCheck | None = None) -> str:
        """GET `url` and return its decoded body; retried while the failure is retriable."""
        def wait(state: RetryCallState) -> float:
            seconds = backoff_seconds(state.attempt_number, state.outcome.exception() if state.outcome else None)
            # Never sleep past the run's deadline: the next attempt then stops at once (SourceDeadlineError).
            return seconds if self._deadline_at is None else max(0.0, min(seconds, self._remaining()))

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

    def _remaining(self) -> float:
        return float("inf") if self._deadline_at is None else self._deadline_at - time.monotonic()

    def _past_deadline(self) -> SourceDeadlineError:
        return SourceDeadlineError(
            f"{self.source.name}: run deadline of {self.source.run_deadline_seconds:g} s reached; stopped",
            source=self.source.name, run_deadline_seconds=self.source.run_deadline_seconds,
        )

    async def _request(self, url: str, params: dict[str, str | int], check: PageCheck | None) -> str:
        if self._remaining() <= 0:
            raise self._past_deadline()
        self.policy.check_url(url)  # before spending anything on a URL that will not be fetched
        if self._budget is not None:  # every attempt is a request the source counts, retries included
            await self._budget.spend(self.source.name, self.source.daily_request_budget)
        await self._limiter.acquire(self.source.name, self.source.rate_limit.requests_per_second)
        self.requests_sent += 1
        deadline_seconds = self.source.request_deadline_seconds
        cut_by_run = self._remaining() < deadline_seconds
        try:
            async with asyncio.timeout(min(deadline_seconds, max(0.0, self._remaining()))) as deadline:
                response, body = await self._follow(url, params)
        except TimeoutError:
            if not deadline.expired():
                raise
            if cut_by_run:
                raise self._past_deadline() from None
            metrics.collector_deadline_exceeded_total.labels(source=self.source.name, scope="request").inc()
            raise SourceUnavailableError(
                f"{self.source.name}: no complete answer within its request deadline of {deadline_seconds:g} s",
                source=self.source.name, request_deadline_seconds=deadline_seconds,
            ) from None
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

    async def _follow(self, url: str, params: dict[str, str | int]) -> tuple[httpx.Response, bytes]:
        """GET `url`, following redirects ourselves: each hop checked by the egress policy, at most
        `max_redirects`; the answer that is not a redirect, and its body (within `max_response_bytes`)."""
        target: str | httpx.URL = url
        # `params or None`: httpx replaces a URL's query with any params given, even `{}`, and a board's or an
        # API's next link carries its own query (the soak found a source served its first page forever).
        query: dict[str, str | int] | None = params or None
        with egress.applying(self.policy):
            for _hop in range(self.policy.max_redirects + 1):
                self.policy.check_url(target)
                async with self._http.stream(
                    "GET", target, params=query, headers=self._headers_for(target),
                    timeout=self.source.timeout_seconds, follow_redirects=False,
                ) as response:
                    await self.policy.check_peer(response)
                    if response.is_redirect:
                        try:
                            target = response.url.join(response.headers["Location"])
                        except httpx.InvalidURL:
                            raise self.policy.refuse("redirect to an unparsable Location refused", "origin",
                                                     egress.Origin.of(response.url)) from None
                        query = None  # the Location is the whole next request
                        continue
                    problem = error_for_status(response, self.source)
                    if problem is not None:
                        raise problem
                    return response, await self._read_limited(response)
        raise EgressRefusedError(
            f"{self.source.name}: more than {self.policy.max_redirects} redirects (max_redirects)",
            reason="redirects", source=self.source.name,
        )

    def _headers_for(self, target: str | httpx.URL) -> Mapping[str, str]:
        """The source's headers on its own origin; elsewhere (an allowed redirect host) none carrying a credential."""
        if egress.same_origin(target, self.source.url):
            return self.source.headers
        secrets = self.source.secret_values()
        return {name: value for name, value in self.source.headers.items()
                if not any(secret in value for secret in secrets)}

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
            f"{self.source.name}: response larger than {limit} bytes (max_response_bytes, else MAX_RESPONSE_BYTES); "
            "not read further",
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
