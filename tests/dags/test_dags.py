"""The Airflow DAGs on the embedded stack: each DAG file imports fast and without I/O; `dag.test()` of the hourly
DAG scores at most `limit` records, re-scores everything with `rescore_all`, pushes each task's metrics and logs
with the task's context; a sync target that is down fails the sync and repair tasks with its DP code while the
other targets sync; a failing step reaches Airflow as final or retriable, its DP code first; `dlq_retry` retries
letters in the task's own process and fails at once on a configuration error or a configuration key that is no
param; a run triggered through the REST API (v2, as the UI does) succeeds, its task log holding the pipeline's
lines at their own level (INFO, not ERROR); the REST API refuses a run whose params break their JSON schema.

Airflow runs in subprocesses with its own AIRFLOW_HOME and SQLite metadata database in a temp dir, so its
configuration and logging never touch the test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aegis_pipeline.devstack.stack import free_port
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.sync.run import run_sync

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from conftest import FakePushgateway

    StorePending = Callable[[Settings, str, int], Awaitable[list[str]]]  # the `store_pending` fixture

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
DAG_FILES = ("policy_cold_path", "policy_consistency_repair", "dlq_retry")
DAG_IDS = set(DAG_FILES)
ERRORS = "aegis_pipeline.common.errors"  # the module path tracebacks name


async def fetch(settings: Settings, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return [dict(row) for row in await connection.fetch(sql, *args)]


async def statuses(settings: Settings, source: str) -> dict[str, int]:
    rows = await fetch(settings, "SELECT status, count(*) AS n FROM policies WHERE source_system = $1 "
                                 "GROUP BY status", source)
    return {row["status"]: row["n"] for row in rows}


async def scored_per_run(settings: Settings, source: str) -> dict[str, int]:
    """Cold-path run id -> how many of the source's records that run decided."""
    rows = await fetch(settings, "SELECT h.run_id, count(DISTINCT h.policy_id) AS n FROM processing_history h "
                                 "JOIN policies p ON p.id = h.policy_id WHERE h.processing_path = 'cold' "
                                 "AND p.source_system = $1 GROUP BY h.run_id", source)
    return {row["run_id"]: row["n"] for row in rows}


# Runs DAGs with dag.test() (in-process, as `airflow dags test` does) and prints each run's task states.
DAG_TEST_SCRIPT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
runs = []
for spec in json.loads(sys.argv[2]):
    # A DAG parsed afresh for each run, as Airflow's workers do: dag.test() leaves a run's params on the DAG.
    bag = DagBag(dag_folder=sys.argv[1])
    dag = bag.get_dag(spec["dag_id"])
    for task in dag.tasks:
        task.retries = spec.get("retries", 0)  # default one attempt: a failure shows without the retry delay
    run = dag.test(run_conf=spec.get("conf"))
    runs.append({"dag_run_id": run.run_id, "state": str(run.state),
                 "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()},
                 "tries": {ti.task_id: ti.try_number for ti in run.get_task_instances()}})
