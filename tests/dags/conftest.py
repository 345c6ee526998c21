"""Fixtures shared by the DAG tests: Airflow's environment on the session stack, `airflow standalone` serving it,
and pending records to score.

Airflow runs in subprocesses with its own AIRFLOW_HOME and SQLite metadata database in a temp dir, so its
configuration and logging never touch the test process. A test module changes the environment Airflow runs with
by overriding `airflow_env` (requesting this one): `airflow_server` then starts with the module's environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from aegis_pipeline.devstack.stack import free_port
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

REPO = Path(__file__).parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def module_sources() -> list[str]:
    """Source names of the module's own (so no other test's records get in the way), in the sources file Airflow
    reads (the DAGs' `source` param accepts only the configured sources); `fresh_source` hands them out."""
    return [f"t{uuid.uuid4().hex[:8]}" for _ in range(12)]


@pytest.fixture
def fresh_source(module_sources: list[str]) -> str:
    """A source name no other test uses, that `policy_cold_path`'s `source` param accepts."""
    return module_sources.pop()


@pytest.fixture(scope="module")
def airflow_env(stack: Settings, tmp_path_factory: pytest.TempPathFactory, module_sources: list[str]) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow")
    sources_file = home / "sources.yaml"  # only the names count where the DAGs read it (their `source` param)
    sources_file.write_text("sources:\n" + "".join(f"  - name: {name}\n" for name in module_sources),
                            encoding="utf-8")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "LOG_JSON": "false",
        "SOURCES_FILE": str(sources_file),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone runs `airflow`
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


@pytest.fixture(scope="module")
def airflow_server(airflow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`airflow standalone` (API server, scheduler, DAG processor, triggerer) on a free port; stopped after."""
    port = free_port()
    env = {**airflow_env, "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__HOST": "127.0.0.1",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__CORE__PARALLELISM": "4", "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2", "COLD_PATH_BATCH_SIZE": "25",
           # Only the run the test triggers: no hourly run created when the DAG is unpaused.
           "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
    log_path = tmp_path_factory.mktemp("airflow-log") / "standalone.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([AIRFLOW, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log_path.read_text()[-3000:]
            time.sleep(2)
        else:
            pytest.fail("Airflow did not start: " + log_path.read_text()[-3000:])
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


StorePending = Callable[[Settings, str, int], Awaitable[list[str]]]


async def _store_pending(settings: Settings, source: str, count: int) -> list[str]:
    records = [make_record(index, source=source) for index in range(count)]
    pool = await postgres.create_pool(settings)
    try:
        outcome = await PolicyStore(pool).store_batch([normalize_record(r) for r in records], lambda stored: [])
    finally:
        await pool.close()
    return [item.policy_id for item in outcome.stored]


@pytest.fixture
def store_pending() -> StorePending:
    """`await store_pending(settings, source, count)`: `count` synthetic records of `source` stored as the hot path
    stores them (`pending_validation`, waiting for the cold path); their policy ids."""
    return _store_pending
