"""Is each engine answering? Checked through the project's own clients in `stores/`, concurrently; the sample
sources (an HTTP server, no engine of `Settings`) by their robots.txt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx

from aegis_pipeline.common.errors import StoreUnavailableError
from aegis_pipeline.devstack import monitoring
from aegis_pipeline.settings import ENGINE_FIELDS, Settings
from aegis_pipeline.stores import cache, kafka, postgres, search, vectors
from aegis_pipeline.stores.graph import open_graph_store


@dataclass(frozen=True)
class EngineHealth:
    url: str
    healthy: bool
    error: str | None = None


def _ping_graph(settings: Settings) -> None:
    with open_graph_store(settings, read_only=True) as store:
        store.ping()


def _checks(settings: Settings) -> dict[str, Callable[[], Awaitable[None]]]:
    return {
        "postgres": lambda: postgres.ping(settings.postgres_dsn()),
        "kafka": lambda: kafka.ping(settings),
        "redis": lambda: cache.ping(settings),
        "milvus": lambda: asyncio.to_thread(vectors.ping, settings),
        "graph": lambda: asyncio.to_thread(_ping_graph, settings),
        "search": lambda: asyncio.to_thread(search.ping, settings),
        "pushgateway": _monitoring_check(settings.prometheus_pushgateway_url),
        "alertmanager": _monitoring_check(settings.alertmanager_url),
        "prometheus": _monitoring_check(settings.prometheus_url),
    }


def _monitoring_check(url: str) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        if not url:
            raise StoreUnavailableError("not configured")
        await asyncio.to_thread(monitoring.ping, url)
    return check


def ping_sample_sources(url: str, *, timeout_seconds: float = 5) -> None:
    """The sample-sources server answers at `url`: its robots.txt (neither paged nor armed with a quirk), which
    also tells it from another server that took the port."""
    response = httpx.get(f"{url}/robots.txt", timeout=timeout_seconds)
    response.raise_for_status()
    if "Disallow: /board/private/" not in response.text:
        raise StoreUnavailableError(f"{url} is not the sample sources' server (unexpected robots.txt)")


def sample_sources_problem(url: str, *, timeout_seconds: float = 5) -> str | None:
    """Why the sample-sources server at `url` does not answer, or None when it does."""
    try:
        ping_sample_sources(url, timeout_seconds=timeout_seconds)
    except (httpx.HTTPError, StoreUnavailableError) as error:
        return f"{type(error).__name__}: {error}"
    return None


async def check_sample_sources(url: str, *, timeout_seconds: float = 10) -> EngineHealth:
    return await _check_one(lambda: asyncio.to_thread(ping_sample_sources, url), url, timeout_seconds)


async def wait_until_sample_sources_answer(url: str, *, timeout_seconds: float) -> None:
    """Poll until the sample-sources server answers; raise `StoreUnavailableError` with its last problem."""
    deadline = time.monotonic() + timeout_seconds
    while (problem := await asyncio.to_thread(sample_sources_problem, url)) is not None:
        if time.monotonic() > deadline:
            raise StoreUnavailableError(f"sample sources not answering after {timeout_seconds:.0f} s: {problem}")
        await asyncio.sleep(0.2)


async def _check_one(check: Callable[[], Awaitable[None]], url: str, timeout_seconds: float) -> EngineHealth:
    try:
        await asyncio.wait_for(check(), timeout_seconds)
    except Exception as error:  # a health check reports every failure as "unhealthy", with its reason
        return EngineHealth(url=url, healthy=False, error=f"{type(error).__name__}: {error}")
    return EngineHealth(url=url, healthy=True)


async def check_engines(settings: Settings, *, timeout_seconds: float = 10) -> dict[str, EngineHealth]:
    checks = _checks(settings)
    with _client_libraries_quiet():
        results = await asyncio.gather(
            *(_check_one(checks[name], settings.engine_url(name), timeout_seconds) for name in ENGINE_FIELDS)
        )
    return dict(zip(ENGINE_FIELDS, results, strict=True))


@contextlib.contextmanager
def _client_libraries_quiet() -> Iterator[None]:
    """A failed check is reported in its result; the clients' own error logs would only say it twice."""
    loggers = [logging.getLogger(name) for name in ("aiokafka", "elastic_transport", "pymilvus", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def wait_until_healthy(settings: Settings, *, timeout_seconds: float) -> None:
    """Poll until every engine answers; raise `StoreUnavailableError` naming those that never did."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        health = await check_engines(settings, timeout_seconds=5)
        unhealthy = {name: item.error for name, item in health.items() if not item.healthy}
        if not unhealthy:
            return
        if time.monotonic() > deadline:
            raise StoreUnavailableError(f"engines not healthy after {timeout_seconds:.0f} s: {unhealthy}")
        await asyncio.sleep(0.5)