print("RESULT " + json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                              "dags": sorted(bag.dag_ids), "runs": runs}))
"""


@dataclass
class DagTestOutput:
    errors: dict[str, str]
    dags: list[str]
    runs: list[dict[str, Any]]
    stdout: str  # Airflow's log, the pipeline's lines in it (at their level), with the traceback of each failed task
    stderr: str

    def raised(self) -> list[str]:
        """`ExceptionType: DP_xxxx: message` of each traceback Airflow printed for a failed try."""
        return re.findall(r"^((?:[\w.]+\.)?\w+: DP_\d{4}: .*)$", self.stdout, re.MULTILINE)

    def log_events(self) -> list[dict[str, Any]]:
        """The pipeline's lines (JSON when LOG_JSON=true), each the message of one line of Airflow's log."""
        return [event for _, event in self.leveled_events()]

    def leveled_events(self) -> list[tuple[str, dict[str, Any]]]:
        """(the level Airflow's log gives it, the line) of each of the pipeline's JSON lines."""
        found = []
        for line in self.stdout.splitlines():
            if (match := AIRFLOW_LINE.match(line)) is None:
                continue
            with contextlib.suppress(ValueError):
                event, _ = json.JSONDecoder().raw_decode(match["message"])
                if isinstance(event, dict) and "event" in event:
                    found.append((match["level"], event))
        return found


# A line of Airflow's console log: `<timestamp> [<level>] <message> [<logger>] <fields>`.
AIRFLOW_LINE = re.compile(r"^\S+ \[(?P<level>\w+)\s*\] (?P<message>\{.*)$")


async def run_dags(env: dict[str, str], dag_folder: Path, runs: list[dict[str, Any]]) -> DagTestOutput:
    """`runs` (each {"dag_id", "conf", "retries"}) one after the other with dag.test(); `dag_folder` is the DAG
    folder (dag.test runs only DAGs of the configured one)."""
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", DAG_TEST_SCRIPT, str(dag_folder), json.dumps(runs)],
        env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(dag_folder)}, cwd=REPO, capture_output=True, text=True,
        timeout=900, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    return DagTestOutput(**json.loads(lines[-1].removeprefix("RESULT ")), stdout=done.stdout, stderr=done.stderr)


def pushed_samples(body: str, metric: str) -> list[dict[str, str]]:
    return [sample.labels for family in text_string_to_metric_families(body) for sample in family.samples
            if sample.name == metric]


async def test_the_hourly_dag_scores_at_most_limit_then_rescore_all_scores_everything(
        stack: Settings, airflow_env: dict[str, str], pushgateway: FakePushgateway,
        store_pending: StorePending, fresh_source: str) -> None:
    source = fresh_source
    await store_pending(stack, source, 6)
    assert await statuses(stack, source) == {"pending_validation": 6}
    env = {**airflow_env, "PROMETHEUS_PUSHGATEWAY_URL": pushgateway.url, "LOG_JSON": "true"}

    output = await run_dags(env, REPO / "dags", [
        {"dag_id": "policy_cold_path", "conf": {"source": source, "limit": 4}},
        {"dag_id": "policy_cold_path", "conf": {"source": source, "rescore_all": True}},
    ])

    assert output.errors == {}
    assert DAG_IDS <= set(output.dags)
    limited, rescored = output.runs
    for run in (limited, rescored):
        assert run["state"] == "success", (run, output.stdout[-3000:])
        assert set(run["tasks"].values()) == {"success"}, run
    # 6 waiting, limit 4: the first run decides 4; rescore_all then decides all 6 (4 again and the 2 left), where
    # a run without it would take only the 2 still pending.
    assert await scored_per_run(stack, source) == {f"airflow:{limited['dag_run_id']}": 4,
                                                   f"airflow:{rescored['dag_run_id']}": 6}
    after = await statuses(stack, source)
    assert "pending_validation" not in after and sum(after.values()) == 6 and after.get("active", 0) > 0

    # Each task pushed its metrics as the CLI command of the same work does, so dashboards and alerts see them.
    assert {push.job for push in pushgateway.pushes} == {"aegis-cold-path", "aegis-sync", "aegis-consistency",
                                                         "aegis-events"}
    assert {push.method for push in pushgateway.pushes} == {"PUT"}
    # plan_scoring, each mapped score task and summarise_scoring push as the cold path; the summary has the scores
    assert any({"source": source} in pushed_samples(body, "data_quality_score")
               for body in pushgateway.bodies("aegis-cold-path"))
    first_sync = pushgateway.bodies("aegis-sync")[0]
    assert {(labels["target_db"], labels["status"]) for labels in pushed_samples(first_sync, "db_sync_total")} == {
        ("milvus", "success"), ("neo4j", "success"), ("elasticsearch", "success")}
    assert len(pushed_samples(first_sync, "db_sync_latency_seconds_count")) == 3
    first_check = pushgateway.bodies("aegis-consistency")[0]
    assert {labels["target_db"] for labels in pushed_samples(first_check, "consistency_drift_documents")} == {
        "milvus", "neo4j", "elasticsearch"}

    # Every line the pipeline logged says which task try of which DAG run wrote it; the cold path's own run id
    # stays in `run_id`.
    events = output.log_events()
    assert events and all({"dag_id", "task_id", "dag_run_id", "try_number"} <= event.keys() for event in events)
    completed = [event for event in events if event["event"] == "cold_path_completed"]
    assert [(event["dag_id"], event["task_id"], event["dag_run_id"], event["try_number"], event["run_id"])
            for event in completed] == [("policy_cold_path", "summarise_scoring", run["dag_run_id"], 1,
                                         f"airflow:{run['dag_run_id']}") for run in (limited, rescored)]
    assert {event["task_id"] for event in events if event["event"] == "sync_finished"} == {"sync"}


async def test_a_target_that_is_down_fails_sync_and_repair_with_its_dp_code(
        stack: Settings, airflow_env: dict[str, str], store_pending: StorePending, fresh_source: str) -> None:
    source = fresh_source
    await store_pending(stack, source, 3)
    env = {**airflow_env, "LOG_JSON": "true",
           "ELASTICSEARCH_URL": f"http://127.0.0.1:{free_port()}",            # the search target is down
           "PROMETHEUS_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}"}   # and so is the Pushgateway

    output = await run_dags(env, REPO / "dags", [
        {"dag_id": "policy_cold_path", "conf": {"source": source}},
        {"dag_id": "policy_consistency_repair", "conf": {"targets": ["search"]}},
    ])
    try:
        hourly, repair = output.runs
        assert hourly["tasks"] == {"plan_scoring": "success", "score": "success", "summarise_scoring": "success",
                                   "sync": "failed", "check_consistency": "upstream_failed",
                                   "send_events": "upstream_failed"}, output.stdout[-3000:]
        assert repair["tasks"] == {"check_and_repair": "failed", "send_events": "upstream_failed"}
        raised = output.raised()
        assert any(line.startswith(f"{ERRORS}.SyncFailedError: DP_3003: sync failed for search [DP_3003]")
                   for line in raised), raised
        assert any(line.startswith(f"{ERRORS}.SyncFailedError: DP_3003: consistency repair failed for search")
                   for line in raised), raised

        # The other targets synced (and moved their watermark); search keeps its own for the next run.
        (sync_run,) = await fetch(stack, "SELECT metadata::text FROM pipeline_metadata WHERE pipeline_run_id = $1 "
                                         "AND metadata->>'kind' = 'sync'", f"airflow:{hourly['dag_run_id']}")
        results = {result["target"]: (result["success"], result["error_code"])
                   for result in orjson.loads(sync_run["metadata"])["results"]}
        assert results == {"vectors": (True, None), "graph": (True, None), "search": (False, "DP_3003")}

        # A Pushgateway that cannot be reached is logged, and changes no task's outcome (score succeeded).
        assert {event["job"] for event in output.log_events() if event["event"] == "metrics_push_failed"} == {
            "aegis-cold-path", "aegis-sync", "aegis-consistency"}
    finally:
        await run_sync(stack, targets=["search"])  # the search target catches up, for the tests after this one


async def test_a_dag_that_cannot_start_fails_at_once_with_a_dp_code(airflow_env: dict[str, str]) -> None:
    """A DAG run with a setting that is wrong (here a Pushgateway address that is no URL) fails its first task
    without retries, its message a DP code and the setting named: every DAG, since `run_pipeline_step` loads the
    settings."""
    env = {**airflow_env, "PROMETHEUS_PUSHGATEWAY_URL": "not a url"}

    output = await run_dags(env, REPO / "dags", [{"dag_id": "dlq_retry", "retries": 1},
                                                 {"dag_id": "policy_cold_path", "retries": 1}])

    dlq, hourly = output.runs
    assert (dlq["tasks"], dlq["tries"]) == ({"retry_letters": "failed"}, {"retry_letters": 1}), output.stdout[-3000:]
    assert (hourly["tasks"]["plan_scoring"], hourly["tries"]["plan_scoring"]) == ("failed", 1), hourly
    raised = output.raised()
    assert len(raised) == 2, raised
    assert all(line.startswith("airflow.sdk.exceptions.AirflowFailException: DP_4003: ") for line in raised), raised
    assert "PROMETHEUS_PUSHGATEWAY_URL" in output.stdout


async def test_the_dlq_dag_retries_letters_in_process_and_fails_at_once_on_a_configuration_error(
        stack: Settings, airflow_env: dict[str, str], pushgateway: FakePushgateway, tmp_path: Path) -> None:
    """`dlq_retry` calls `dead_letter_retry.retry_dead_letters` through `run_pipeline_step`: a letter valid now is
    resolved, the task logs with its context and pushes its metrics as the `dlq` command; an invalid sources file
    (met at a collector's letter) and a configuration key that is no param (which Airflow lets through) fail the
    task at once, with their DP code."""
    from aegis_pipeline.common.errors import ErrorCode
    from aegis_pipeline.stores.dead_letters import DeadLetter, DeadLetterQueue, DeadLetterStore

    source = f"dagdlq_{uuid.uuid4().hex[:6]}"
    pool = await postgres.create_pool(stack)
    try:
        await DeadLetterQueue(pool, None, stack.kafka_topic_dlq).send([
            DeadLetter(stage="hot", error_code=ErrorCode.VALIDATION_FAILED, error_message="was invalid",
                       record_key=f"{source}:hot", payload=make_record(1, source=source).model_dump(mode="json")),
            DeadLetter(stage="collect", error_code=ErrorCode.INVALID_DATA_FORMAT, error_message="was unmapped",
                       source_system=source, record_key=f"{source}:collect", payload={"title": "x"}),
        ])
        ids = {letter.record_key: letter.id for letter in await DeadLetterStore(pool).retriable(limit=100_000)
               if (letter.record_key or "").startswith(source)}
    finally:
        await pool.close()
    broken_sources = tmp_path / "sources.yaml"
    broken_sources.write_text("sources: [{name: 1, kind: nonsense}]\n", encoding="utf-8")
    env = {**airflow_env, "PROMETHEUS_PUSHGATEWAY_URL": pushgateway.url, "LOG_JSON": "true",
           "SOURCES_FILE": str(broken_sources)}

    output = await run_dags(env, REPO / "dags", [
        {"dag_id": "dlq_retry", "conf": {"ids": [ids[f"{source}:hot"]]}, "retries": 1},
        {"dag_id": "dlq_retry", "conf": {"ids": [ids[f"{source}:collect"]]}, "retries": 1},
        {"dag_id": "dlq_retry", "conf": {"id": [ids[f"{source}:hot"]]}, "retries": 1},  # `ids` mistyped
    ])

    resolved, bad_sources, bad_id = output.runs
    assert (resolved["tasks"], resolved["tries"]) == ({"retry_letters": "success"}, {"retry_letters": 1}), (
        output.stdout[-3000:])
    for run in (bad_sources, bad_id):  # not retried: no retry can help
        assert (run["tasks"], run["tries"]) == ({"retry_letters": "failed"}, {"retry_letters": 1}), (
            output.stdout[-3000:])
    raised = output.raised()
    assert any(line.startswith("airflow.sdk.exceptions.AirflowFailException: DP_1001: ") and
               str(broken_sources) in line for line in raised), raised
    assert "airflow.sdk.exceptions.AirflowFailException: DP_4003: 'id' is no param of dlq_retry (its params: ids)" \
        in raised, raised
    assert "`aegis-pipeline dlq retry` exited" not in output.stdout  # no command is run any more

    rows = await fetch(stack, "SELECT record_key, status, retry_count FROM dead_letters WHERE record_key LIKE $1 "
                              "ORDER BY record_key", f"{source}:%")
    assert [(row["record_key"], row["status"], row["retry_count"]) for row in rows] == [
        (f"{source}:collect", "pending", 0), (f"{source}:hot", "resolved", 0)]
    assert await statuses(stack, source) == {"pending_validation": 1}
    retried = [event for event in output.log_events() if event["event"] == "dead_letters_retried"]
    assert [(event["dag_id"], event["task_id"], event["dag_run_id"], event["outcomes"]) for event in retried] == [
        ("dlq_retry", "retry_letters", resolved["dag_run_id"], {"resolved": 1})]
    # After each run that got to its step, failed or not; the mistyped key failed before anything ran.
    assert [push.job for push in pushgateway.pushes] == ["aegis-dlq"] * 2


ERROR_DAG = """
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from aegis_pipeline.common.errors import StoreUnavailableError, ValidationFailedError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.airflow_tasks import run_pipeline_step


def failing_with(error):
    async def step(settings):
        get_logger("test").warning("step_failing")
        raise error
    return step


@dag(dag_id="pipeline_errors", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
     default_args={"retry_delay": timedelta(0)})
def pipeline_errors():
    @task
    def final():
        run_pipeline_step(failing_with(ValidationFailedError("broken")), metrics_job="test")

    @task
    def transient():
        run_pipeline_step(failing_with(StoreUnavailableError("down")), metrics_job="test")

    @task
    def unknown():
        run_pipeline_step(failing_with(ZeroDivisionError("division by zero")), metrics_job="test")

    final()
    transient()
    unknown()


pipeline_errors()
"""


async def test_a_failing_step_fails_for_good_or_is_retried_with_its_dp_code_first(
        airflow_env: dict[str, str], pushgateway: FakePushgateway, tmp_path: Path) -> None:
    (tmp_path / "pipeline_errors.py").write_text(ERROR_DAG, encoding="utf-8")
    env = {**airflow_env, "PROMETHEUS_PUSHGATEWAY_URL": pushgateway.url, "LOG_JSON": "true"}

    output = await run_dags(env, tmp_path, [{"dag_id": "pipeline_errors", "retries": 1}])

    (run,) = output.runs
    assert run["tasks"] == {"final": "failed", "transient": "failed", "unknown": "failed"}, output.stdout[-3000:]
    # A final error is not retried; a retriable one and one of unknown kind are.
    assert run["tries"] == {"final": 1, "transient": 2, "unknown": 2}
    assert set(output.raised()) == {
        "airflow.sdk.exceptions.AirflowFailException: DP_2001: broken",
        "aegis_pipeline.common.errors.ValidationFailedError: DP_2001: broken",  # its cause, in the same traceback
        "aegis_pipeline.common.errors.StoreUnavailableError: DP_4003: down",
        "aegis_pipeline.common.errors.PipelineError: DP_4003: ZeroDivisionError: division by zero",
    }
    # The unknown error stays the cause of the DP_4003 one.
    assert re.search(r"^ZeroDivisionError: division by zero\n\nThe above exception was the direct cause",
                     output.stdout, re.MULTILINE)
    tries = sorted((event["task_id"], event["try_number"]) for event in output.log_events()
                   if event["event"] == "step_failing" and event["dag_id"] == "pipeline_errors")
    assert tries == [("final", 1), ("transient", 1), ("transient", 2), ("unknown", 1), ("unknown", 2)]
    # Each line in Airflow's log at its own level: the step's warning a WARNING, not an ERROR.
    assert {level for level, event in output.leveled_events() if event["event"] == "step_failing"} == {"warning"}
    assert [push.job for push in pushgateway.pushes] == ["aegis-test"] * 5  # after each try, failed or not


IMPORT_SCRIPT = """
import importlib, json, sys, time
import airflow.sdk  # loaded already in Airflow's DAG processor: not part of a DAG file's own import time
started = time.monotonic()
importlib.import_module("dags." + sys.argv[1])
print(json.dumps({"seconds": time.monotonic() - started}))
"""


@pytest.mark.parametrize("dag_file", DAG_FILES)
def test_each_dag_file_imports_fast_and_does_no_io(airflow_env: dict[str, str], dag_file: str) -> None:
    """Each DAG file in a fresh interpreter, with every engine address pointing nowhere (an engine call would
    fail or hang): it only wires tasks, in well under Airflow's parse budget."""
    env = {**airflow_env, "AEGIS_DATA_DIR": "/nonexistent", "POSTGRES_HOST": "192.0.2.1"}
    done = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT, dag_file], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    assert seconds < 2.0, f"dags/{dag_file}.py took {seconds:.2f} s to import"


def _token(base: str) -> str:
    # Simple auth manager with every user an admin (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS): no password.
    response = httpx.get(f"{base}/auth/token", timeout=10, follow_redirects=True)
    response.raise_for_status()
    return response.json()["access_token"]


async def test_a_run_triggered_through_the_rest_api_succeeds_and_logs_at_each_lines_level(
        stack: Settings, airflow_server: str, store_pending: StorePending, fresh_source: str) -> None:
    """A run the REST API triggers (as the UI does) on the real scheduler and task supervisor succeeds, and the
    task log Airflow keeps (as the UI shows it) holds the pipeline's lines at their own level: INFO, not ERROR
    (a line a task writes to stderr is recorded at ERROR)."""
    headers = {"Authorization": f"Bearer {_token(airflow_server)}"}
    async with httpx.AsyncClient(base_url=f"{airflow_server}/api/v2", headers=headers, timeout=20) as client:
        deadline = time.monotonic() + 180
        while (await client.get("/dags/policy_cold_path")).status_code != 200:  # the DAG processor parses it
            assert time.monotonic() < deadline, "policy_cold_path never appeared in the API"
            await asyncio.sleep(2)
        assert (await client.patch("/dags/policy_cold_path", json={"is_paused": False})).status_code == 200
        source = fresh_source
        await store_pending(stack, source, 4)
        created = await client.post("/dags/policy_cold_path/dagRuns",
                                    json={"logical_date": None, "conf": {"source": source, "limit": 10}})
        assert created.status_code == 200, created.text
        run_id = created.json()["dag_run_id"]
        states, run = await wait_for_run(client, run_id)
        scored = (await client.get(f"/dags/policy_cold_path/dagRuns/{run_id}/taskInstances/summarise_scoring/"
                                   "xcomEntries/return_value")).json()
        log = (await client.get(f"/dags/policy_cold_path/dagRuns/{run_id}/taskInstances/summarise_scoring/logs/1",
                                headers={"Accept": "application/json"})).json()

    assert run["state"] == "success", (run, states)
    assert set(states.values()) == {"success"}, states
    assert scored["value"]["run_id"] == f"airflow:{run_id}"
    assert sum(scored["value"]["counts"].values()) == 4
    # The task log as Airflow stores it: one entry per line, with the level Airflow gives it.
    entries = [entry for entry in log["content"] if isinstance(entry, dict)]
    completed = [entry for entry in entries if "cold_path_completed" in str(entry.get("event"))]
    assert [entry.get("level") for entry in completed] == ["info"], completed or entries[-20:]
    assert not [entry for entry in entries if entry.get("level") == "error"], entries
    after = await statuses(stack, source)
    assert "pending_validation" not in after and sum(after.values()) == 4


BAD_CONFS = [  # (DAG, a configuration its params refuse, the param the refusal names)
    ("policy_cold_path", {"limit": -1}, "limit"),
    ("policy_cold_path", {"limit": 0}, "limit"),
    ("policy_cold_path", {"limit": "ten"}, "limit"),
    ("policy_cold_path", {"source": "no_such_source"}, "source"),
    ("policy_cold_path", {"workers": 0}, "workers"),
    ("policy_cold_path", {"rescore_all": "yes"}, "rescore_all"),
    ("policy_consistency_repair", {"targets": ["nowhere"]}, "targets"),
    ("policy_consistency_repair", {"targets": "search"}, "targets"),
    ("policy_retention", {"dry_run": "false"}, "dry_run"),
    ("dlq_retry", {"ids": ["not-a-uuid"]}, "ids"),
]


async def test_the_rest_api_refuses_a_run_whose_params_break_their_schema(
        airflow_server: str, module_sources: list[str]) -> None:
    """The trigger form posts to this API: a negative or zero `limit`, a source the sources files do not name, a
    target that is none of vectors, graph and search, a value of the wrong type is refused with the param named,
    and no run is created; a configured source and known targets are accepted."""
    headers = {"Authorization": f"Bearer {_token(airflow_server)}"}
    async with httpx.AsyncClient(base_url=f"{airflow_server}/api/v2", headers=headers, timeout=20) as client:
        for dag_id in {dag_id for dag_id, _, _ in BAD_CONFS}:
            await wait_for_dag(client, dag_id)
        dag_ids = ("policy_consistency_repair", "policy_retention", "dlq_retry")
        before = {dag_id: (await client.get(f"/dags/{dag_id}/dagRuns")).json()["total_entries"] for dag_id in dag_ids}
        refused = {}
        for dag_id, conf, _ in BAD_CONFS:
            response = await client.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
            refused[dag_id, json.dumps(conf)] = (response.status_code, response.text)
        after = {dag_id: (await client.get(f"/dags/{dag_id}/dagRuns")).json()["total_entries"] for dag_id in dag_ids}
        # Paused DAGs (not unpaused here): a run accepted waits, and shows the conf was.
        accepted = [await client.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
                    for dag_id, conf in (("policy_consistency_repair", {"targets": ["search", "graph"]}),
                                         ("policy_retention", {"dry_run": True}))]
        source_param = json.dumps((await client.get("/dags/policy_cold_path/details")).json()["params"]["source"])

    for (dag_id, conf, param), (status, text) in zip(BAD_CONFS, refused.values(), strict=True):
        assert status == 400, (dag_id, conf, status, text)
        assert param in text, (dag_id, conf, text)
    assert after == before  # no run created (other tests of the module ran these DAGs with dag.test())
    assert [response.status_code for response in accepted] == [200, 200], [response.text for response in accepted]
    # The trigger form's list: no source (every one), the shipped sources and the configured ones.
    assert '"enum": [null, ' in source_param, source_param
    assert all(f'"{name}"' in source_param for name in ("mss_biz", "bizinfo", "kstartup", "gov24",
                                                         "seongdong_notice", *module_sources)), source_param


async def wait_for_dag(client: httpx.AsyncClient, dag_id: str) -> None:
    deadline = time.monotonic() + 180
    while (await client.get(f"/dags/{dag_id}")).status_code != 200:  # the DAG processor parses it
        assert time.monotonic() < deadline, f"{dag_id} never appeared in the API"
        await asyncio.sleep(2)


async def test_two_mapped_workers_score_a_backlog_once_each_and_the_run_counts_it_whole(
        stack: Settings, airflow_server: str, store_pending: StorePending, fresh_source: str) -> None:
    """The backlog is claimed batch by batch (COLD_PATH_BATCH_SIZE 25 in the server's environment) by two mapped
    `score` tasks that the executor runs at once: every record is decided once, under the DAG run's cold-path run
    id, and the summary counts all of them."""
    headers = {"Authorization": f"Bearer {_token(airflow_server)}"}
    source = fresh_source
    await store_pending(stack, source, 400)
    async with httpx.AsyncClient(base_url=f"{airflow_server}/api/v2", headers=headers, timeout=20) as client:
        deadline = time.monotonic() + 180
        while (await client.get("/dags/policy_cold_path")).status_code != 200:
            assert time.monotonic() < deadline, "policy_cold_path never appeared in the API"
            await asyncio.sleep(2)
        assert (await client.patch("/dags/policy_cold_path", json={"is_paused": False})).status_code == 200
        created = await client.post("/dags/policy_cold_path/dagRuns",
                                    json={"logical_date": None, "conf": {"source": source, "workers": 2}})
        assert created.status_code == 200, created.text
        run_id = created.json()["dag_run_id"]
        _, run = await wait_for_run(client, run_id)
        mapped = (await client.get(f"/dags/policy_cold_path/dagRuns/{run_id}/taskInstances/score/listMapped"))
        summary = (await client.get(f"/dags/policy_cold_path/dagRuns/{run_id}/taskInstances/summarise_scoring/"
                                    "xcomEntries/return_value")).json()["value"]
        batches = [(await client.get(f"/dags/policy_cold_path/dagRuns/{run_id}/taskInstances/score/xcomEntries/"
                                     f"return_value", params={"map_index": index})).json()["value"]["batches"]
                   for index in (0, 1)]

    assert run["state"] == "success", run
    assert all(count > 0 for count in batches), batches  # both ran at once: each claimed some of the backlog
    workers = mapped.json()["task_instances"]
    assert [(worker["map_index"], worker["state"]) for worker in workers] == [(0, "success"), (1, "success")]
    decided = await fetch(stack, "SELECT h.policy_id, count(*) AS n FROM processing_history h "
                                 "JOIN policies p ON p.id = h.policy_id WHERE h.run_id = $1 AND p.source_system = $2 "
                                 "GROUP BY h.policy_id", f"airflow:{run_id}", source)
    assert len(decided) == 400 and {row["n"] for row in decided} == {1}  # every record, each once
    assert summary["workers"] == 2 and sum(summary["counts"].values()) == 400
    after = await statuses(stack, source)
    assert "pending_validation" not in after and sum(after.values()) == 400
    metadata = await fetch(stack, "SELECT status, records_processed, metadata->>'workers' AS workers "
                                  "FROM pipeline_metadata WHERE pipeline_run_id = $1 AND metadata ? 'parameters'",
                              f"airflow:{run_id}")
    assert metadata == [{"status": "succeeded", "records_processed": 400, "workers": "2"}]


async def wait_for_run(client: httpx.AsyncClient, run_id: str) -> tuple[dict[str, str | None], dict[str, Any]]:
    """Task states and the run once every task and the run itself are done (the scheduler settles the run's
    state a loop after its last task)."""
    finished = {"success", "failed", "upstream_failed", "skipped"}
    deadline = time.monotonic() + 600
    while True:
        tasks = (await client.get(f"/dags/policy_cold_path/dagRuns/{run_id}/taskInstances")).json()
        states = {ti["task_id"]: ti["state"] for ti in tasks["task_instances"]}
        run = (await client.get(f"/dags/policy_cold_path/dagRuns/{run_id}")).json()
        if states and set(states.values()) <= finished and run["state"] in finished:
            return states, run
        assert time.monotonic() < deadline, f"run {run_id} did not finish: {states}, run {run['state']}"
        await asyncio.sleep(3)
