"""The Airflow DAGs on the embedded stack: the DAG folder imports without errors (and without I/O), `dag.test()`
of the hourly DAG moves records from pending_validation to active / rejected, and a run triggered through the
REST API (v2, as the UI does) succeeds.

Airflow runs in subprocesses with its own AIRFLOW_HOME and SQLite metadata database in a temp dir, so its
configuration and logging never touch the test process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.synthetic import make_record
from hot_path.cleaning import normalize_record
from hot_path.store import PolicyStore
from settings import Settings
from stores import postgres

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_IDS = {"policy_cold_path", "policy_consistency_repair", "dlq_retry"}
SYNC_LANDED = all(importlib.util.find_spec(name) is not None for name in ("sync.run", "sync.consistency"))


@pytest.fixture(scope="module")
def airflow_env(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "LOG_JSON": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone runs `airflow`
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    return env


async def store_pending(settings: Settings, source: str, count: int) -> list[str]:
    records = [make_record(index, source=source) for index in range(count)]
    pool = await postgres.create_pool(settings)
    try:
        outcome = await PolicyStore(pool).store_batch([normalize_record(r) for r in records], lambda stored: [])
    finally:
        await pool.close()
    return [item.policy_id for item in outcome.stored]


async def statuses(settings: Settings, source: str) -> dict[str, int]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch(
            "SELECT status, count(*) AS n FROM policies WHERE source_system = $1 GROUP BY status", source)
    return {row["status"]: row["n"] for row in rows}


DAG_TEST_SCRIPT = """
import json, sys, time
started = time.monotonic()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
import_seconds = time.monotonic() - started
dag = bag.get_dag("policy_cold_path")
for task in dag.tasks:
    task.retries = 0  # one attempt: a failure shows at once instead of waiting for the retry delay
run = dag.test(run_conf={"source": sys.argv[2], "limit": 50})
states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}

# How a failing step reaches Airflow: a final error fails the task for good, a transient one is left to retries.
from common.errors import StoreUnavailableError, ValidationFailedError
from dags._tasks import run_pipeline_step
raised = {}
for name, error in (("final", ValidationFailedError("broken")), ("transient", StoreUnavailableError("down"))):
    async def step(settings, error=error):
        raise error
    try:
        run_pipeline_step(step)
    except Exception as caught:
        raised[name] = [type(caught).__name__, str(caught)]
print("RESULT " + json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dag_ids),
      "state": str(run.state), "tasks": states, "import_seconds": import_seconds, "raised": raised}))
"""


async def test_dag_folder_loads_and_the_hourly_dag_scores_pending_records(stack: Settings,
                                                                            airflow_env: dict[str, str]) -> None:
    source = f"dag_{uuid.uuid4().hex[:6]}"
    await store_pending(stack, source, 6)
    assert await statuses(stack, source) == {"pending_validation": 6}

    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", DAG_TEST_SCRIPT, str(REPO / "dags"), source], env=airflow_env,
        capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))

    assert result["errors"] == {}
    assert DAG_IDS <= set(result["dags"])
    assert result["tasks"]["score"] == "success", result
    assert result["raised"] == {"final": ["AirflowFailException", "DP_2001: broken"],
                                "transient": ["StoreUnavailableError", "DP_4003: down"]}
    after = await statuses(stack, source)
    assert "pending_validation" not in after and sum(after.values()) == 6
    assert after.get("active", 0) > 0
    if SYNC_LANDED:
        assert result["state"] == "success", result
        assert set(result["tasks"].values()) == {"success"}
    else:  # sync/ is another issue's work: its tasks fail (module missing) until it lands
        assert result["tasks"]["sync"] == "failed", result


def test_dag_files_do_no_io_at_import(airflow_env: dict[str, str]) -> None:
    """Importing the DAG files with every engine address pointing nowhere still works: they only wire tasks."""
    env = {**airflow_env, "AEGIS_DATA_DIR": "/nonexistent", "POSTGRES_HOST": "192.0.2.1"}
    script = ("import importlib, sys; sys.path.insert(0, sys.argv[1]);"
              "[importlib.import_module('dags.' + n) for n in ('policy_cold_path', 'policy_consistency_repair', "
              "'dlq_retry')]; print('imported')")
    done = subprocess.run([sys.executable, "-c", script, str(REPO)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.stdout.strip().endswith("imported"), done.stderr[-2000:]


@pytest.fixture(scope="module")
def airflow_server(airflow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`airflow standalone` (API server, scheduler, DAG processor, triggerer) on a free port; stopped after."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**airflow_env, "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__HOST": "127.0.0.1",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__CORE__PARALLELISM": "4", "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
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


def _token(base: str) -> str:
    # Simple auth manager with every user an admin (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS): no password.
    response = httpx.get(f"{base}/auth/token", timeout=10, follow_redirects=True)
    response.raise_for_status()
    return response.json()["access_token"]


async def test_a_run_triggered_through_the_rest_api_succeeds(stack: Settings, airflow_server: str) -> None:
    headers = {"Authorization": f"Bearer {_token(airflow_server)}"}
    async with httpx.AsyncClient(base_url=f"{airflow_server}/api/v2", headers=headers, timeout=20) as client:
        deadline = time.monotonic() + 180
        while (await client.get("/dags/policy_cold_path")).status_code != 200:  # the DAG processor parses it
            assert time.monotonic() < deadline, "policy_cold_path never appeared in the API"
            await asyncio.sleep(2)
        assert (await client.patch("/dags/policy_cold_path", json={"is_paused": False})).status_code == 200
        source = f"api_{uuid.uuid4().hex[:6]}"
        await store_pending(stack, source, 4)
        created = await client.post("/dags/policy_cold_path/dagRuns",
                                    json={"logical_date": None, "conf": {"source": source, "limit": 10}})
        assert created.status_code == 200, created.text
        run_id = created.json()["dag_run_id"]
        states, run = await wait_for_run(client, run_id)
        scored = (await client.get(f"/dags/policy_cold_path/dagRuns/{run_id}/taskInstances/score/xcomEntries/"
                                   "return_value")).json()

    assert states["score"] == "success", states
    assert scored["value"]["run_id"] == f"airflow:{run_id}"
    assert sum(scored["value"]["counts"].values()) == 4
    after = await statuses(stack, source)
    assert "pending_validation" not in after and sum(after.values()) == 4
    if SYNC_LANDED:
        assert run["state"] == "success", (run, states)


async def wait_for_run(client: httpx.AsyncClient, run_id: str) -> tuple[dict[str, str | None], dict[str, Any]]:
    """Task states and the run once the run's `score` task (and, when sync has landed, every task and the run
    itself: the scheduler settles the run's state a loop after its last task) is done."""
    deadline = time.monotonic() + 600
    while True:
        tasks = (await client.get(f"/dags/policy_cold_path/dagRuns/{run_id}/taskInstances")).json()
        states = {ti["task_id"]: ti["state"] for ti in tasks["task_instances"]}
        run = (await client.get(f"/dags/policy_cold_path/dagRuns/{run_id}")).json()
        finished = {"success", "failed", "upstream_failed", "skipped"}
        if states.get("score") in finished and (
            not SYNC_LANDED or (set(states.values()) <= finished and run["state"] in finished)
        ):
            return states, run
        assert time.monotonic() < deadline, f"run {run_id} did not finish: {states}, run {run['state']}"
        await asyncio.sleep(3)
