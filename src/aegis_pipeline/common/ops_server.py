"""The operations endpoints every long-running command serves on METRICS_PORT:

- `GET /health`: the process is alive (liveness probe);
- `GET /health/ready`: the process is doing its work (readiness probe): 503 with the reason otherwise;
- `GET /metrics`: Prometheus exposition of `common.metrics`; `before_scrape` (optional) refreshes gauges read
  from a store first (e.g. the dead-letter counts), within SCRAPE_REFRESH_TIMEOUT_SECONDS: when it fails or is
  slow the scrape still answers, with the values of the last refresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aegis_pipeline.common.logging import get_logger

log = get_logger(__name__)

ReadinessCheck = Callable[[], str | None]  # None when ready, else why not
ScrapeRefresh = Callable[[], Awaitable[None]]
SCRAPE_REFRESH_TIMEOUT_SECONDS = 2.0


class OpsServer:
    def __init__(self, port: int, readiness: ReadinessCheck, *, host: str = "0.0.0.0",
                 before_scrape: ScrapeRefresh | None = None) -> None:
        self._port = port
        self._host = host
        self._readiness = readiness
        self._before_scrape = before_scrape
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/health/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        log.info("ops_server_started", port=self._port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _ready(self, request: web.Request) -> web.Response:
        reason = self._readiness()
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not_ready", "reason": reason}, status=503)

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._before_scrape is not None:
            try:
                await asyncio.wait_for(self._before_scrape(), SCRAPE_REFRESH_TIMEOUT_SECONDS)
            except Exception as error:  # a store that is down must not make the whole scrape fail
                log.warning("metrics_refresh_failed", error=type(error).__name__, reason=str(error))
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response
