"""Per-source request limits that hold across replicas, counted in Redis: a rate and a daily budget.

`RateLimiter`: one slot per interval. `SET key NX PX interval` succeeds for exactly one caller per interval,
whichever replica it runs in.

`RequestBudget`: at most `daily_request_budget` requests a day to a source (data.go.kr development keys have
daily quotas, often 1,000, some 100). Each request first takes one from a counter per source and Korean day
(`INCR`, kept two days); past the budget, `DailyBudgetSpent` stops the source's run cleanly before the request is
sent. The quotas reset at midnight Korean time, so the budget's day is Korea's.

When Redis cannot be reached, both fall back to a per-process count (and log it): collection goes on, at worst
at the source's rate, or with its budget, once per replica.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import redis.asyncio as redis

from aegis_pipeline.collectors.parsing.dates import KST
from aegis_pipeline.common.errors import StoreUnavailableError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.stores import cache

log = get_logger(__name__)


class RateLimiter:
    def __init__(self, client: redis.Redis | None, *, key_prefix: str = "aegis:ratelimit") -> None:
        self._client = client
        self._key_prefix = key_prefix
        self._local_next_slot: dict[str, float] = {}
        self._local_lock = asyncio.Lock()

    async def acquire(self, source: str, requests_per_second: float) -> None:
        """Wait until `source` may be sent one more request."""
        interval_seconds = 1.0 / requests_per_second
        if self._client is not None:
            try:
                await self._acquire_shared(source, interval_seconds)
                return
            except StoreUnavailableError as error:
                log.warning("rate_limit_fallback_local", source=source, reason=str(error))
        await self._acquire_local(source, interval_seconds)

    async def _acquire_shared(self, source: str, interval_seconds: float) -> None:
        key = f"{self._key_prefix}:{source}"
        interval_ms = max(1, int(interval_seconds * 1000))
        while True:
            with cache.translate_errors("rate limit"):
                if await self._client.set(key, b"1", nx=True, px=interval_ms):
                    return
                remaining_ms = await self._client.pttl(key)
            await asyncio.sleep(max(remaining_ms, 1) / 1000)

    async def _acquire_local(self, source: str, interval_seconds: float) -> None:
        async with self._local_lock:
            now = time.monotonic()
            slot = max(now, self._local_next_slot.get(source, now))
            self._local_next_slot[source] = slot + interval_seconds
        await asyncio.sleep(slot - now)


class DailyBudgetSpent(Exception):
    """The source's daily request budget is spent: its run stops here, keeping what it read, and the runs after
    midnight (Korean time) go on. Not a `PipelineError`: nothing failed, so nothing retries it and no circuit
    breaker counts it."""


BUDGET_KEY_SECONDS = 2 * 24 * 3600  # a day's counter outlives its day, whatever the clocks say


class RequestBudget:
    def __init__(self, client: redis.Redis | None, *, key_prefix: str = "aegis:requests") -> None:
        self._client = client
        self._key_prefix = key_prefix
        self._local_counts: dict[str, int] = {}

    def key(self, source: str, now: datetime | None = None) -> str:
        """The counter of `source`'s requests on the Korean day of `now` (default: now)."""
        day = (now or datetime.now(UTC)).astimezone(KST).date().isoformat()
        return f"{self._key_prefix}:{source}:{day}"

    async def spend(self, source: str, budget: int | None) -> None:
        """Count one request to `source`; `DailyBudgetSpent` when it would be one more than `budget` today."""
        if budget is None:
            return
        key = self.key(source)
        used = None
        if self._client is not None:
            try:
                with cache.translate_errors("request budget"):
                    async with self._client.pipeline(transaction=True) as pipe:
                        used, _ = await pipe.incr(key).expire(key, BUDGET_KEY_SECONDS).execute()
            except StoreUnavailableError as error:
                log.warning("request_budget_fallback_local", source=source, reason=str(error))
        if used is None:
            used = self._local_counts[key] = self._local_counts.get(key, 0) + 1
        if used > budget:
            raise DailyBudgetSpent(
                f"{source}: daily request budget spent ({budget} requests on {key.rsplit(':', 1)[1]}, Korean time); "
                "the runs after midnight KST go on"
            )

    async def used(self, source: str) -> int:
        """Requests counted for `source` today (0 when Redis cannot be read and nothing was counted here)."""
        key = self.key(source)
        if self._client is not None:
            try:
                with cache.translate_errors("request budget"):
                    return int(await self._client.get(key) or 0)
            except StoreUnavailableError:
                pass
        return self._local_counts.get(key, 0)
