"""The policy cache in Redis: `policy:{id}` holds the stored policy as JSON for `POLICY_CACHE_TTL_SECONDS`
(design §6.3: 1 h), replaced whenever the policy changes.

The cache is an optimisation, never a dependency: when Redis is down the hot path carries on, counts what it
could not cache (`policy_cache_writes_total{status="error"}`), and the next change of each policy refills it.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis.asyncio as redis

from common import metrics
from common.errors import StoreUnavailableError
from common.logging import get_logger
from hot_path.store import StoredPolicy
from stores import cache

log = get_logger(__name__)


def cache_key(policy_id: str) -> str:
    return f"policy:{policy_id}"


class PolicyCache:
    def __init__(self, client: redis.Redis, *, ttl_seconds: int) -> None:
        self._client = client
        self._ttl_seconds = ttl_seconds

    async def put_many(self, stored: Sequence[StoredPolicy]) -> int:
        """Cache each stored policy; returns how many were cached (0 when Redis is unavailable)."""
        if not stored:
            return 0
        try:
            with cache.translate_errors("cache policies"):
                async with self._client.pipeline(transaction=False) as pipeline:
                    for item in stored:
                        document = {"policy_id": item.policy_id, "version": item.version,
                                    "status": "pending_validation", **item.policy.as_document()}
                        pipeline.set(cache_key(item.policy_id), orjson.dumps(document), ex=self._ttl_seconds)
                    await pipeline.execute()
        except StoreUnavailableError as error:
            metrics.policy_cache_writes_total.labels(status="error").inc(len(stored))
            log.warning("policy_cache_unavailable", policies=len(stored), reason=str(error))
            return 0
        metrics.policy_cache_writes_total.labels(status="ok").inc(len(stored))
        return len(stored)
