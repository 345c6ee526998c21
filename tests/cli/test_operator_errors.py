"""The operator's side of `aegis-pipeline` (issue 27), each command in its own process as a shell or a CI job runs it:

- an engine that does not answer ends any command with at most a few lines, its DP code, a hint and exit code 3, no
  traceback (`--debug` shows it);
- `--version`;
- every command that reports figures answers `--json` with one JSON document as its last line;
- `dlq purge` deletes nothing without `--yes` off a terminal, and counts with `--dry-run`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest

from aegis_pipeline.cli.main import main
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

PIPELINE = str(Path(sys.executable).parent / "aegis-pipeline")
SOURCE = "operator_test"

# Commands that print no figures (they start or stop something, or serve until stopped): no --json.
WITHOUT_FIGURES = {"dev up", "dev down", "scheduler"}


def run(env: dict[str, str], *arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PIPELINE, *arguments], capture_output=True, text=True, env=env, timeout=180, input=stdin)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stack_env(settings: Settings, **overrides: str) -> dict[str, str]:
    env = {**os.environ, "POSTGRES_HOST": settings.postgres_host, "POSTGRES_PORT": str(settings.postgres_port),
           "POSTGRES_USER": settings.postgres_user, "POSTGRES_DB": settings.postgres_db,
           "GRAPH_URI": settings.graph_uri, "MILVUS_COLLECTION": settings.milvus_collection,
           "ELASTICSEARCH_INDEX": settings.elasticsearch_index, "LOG_LEVEL": "INFO", "LOG_JSON": "true",
           "KAFKA_TOPIC_RAW_POLICIES": f"operator-raw-{uuid.uuid4().hex[:8]}",
           "KAFKA_TOPIC_POLICY_STATE": f"operator-state-{uuid.uuid4().hex[:8]}"}
    return {**env, **overrides}


def last_json_line(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- An engine down ------------------------------------------------------------------------------------------------

POSTGRES_COMMANDS = [
    ("cold-path", "run"), ("sync", "run"), ("sync", "rebuild", "--target", "search"), ("consistency", "check"),
    ("consistency", "repair"), ("dlq", "list"), ("dlq", "purge", "--yes"), ("dlq", "retry"),
    ("retention", "--dry-run"), ("db", "current"), ("db", "upgrade"), ("hot-path", "--drain"),
    ("catalogue", "publish"),
]


@pytest.mark.integration
@pytest.mark.parametrize("arguments", POSTGRES_COMMANDS, ids=" ".join)
def test_postgres_down_gives_a_short_error_with_its_dp_code_and_exit_3(stack: Settings,
                                                                        arguments: tuple[str, ...]) -> None:
    env = stack_env(stack, POSTGRES_PORT=str(closed_port()))
    result = run(env, *arguments)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and len(lines) <= 4, result.stderr
    error_line = next(line for line in lines if line.startswith("error "))
    assert error_line.startswith("error DP_4003: postgres"), result.stderr
    assert "hint: is PostgreSQL running" in result.stderr and "POSTGRES_HOST" in result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("arguments", [("hot-path", "--drain"), ("catalogue", "dump")], ids=" ".join)
def test_kafka_down_gives_a_short_error_with_its_dp_code_and_exit_3(stack: Settings,
                                                                     arguments: tuple[str, ...]) -> None:
    env = stack_env(stack, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed_port()}")
    result = run(env, *arguments)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 4, result.stderr
    assert "error DP_4003: kafka" in result.stderr and "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


@pytest.mark.integration
def test_debug_and_log_level_debug_show_the_traceback_and_json_gets_the_error_as_a_document(stack: Settings) -> None:
    env = stack_env(stack, POSTGRES_PORT=str(closed_port()))
    for shown in (run(env, "--debug", "dlq", "list"), run({**env, "LOG_LEVEL": "DEBUG"}, "dlq", "list")):
        assert shown.returncode != 0 and "Traceback" in shown.stderr
        assert "StoreUnavailableError: DP_4003: postgres connect failed" in shown.stderr
    as_json = run(env, "dlq", "list", "--json")
    assert as_json.returncode == 3
    assert last_json_line(as_json)["error"] | {"hint": None} == {
        "code": "DP_4003", "message": "postgres connect failed: ConnectionRefusedError", "hint": None,
        "exit_code": 3}


def test_a_wrong_setting_is_a_usage_error_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "AEGIS_DATA_DIR": str(tmp_path), "POSTGRES_PORT": "not-a-port"}
    result = run(env, "cold-path", "run")
    assert result.returncode == 2, result.stderr
    assert "POSTGRES_PORT" in result.stderr and "Traceback" not in result.stderr


def test_version_is_the_installed_package_version() -> None:
    result = run(dict(os.environ), "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"aegis-pipeline, version {version('aegis-data-pipeline')}"


# -- --json ----------------------------------------------------------------------------------------------------------

def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} ")
        else:
            yield path, command


def test_every_command_that_reports_figures_has_json() -> None:
    without = {path for path, command in _commands(main)
               if "as_json" not in {parameter.name for parameter in command.params}}
    assert without == WITHOUT_FIGURES


@pytest.fixture
async def own_database(stack: Settings, tmp_path: Path) -> Settings:
    """The stack's settings with a database (migrated, 6 scored policies, 3 resolved dead letters), aliases and graph
    file of this test's own."""
    suffix = uuid.uuid4().hex[:8]
    database = f"operator_{suffix}"
    await postgres.ensure_database(stack.postgres_dsn(database="postgres"), database)
    settings = stack.model_copy(update={"postgres_db": database, "milvus_collection": f"operator_{suffix}",
                                        "elasticsearch_index": f"operator-{suffix}",
                                        "graph_uri": str(tmp_path / "operator.lbug")})
    await asyncio.to_thread(upgrade_to_head, settings)
    pool = await postgres.create_pool(settings)
    try:
        policies = [normalize_record(make_record(i, source=SOURCE)) for i in range(6)]
        await PolicyStore(pool).store_batch(policies, lambda stored: [])
        await pool.execute("UPDATE policies SET status = 'active', quality_score = 0.9")
        await pool.executemany(
            "INSERT INTO dead_letters (stage, source_system, record_key, error_code, error_message, status) "
            "VALUES ('hot', $1, $2, 'DP_2001', 'invalid', 'resolved')",
            [(SOURCE, f"{SOURCE}:{i}") for i in range(3)])
    finally:
        await pool.close()
    return settings


