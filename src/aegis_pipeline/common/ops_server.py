"""The operations endpoints every long-running command serves on METRICS_HOST:METRICS_PORT (and HEALTH_HOST):

- `GET /health`: the process is alive (liveness probe);
- `GET /health/ready`: the process is doing its work (readiness probe): 503 with the reason otherwise;
- `GET /metrics`: Prometheus exposition of `common.metrics`; `before_scrape` (optional) refreshes gauges read
  from a store first (e.g. the dead-letter counts), within SCRAPE_REFRESH_TIMEOUT_SECONDS: when it fails or is
  slow the scrape still answers, with the values of the last refresh.

With `discovery_dir` (PROMETHEUS_FILE_SD_DIR, set by the embedded stack) the server also announces its address to
Prometheus's file-based discovery while it runs: one `<job>-<pid>.json` file, written when it starts listening
and removed when it stops. Compose and Kubernetes discover the processes themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.settings import Settings

log = get_logger(__name__)

ReadinessCheck = Callable[[], str | None]  # None when ready, else why not
ScrapeRefresh = Callable[[], Awaitable[None]]
SCRAPE_REFRESH_TIMEOUT_SECONDS = 2.0


def ops_hosts(settings: Settings) -> tuple[str, ...]:
    """The addresses the operations server listens on: METRICS_HOST, and HEALTH_HOST when it is another."""
    return tuple(dict.fromkeys(host for host in (settings.metrics_host, settings.health_host) if host))


class OpsServer:
    """`hosts`: the addresses it listens on, all on `port` (METRICS_HOST, and HEALTH_HOST when it differs)."""

    def __init__(self, port: int, readiness: ReadinessCheck, *, hosts: tuple[str, ...] = ("127.0.0.1",),
                 before_scrape: ScrapeRefresh | None = None, job: str = "aegis",
                 discovery_dir: Path | None = None) -> None:
        self._port = port
        self._hosts = tuple(dict.fromkeys(hosts))
        self._readiness = readiness
        self._before_scrape = before_scrape
        self._runner: web.AppRunner | None = None
        self._job = job
        self._discovery_file = discovery_dir / f"{job}-{os.getpid()}.json" if discovery_dir else None

    @property
    def port(self) -> int:
        """The port it listens on (the one the system chose when METRICS_PORT is 0)."""
        return self._port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/health/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        first, *others = self._hosts
        await web.TCPSite(self._runner, first, self._port).start()
        self._port = self._runner.addresses[0][1]  # the port the system chose when METRICS_PORT is 0
        for host in others:
            await web.TCPSite(self._runner, host, self._port).start()
        self._announce()
        log.info("ops_server_started", hosts=list(self._hosts), port=self._port)

    async def stop(self) -> None:
        if self._discovery_file is not None:
            self._discovery_file.unlink(missing_ok=True)
        if self._runner is not None:
            await self._runner.cleanup()

    def _announce(self) -> None:
        if self._discovery_file is None:
            return
        host = "127.0.0.1" if self._hosts[0] in ("0.0.0.0", "::") else self._hosts[0]
        target = [{"targets": [f"{host}:{self._port}"], "labels": {"service": self._job}}]
        self._discovery_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._discovery_file.with_suffix(".tmp")  # Prometheus reads *.json: never half a file
        temporary.write_text(json.dumps(target), encoding="utf-8")
        temporary.replace(self._discovery_file)

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
