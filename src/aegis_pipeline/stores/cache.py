"""Redis, the cache in front of PostgreSQL: an asyncio client and error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aegis_pipeline.common.errors import StoreUnavailableError


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    # A server that refuses the command (out of memory, a read-only replica) is as unusable as one that is down:
    # for the cache both mean "carry on without it", never "this record is poison".
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, ResponseError, OSError) as error:
        raise StoreUnavailableError(f"redis {operation} failed: {type(error).__name__}", store="redis") from error


def create_client(url: str, *, timeout_seconds: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds)


async def ping(url: str) -> None:
    client = create_client(url)
    try:
        with translate_errors("ping"):
            await client.ping()
    finally:
        await client.aclose()