async def _dead_letters(settings: Settings) -> int:
    pool = await postgres.create_pool(settings)
    try:
        return int(await pool.fetchval("SELECT count(*) FROM dead_letters"))
    finally:
        await pool.close()


@pytest.mark.integration
async def test_figure_reporting_commands_print_one_json_document_as_their_last_line(own_database: Settings) -> None:
    env = stack_env(own_database)
    expected_keys = {
        ("cold-path", "run"): {"run_id", "processed", "counts", "score_distribution", "rules_version", "events_sent"},
        ("sync", "run", "--target", "search", "--target", "graph"): {"run_id", "policies_synced", "success",
                                                                      "targets", "events_sent"},
        ("sync", "rebuild", "--target", "search"): {"target", "store", "success", "upserted", "deleted"},
        ("consistency", "check", "--target", "search"): {"consistent", "targets", "report_id", "duration_seconds"},
        ("consistency", "repair"): {"check", "repair"},
        ("dlq", "list"): {"counts", "letters"},
        ("dlq", "purge", "--dry-run"): {"dry_run", "would_purge"},
        ("dlq", "retry"): {"retried", "outcomes"},
        ("retention", "--dry-run"): {"run_id", "dry_run", "deleted"},
        ("db", "current"): {"current", "head"},
        ("catalogue", "publish"): {"policies_announced", "events_sent"},
        ("hot-path", "--drain"): {"received", "stored", "invalid", "events_sent"},
    }
    for arguments, keys in expected_keys.items():
        result = await asyncio.to_thread(run, env, *arguments, "--json")
        assert result.returncode in (0, 1), (arguments, result.stderr)
        document = last_json_line(result)
        assert keys <= set(document), (arguments, document)
    search_sync = last_json_line(await asyncio.to_thread(run, env, "sync", "run", "--target", "search", "--json"))
    assert search_sync["success"] is True and search_sync["targets"][0]["target"] == "search"


# -- Safe deletion -----------------------------------------------------------------------------------------------------

@pytest.mark.integration
async def test_dlq_purge_deletes_nothing_without_yes_and_counts_with_dry_run(own_database: Settings) -> None:
    env = stack_env(own_database)
    refused = await asyncio.to_thread(run, env, "dlq", "purge", stdin="y\n")  # stdin is not a terminal
    assert refused.returncode == 2 and "--yes" in refused.stderr, refused.stderr
    assert await _dead_letters(own_database) == 3

    dry = await asyncio.to_thread(run, env, "dlq", "purge", "--dry-run", "--json")
    assert dry.returncode == 0 and last_json_line(dry)["would_purge"] == 3
    assert await _dead_letters(own_database) == 3

    done = await asyncio.to_thread(run, env, "dlq", "purge", "--yes", "--json")
    assert done.returncode == 0 and last_json_line(done)["purged"] == 3
    assert await _dead_letters(own_database) == 0


def test_retention_and_dev_down_purge_need_yes_off_a_terminal(tmp_path: Path) -> None:
    env = {**os.environ, "AEGIS_DATA_DIR": str(tmp_path)}
    for arguments in (("retention",), ("dev", "down", "--purge")):
        refused = run(env, *arguments)
        assert refused.returncode == 2 and "--yes" in refused.stderr, (arguments, refused.stderr)
