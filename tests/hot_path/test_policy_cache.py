"""The hot path's policy cache on the real Redis: a batch cached with its TTL, a new version replacing the old,
and a Redis that refuses writes (out of memory) treated like one that is down: nothing raised, the policies
kept and refilled later without overwriting what another writer cached meanwhile."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.hot_path.cache import PolicyCache, cache_key
from aegis_pipeline.hot_path.store import StoredPolicy
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis_client(stack: Settings) -> AsyncIterator[redis.Redis]:
    client = cache.create_client(stack)
    try:
        yield client
    finally:
        await client.aclose()


def stored(index: int, version: int = 1, *, revision: int = 0) -> StoredPolicy:
    policy = normalize_record(make_record(index, source="cache_test", revision=revision))
    return StoredPolicy(f"00000000-0000-4000-8000-{index:012d}", version, policy)


async def cached_document(client: redis.Redis, item: StoredPolicy) -> dict | None:
    value = await client.get(cache_key(item.policy_id))
    return None if value is None else json.loads(value)


async def test_a_batch_is_cached_with_its_ttl_and_a_new_version_replaces_the_old(redis_client: redis.Redis) -> None:
    policy_cache = PolicyCache(redis_client, ttl_seconds=120)
    batch = [stored(index) for index in range(1, 301)]
    assert await policy_cache.put_many(batch) == 300

    for item in (batch[0], batch[-1]):
        document = await cached_document(redis_client, item)
        assert document is not None
        assert (document["policy_id"], document["version"], document["title"]) == (
            item.policy_id, 1, item.policy.title)
        assert 0 < await redis_client.ttl(cache_key(item.policy_id)) <= 120

    changed = stored(1, version=2, revision=1)
    assert await policy_cache.put_many([changed]) == 1
    document = await cached_document(redis_client, changed)
    assert document is not None
    assert (document["version"], document["content_hash"]) == (2, changed.policy.content_hash)


async def test_a_redis_that_refuses_writes_is_carried_on_without_and_refilled_later(
        redis_client: redis.Redis) -> None:
    policy_cache = PolicyCache(redis_client, ttl_seconds=120)
    first, second = stored(1001), stored(1002)
    await redis_client.delete(cache_key(first.policy_id), cache_key(second.policy_id))
    original = {**await redis_client.config_get("maxmemory"), **await redis_client.config_get("maxmemory-policy")}
    await redis_client.config_set("maxmemory-policy", "noeviction")
    await redis_client.config_set("maxmemory", 1)  # every write is refused: "OOM command not allowed"
    try:
        assert await policy_cache.put_many([first, second]) == 0
    finally:
        await redis_client.config_set("maxmemory", original["maxmemory"])
        await redis_client.config_set("maxmemory-policy", original["maxmemory-policy"])
    assert await cached_document(redis_client, first) is None

    # Meanwhile another replica cached a newer version of `second`: the refill must not overwrite it.
    newer_second = StoredPolicy(second.policy_id, 2, second.policy)
    await PolicyCache(redis_client, ttl_seconds=120).put_many([newer_second])

    await policy_cache.refill(now=True)
    first_document = await cached_document(redis_client, first)
    second_document = await cached_document(redis_client, second)
    assert first_document is not None and first_document["version"] == 1
    assert second_document is not None and second_document["version"] == 2
    assert 0 < await redis_client.ttl(cache_key(first.policy_id)) <= 120


async def test_the_cache_writes_after_redis_lost_its_scripts(redis_client: redis.Redis) -> None:
    """A restarted Redis has no scripts loaded: the next batch loads the script again by itself."""
    policy_cache = PolicyCache(redis_client, ttl_seconds=120)
    item = StoredPolicy(str(uuid.uuid4()), 1, stored(2001).policy)
    assert await policy_cache.put_many([item]) == 1
    await redis_client.script_flush()
    again = StoredPolicy(str(uuid.uuid4()), 1, item.policy)
    assert await policy_cache.put_many([again]) == 1
    assert await cached_document(redis_client, again) is not None
