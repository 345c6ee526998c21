"""`aegis-pipeline dev up | status | down`: the embedded engine stack and its state file.

All data lives under one directory (`AEGIS_DATA_DIR`, default `.aegis/`). `up` starts each engine on a free
port, records pid, port and settings in `<data_dir>/stack.json`, waits until every engine answers through the
project's own clients, then creates the topics and applies the migrations. Everything is idempotent: `up` on a
running stack changes nothing, and `up` after a crash restarts only what is no longer running, on the port it
had when that port is still free (so processes already connected to it reconnect). `down` stops only
processes `up` started, identified by pid and command line. Engines configured explicitly (environment or
`.env`, e.g. real clusters) are never started here. The local stand-ins of the public sources run as one more
engine (`sample_sources`): `sample_sources()` says where, for the demo and for `collect`/`scheduler` without a
sources file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_fixed

from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.devstack.engines import (
    ENGINE_TYPES,
    EmbeddedEngine,
    LaunchedProcess,
    SampleSourcesEngine,
    is_running,
    stop_process,
)
from aegis_pipeline.devstack.health import (
    EngineHealth,
    check_engines,
    check_sample_sources,
    wait_until_healthy,
    wait_until_sample_sources_answer,
)
from aegis_pipeline.settings import (
    CoreSettings,
    Settings,
    explicit_values,
    explicitly_configured_engines,
    load_settings,
)

log = get_logger(__name__)


@dataclass
class EngineRecord:
    port: int
    pid: int | None = None
    marker: str | None = None

    @property
    def process(self) -> LaunchedProcess | None:
        return LaunchedProcess(self.pid, self.marker) if self.pid is not None and self.marker else None


@dataclass
class StackState:
    data_dir: str
    engines: dict[str, EngineRecord] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        if not path.is_file():
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
        engines = {name: EngineRecord(**record) for name, record in raw.get("engines", {}).items()}
        return cls(data_dir=raw["data_dir"], engines=engines, settings=raw.get("settings", {}))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False), encoding="utf-8")
        temporary.replace(path)  # atomic: readers never see half a file


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT does not count
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _unclaimed_port(state: StackState) -> int:
    """A free port that no engine of this stack holds. An engine launched a moment ago may not listen yet (the
    Tansu broker binds after it starts), so the system could hand its port out again to the next engine."""
    claimed = {record.port for record in state.engines.values()}
    while (port := free_port()) in claimed:
        pass
    return port


@contextlib.contextmanager
def _exclusive(data_dir: Path) -> Iterator[None]:
    """Serialise `up` and `down` on one data directory across processes."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".stack.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _engine_is_up(engine: EmbeddedEngine, record: EngineRecord | None) -> bool:
    if record is None:
        return False
    process = record.process
    return is_running(process) if process is not None else engine.home.exists()


def up(core: CoreSettings, *, startup_timeout_seconds: float = 90) -> Settings:
    """Start what is not running, wait for health, create topics, apply migrations; return the settings."""
    data_dir = core.aegis_data_dir
    explicit = explicitly_configured_engines()
    configured = explicit_values()  # read once: each engine's peers are those started so far, and these
    with _exclusive(data_dir):
        state = StackState.load(core.stack_state_path) or StackState(data_dir=str(data_dir.resolve()))
        for engine_type in ENGINE_TYPES:
            engine = engine_type(data_dir)
            if engine.name in explicit:
                state.engines.pop(engine.name, None)
                state.settings.pop(engine.name, None)
                log.info("engine_external", engine=engine.name)
                continue
            record = state.engines.get(engine.name)
            if _engine_is_up(engine, record):
                log.info("engine_already_running", engine=engine.name, pid=record.pid if record else None)
                continue
            # An engine that died comes back on its port, so running clients (and their settings) reach it again.
            port = record.port if record is not None and port_is_free(record.port) else _unclaimed_port(state)
            started = time.monotonic()
            known = {name: value for values in state.settings.values() for name, value in values.items()}
            process = engine.launch(port, peers={**known, **configured})
            state.engines[engine.name] = EngineRecord(
                port=port,
                pid=process.pid if process else None,
                marker=process.marker if process else None,
            )
            state.settings[engine.name] = engine.settings_values(port)
            state.save(core.stack_state_path)  # after each engine, so `down` can clean up a half-done `up`
            log.info("engine_started", engine=engine.name, port=port,
                     pid=process.pid if process else None, elapsed_ms=int((time.monotonic() - started) * 1000))
        state.save(core.stack_state_path)
        settings = load_settings(aegis_data_dir=data_dir)
        asyncio.run(_prepare(settings, startup_timeout_seconds, _sample_sources_of(state)))
    return settings


