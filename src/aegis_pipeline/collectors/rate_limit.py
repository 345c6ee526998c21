"""A per-source request rate that holds across replicas: one slot per interval, claimed in Redis.

`SET key NX PX interval` succeeds for exactly one caller per interval, whichever replica it runs in. When Redis
cannot be reached, the limiter falls back to a per-process limit (and logs it): collection goes on, at worst at
the source's rate once per replica.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as redis

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
