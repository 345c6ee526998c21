"""`aegis-pipeline dev up | status | down` as a user runs them, in a temporary data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from aegis_pipeline.schemas.migrations import head_revision
from aegis_pipeline.settings import ENGINE_FIELDS

pytestmark = pytest.mark.integration

PIPELINE = str(Path(sys.executable).parent / "aegis-pipeline")


def run_cli(data_dir: Path, *arguments: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "AEGIS_DATA_DIR": str(data_dir)}
    return subprocess.run([PIPELINE, *arguments], env=environment, capture_output=True, text=True, timeout=timeout)


def status_json(data_dir: Path) -> dict:
    result = run_cli(data_dir, "dev", "status", "--json")
    return json.loads(result.stdout)


def recorded_pids(data_dir: Path) -> dict[str, int]:
    state = json.loads((data_dir / "stack.json").read_text())
    return {name: engine["pid"] for name, engine in state["engines"].items() if engine["pid"]}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "stack"
    yield directory
    run_cli(directory, "dev", "down", "--purge", "--yes")


def test_up_status_down_lifecycle(data_dir: Path) -> None:
    first = run_cli(data_dir, "dev", "up")
    assert first.returncode == 0, first.stderr

    report = status_json(data_dir)
    assert set(report["engines"]) == set(ENGINE_FIELDS) | {"sample_sources"}
    assert all(engine["healthy"] for engine in report["engines"].values()), report
    assert all(engine["embedded"] for engine in report["engines"].values())
    for name, engine in report["engines"].items():
        if name != "graph":  # the graph engine is in-process: a file, no server
            assert "127.0.0.1:" in engine["url"], engine["url"]  # loopback only, on a port chosen free
    pids_before = recorded_pids(data_dir)

    # `up` twice is harmless: nothing restarted, still healthy.
    second = run_cli(data_dir, "dev", "up")
    assert second.returncode == 0, second.stderr
    assert recorded_pids(data_dir) == pids_before
    assert run_cli(data_dir, "dev", "status").returncode == 0

    down = run_cli(data_dir, "dev", "down")
    assert down.returncode == 0, down.stderr
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in pids_before.values())
    assert not (data_dir / "stack.json").exists()
    assert run_cli(data_dir, "dev", "status").returncode == 1


def test_up_after_a_crash_restarts_what_died(data_dir: Path) -> None:
    assert run_cli(data_dir, "dev", "up").returncode == 0
    pids = recorded_pids(data_dir)
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)  # a crash: the state file now names dead processes

    crashed = run_cli(data_dir, "dev", "status", "--json")
    assert crashed.returncode == 1
    engines = json.loads(crashed.stdout)["engines"]
    assert not any(engines[name]["healthy"] for name in pids)

    restarted = run_cli(data_dir, "dev", "up")
    assert restarted.returncode == 0, restarted.stderr
    report = status_json(data_dir)
    assert all(engine["healthy"] for engine in report["engines"].values()), report
    assert set(recorded_pids(data_dir).values()).isdisjoint(pids.values())
    current = run_cli(data_dir, "db", "current")
    assert f"current: {head_revision()}" in current.stdout  # the data survived the crash: no re-initialisation


def test_down_never_signals_a_process_it_did_not_start(data_dir: Path) -> None:
    assert run_cli(data_dir, "dev", "up").returncode == 0
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        # Simulate a recycled pid: the state names a live process that is not our server.
        state_path = data_dir / "stack.json"
        state = json.loads(state_path.read_text())
        real_redis_pid = state["engines"]["redis"]["pid"]
        state["engines"]["redis"]["pid"] = bystander.pid
        state_path.write_text(json.dumps(state))

        down = run_cli(data_dir, "dev", "down")
        assert down.returncode == 0
        assert "redis" not in down.stdout.split("stopped:")[1]
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
        os.kill(real_redis_pid, signal.SIGTERM)


def test_explicitly_configured_engine_is_not_started(data_dir: Path) -> None:
    environment = {**os.environ, "AEGIS_DATA_DIR": str(data_dir), "REDIS_URL": "redis://127.0.0.1:1/0"}
    result = subprocess.run([PIPELINE, "dev", "up", "--timeout", "8"], env=environment, capture_output=True,
                            text=True, timeout=120)
    # Nothing answers on port 1: `up` refuses to report a healthy stack, and it started no embedded redis.
    assert result.returncode != 0
    assert "redis" in result.stderr
    assert "redis" not in json.loads((data_dir / "stack.json").read_text())["engines"]