async def _prepare(settings: Settings, timeout_seconds: float, sample_sources: SampleSourcesServer | None) -> None:
    from aegis_pipeline.schemas.migrations import upgrade_to_head
    from aegis_pipeline.stores import kafka, postgres

    server_dsn = settings.postgres_dsn(database="postgres")
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(lambda error: getattr(error, "retriable", False)),
        stop=stop_after_delay(timeout_seconds),
        wait=wait_fixed(0.3),
        reraise=True,
    ):
        with attempt:  # the server may still be starting
            await postgres.ensure_database(server_dsn, settings.postgres_db)
    await wait_until_healthy(settings, timeout_seconds=timeout_seconds)
    created = await kafka.ensure_pipeline_topics(settings)
    log.info("topics_ready", created=created, partitions=settings.kafka_topic_partitions)
    await asyncio.to_thread(upgrade_to_head, settings)
    if sample_sources is not None:
        await wait_until_sample_sources_answer(sample_sources.url, timeout_seconds=timeout_seconds)


@dataclass(frozen=True)
class SampleSourcesServer:
    """Where the stack's sample-sources engine serves, and the serviceKey it accepts: the values of
    `${SAMPLE_SOURCES_URL}` and `${SAMPLE_SERVICE_KEY}` in devstack/sample_sources.yaml."""

    url: str
    service_key: str

    @property
    def environment(self) -> dict[str, str]:
        return {"SAMPLE_SOURCES_URL": self.url, "SAMPLE_SERVICE_KEY": self.service_key}


def _sample_sources_of(state: StackState | None) -> SampleSourcesServer | None:
    values = state.settings.get(SampleSourcesEngine.name) if state is not None else None
    if not values:
        return None
    return SampleSourcesServer(url=values["sample_sources_url"], service_key=values["sample_service_key"])


def sample_sources(core: CoreSettings) -> SampleSourcesServer | None:
    """The sample-sources engine the stack in `core.aegis_data_dir` records (None without one); whether it answers
    is `health.sample_sources_problem(server.url)`."""
    return _sample_sources_of(StackState.load(core.stack_state_path))


def status(core: CoreSettings) -> dict[str, Any]:
    """`{"engines": {name: {"url", "healthy", "embedded", "pid", "error"}}}` for the stack the settings reach, with
    the sample-sources engine when the stack has one."""
    state = StackState.load(core.stack_state_path)
    try:
        settings = load_settings(aegis_data_dir=core.aegis_data_dir)
    except SystemExit as error:
        return {"engines": {}, "error": str(error)}
    health = asyncio.run(_check_all(settings, _sample_sources_of(state)))
    report: dict[str, Any] = {}
    for name, engine_health in health.items():
        record = state.engines.get(name) if state else None
        report[name] = {
            "url": engine_health.url,
            "healthy": engine_health.healthy,
            "embedded": record is not None,
            "pid": record.pid if record else None,
            "error": engine_health.error,
        }
    return {"engines": report, "data_dir": str(core.aegis_data_dir.resolve())}


async def _check_all(settings: Settings, sample_sources: SampleSourcesServer | None) -> dict[str, EngineHealth]:
    if sample_sources is None:
        return await check_engines(settings)
    health, sample_health = await asyncio.gather(check_engines(settings), check_sample_sources(sample_sources.url))
    return {**health, SampleSourcesEngine.name: sample_health}


def down(core: CoreSettings, *, purge: bool = False) -> list[str]:
    """Stop the engines this data directory's `up` started; with `purge`, delete their data too."""
    data_dir = core.aegis_data_dir
    stopped = []
    with _exclusive(data_dir):
        state = StackState.load(core.stack_state_path)
        if state is not None:
            for engine_type in reversed(ENGINE_TYPES):
                record = state.engines.get(engine_type.name)
                process = record.process if record else None
                if process is not None and is_running(process):
                    stop_process(process, stop_signal=engine_type.stop_signal)
                    stopped.append(engine_type.name)
                    log.info("engine_stopped", engine=engine_type.name, pid=process.pid)
            core.stack_state_path.unlink(missing_ok=True)
        if purge:
            for engine_type in ENGINE_TYPES:
                shutil.rmtree(engine_type(data_dir).home, ignore_errors=True)
    return stopped
