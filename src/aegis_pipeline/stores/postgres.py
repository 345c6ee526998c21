"""PostgreSQL, the source of truth: an asyncpg pool and the translation of its errors.

Every connection is made from `Settings.postgres_dsn()`, which carries the TLS settings (POSTGRES_SSLMODE,
POSTGRES_SSL_ROOT_CERT) as libpq's `sslmode` and `sslrootcert`: asyncpg applies them as libpq does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg

from aegis_pipeline.common.errors import StoreRefusedError, StoreUnavailableError
from aegis_pipeline.settings import Settings

# Errors after which the same statement may succeed: the server went away, was restarting, or refused us.
_TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)


# Refusals no retry changes, until a person fixes the settings: a wrong password or a connection pg_hba.conf does
# not allow (SQLSTATE class 28, e.g. one without TLS), a server certificate that does not verify, a client setting
# asyncpg cannot use (a root certificate file that is missing). Listed before `_TRANSIENT`, which would take the
# last two for network trouble (OSError, InterfaceError).
_REFUSED = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    ssl.SSLCertVerificationError,
    asyncpg.exceptions.ClientConfigurationError,
)


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    """Turn a transient driver failure into `StoreUnavailableError` (retriable) and a refused connection into
    `StoreRefusedError` (not retriable); let the others through."""
    try:
        yield
    except _REFUSED as error:
        # The messages name the user, host and database, or the certificate's problem: never the password.
        raise StoreRefusedError(f"postgres {operation} refused: {error}", store="postgres") from error
    except _TRANSIENT as error:
        raise StoreUnavailableError(f"postgres {operation} failed: {type(error).__name__}", store="postgres") from error


async def create_pool(settings: Settings, *, min_size: int = 1) -> asyncpg.Pool:
    with translate_errors("connect"):
        return await asyncpg.create_pool(
            settings.postgres_dsn(),
            min_size=min_size,
            max_size=settings.postgres_pool_max_size,
            command_timeout=30,
        )


@contextlib.asynccontextmanager
async def connect(dsn: str, *, timeout_seconds: float = 5.0) -> AsyncIterator[asyncpg.Connection]:
    """One connection for short tasks (health checks, administration)."""
    with translate_errors("connect"):
        connection = await asyncpg.connect(dsn, timeout=timeout_seconds)
    try:
        yield connection
    finally:
        await connection.close()


async def ping(dsn: str) -> None:
    async with connect(dsn) as connection:
        await connection.fetchval("SELECT 1")


async def ensure_database(server_dsn: str, database: str) -> None:
    """Create `database` if it does not exist (connects to the server's maintenance database)."""
    async with connect(server_dsn) as connection:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Identifiers cannot be bound as parameters; quote_ident makes the name inert.
            quoted = await connection.fetchval("SELECT quote_ident($1)", database)
            await connection.execute(f"CREATE DATABASE {quoted}")


async def drop_database(server_dsn: str, database: str) -> None:
    """Drop `database` if it exists, closing its connections (scratch databases of tests and benchmarks)."""
    async with connect(server_dsn) as connection:
        quoted = await connection.fetchval("SELECT quote_ident($1)", database)
        await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")


LOCK_POLL_SECONDS = 0.5


class LockBusyError(StoreUnavailableError):
    """Another process held the lock longer than the caller would wait: retriable, and for the sync not a failure
    of either run, the caller's work is left to a later run (`sync.run` reports its target `busy`)."""

    def __init__(self, name: str, waited_seconds: float) -> None:
        super().__init__(f"{name} is held by another run (waited {waited_seconds:g} s)", lock=name)


@contextlib.asynccontextmanager
async def session_lock(pool: asyncpg.Pool, name: str, *,
                       wait_seconds: float = 30.0) -> AsyncIterator[asyncpg.Connection]:
    """Hold the session advisory lock `name` (one holder at a time, across every process) on a connection of
    `pool`, yielded for work done under the lock: unlike a transaction's lock, what that work commits is
    committed before the lock is released. Waits up to `wait_seconds` for the holder (asking again every
    LOCK_POLL_SECONDS, so no statement outlives the pool's command timeout), then raises `LockBusyError`."""
    deadline = time.monotonic() + wait_seconds
    with translate_errors(f"lock {name}"):
        connection = await pool.acquire()
        try:
            while not await connection.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", name):
                if time.monotonic() >= deadline:
                    raise LockBusyError(name, wait_seconds)
                await asyncio.sleep(LOCK_POLL_SECONDS)
        except BaseException:
            await pool.release(connection)
            raise
    try:
        yield connection
    finally:
        try:
            await connection.execute("SELECT pg_advisory_unlock(hashtext($1))", name)
        finally:
            await pool.release(connection)
