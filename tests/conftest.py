"""Shared fixtures: one embedded engine stack for the whole test session, in a temporary directory.

The stack is started by the project's own code (`devstack.stack.up`), exactly as `aegis-pipeline dev up` does,
and stopped (data deleted) when the session ends. No test skips for a missing engine: the engines are ours.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from aegis_pipeline.settings import ENGINE_FIELDS, CoreSettings, Settings, load_core_settings

# Hypothesis: a failing property test must show its failing example. Hypothesis's pytest plugin also writes a
# patch adding `@example(...)` for it, with libcst; but once Twisted is imported (Scrapy, `collectors.html_board`),
# zope.interface has left a `__provides__` descriptor on `abc.ABC` that raises AttributeError, and libcst's
# transformers `getattr` every name `dir()` lists (LibCST issue #1458): the patch writer then crashed pytest
# (INTERNALERROR, `AttributeError: __provides__`) before the failure and its example were shown. The plugin
# skips the patch when it cannot import its patch writer (as without the optional codemod extras): so it can't.
# The example is still reported with the failure, and stored in .hypothesis/examples to be tried first next time.
sys.modules["hypothesis.extra._patching"] = None  # type: ignore[assignment]

# Connection values a developer may have exported must not leak into tests: the tests run their own stack.
_ENGINE_ENV = {field.upper() for fields in ENGINE_FIELDS.values() for field in fields}


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.upper() in _ENGINE_ENV}
    data_dir = tmp_path_factory.mktemp("aegis")
    os.environ["AEGIS_DATA_DIR"] = str(data_dir)
    # The fixtures' programmes carry fixed 2025-2026 dates, most of them past by now: with the production grace,
    # every cold-path run would archive them as closed and the tests about scoring, sync and search would find an
    # empty catalogue. Ten years keeps them; tests/cold_path/test_lifecycle.py sets its own (docs/lifecycle.md).
    os.environ["ARCHIVE_AFTER_DAYS"] = "3650"
    yield data_dir
    os.environ.update(saved)


@pytest.fixture(scope="session")
def stack(_isolated_environment: Path) -> Iterator[Settings]:
    """The running embedded stack's settings (started once per session)."""
    from aegis_pipeline.devstack import stack as devstack

    core = load_core_settings(aegis_data_dir=_isolated_environment)
    settings = devstack.up(core)
    _session_stacks.append(core)
    yield settings
    devstack.down(core, purge=True)


_session_stacks: list[CoreSettings] = []  # the started session stack, once `stack` has run


@pytest.fixture(scope="module", autouse=True)
def _session_engines_outlive_each_module() -> Iterator[None]:
    """An engine of the session stack that dies makes every later test fail far from the cause: name the module
    it died in (its last test errors at teardown) with the end of the engine's log."""
    yield
    if not _session_stacks:
        return
    from aegis_pipeline.devstack import stack as devstack
    from aegis_pipeline.devstack.engines import ENGINE_TYPES, is_running

    core = _session_stacks[0]
    state = devstack.StackState.load(core.stack_state_path)
    records = state.engines if state else {}
    dead = [engine for engine in ENGINE_TYPES
            if (process := records[engine.name].process if engine.name in records else None) is not None
            and not is_running(process)]
    if state is None or dead:
        _session_stacks.clear()  # report it once
        logs = "\n".join(f"--- {engine.name}: {engine(core.aegis_data_dir).log_path}\n"
                         f"{_tail(engine(core.aegis_data_dir).log_path)}" for engine in dead)
        pytest.fail(f"session stack engine(s) died during this module: {[engine.name for engine in dead]}"
                    f"{' (stack state file gone)' if state is None else ''}\n{logs}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(log unreadable: {error})"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that run the CLI in-process (click's CliRunner): the CLI configures logging onto the runner's
    streams and binds the run's context; both are put back when the test ends."""
    import logging

    import structlog

    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield
    structlog.configure(**saved_config)
    root.handlers[:], root.level = saved_handlers, saved_level
    structlog.contextvars.clear_contextvars()


OwnTopics = Callable[..., Awaitable[Settings]]


@pytest.fixture
def own_topics(stack: Settings) -> OwnTopics:
    """`await own_topics(partitions=N, **overrides)`: the stack's settings with a raw, events and dead-letter
    topic of this test's own (created), so it reads back only its records and events; `overrides` change other
    settings too."""

    async def with_own_topics(*, partitions: int, **overrides: Any) -> Settings:
        from aegis_pipeline.stores import kafka

        settings = await kafka.with_own_topics(stack, uuid.uuid4().hex[:8], partitions=partitions)
        return settings.model_copy(update=overrides)

    return with_own_topics


@dataclass
class Push:
    method: str
    job: str   # the path's job: /metrics/job/<job>
    body: str  # Prometheus text format, as prometheus_client sends it


@dataclass
class FakePushgateway:
    url: str
    pushes: list[Push] = field(default_factory=list)

    def bodies(self, job: str) -> list[str]:
        return [push.body for push in self.pushes if push.job == job]


@pytest.fixture
def pushgateway() -> Iterator[FakePushgateway]:
    """A stand-in for the Prometheus Pushgateway on a free loopback port: it records each push and answers 200,
    as the real one does (prometheus_client's push_to_gateway sends PUT /metrics/job/<job> with the text format),
    and answers GET /api/v1/metrics with no group."""
    pushes: list[Push] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8")
            pushes.append(Push(self.command, self.path.removeprefix("/metrics/job/"), body))
            self.send_response(200)
            self.end_headers()

        do_POST = do_PUT

        def do_GET(self) -> None:  # the groups it holds (push_batch_metrics adds to them): none kept here
            body = b'{"status": "success", "data": []}'
            self.send_response(200 if self.path == "/api/v1/metrics" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakePushgateway(f"http://127.0.0.1:{server.server_address[1]}", pushes)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
