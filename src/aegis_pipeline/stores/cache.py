"""Redis, the cache in front of PostgreSQL: an asyncio client and error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aegis_pipeline.common.errors import StoreUnavailableError
from aegis_pipeline.settings import Settings


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    # A server that refuses the command (out of memory, a read-only replica) is as unusable as one that is down:
    # for the cache both mean "carry on without it", never "this record is poison". So does a refused login
    # (AuthenticationError, a ConnectionError), named in the message.
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, ResponseError, OSError) as error:
        raise StoreUnavailableError(f"redis {operation} failed: {type(error).__name__}", store="redis") from error


def client_options(settings: Settings) -> dict[str, Any]:
    """The login (ACL user, password) and, for a rediss:// URL, the CA that checks the server's certificate:
    the security every Redis client of the pipeline is built with."""
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password.get_secret_value():
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_url.startswith("rediss://") and settings.redis_ca_file is not None:
        # Only a TLS connection takes it; redis-py checks the certificate and host name by default (system CAs
        # when no CA file is given).
        options["ssl_ca_certs"] = str(settings.redis_ca_file)
    return options


def create_client(settings: Settings, *, timeout_seconds: float = 2.0) -> redis.Redis:
    """A client of REDIS_URL, logged in as the settings say."""
    return redis.Redis.from_url(settings.redis_url, **client_options(settings), socket_timeout=timeout_seconds,
                                socket_connect_timeout=timeout_seconds)


async def ping(settings: Settings) -> None:
    client = create_client(settings)
    try:
        with translate_errors("ping"):
            await client.ping()
    finally:
        await client.aclose()
