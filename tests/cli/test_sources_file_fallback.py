"""`collect --once` and `scheduler` without a sources file, as a user runs them after `make demo KEEP=1`: with the
embedded stack up they collect its sample-sources engine (and say so on their first line); without a stack they
exit 2 with one line saying what to set. `dev status --json` lists the sample-sources engine.

Each command runs in its own process, in a working directory with no sources.yaml and no SOURCES_FILE set."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from aegis_pipeline.devstack import stack as devstack
from aegis_pipeline.devstack.engines import SampleSourcesEngine
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings, load_core_settings
from aegis_pipeline.stores import kafka, postgres

pytestmark = pytest.mark.integration

PIPELINE = str(Path(sys.executable).parent / "aegis-pipeline")
NO_SOURCES_FILE = ("no sources file: set SOURCES_FILE (see docs/sources.md) or start the embedded stack with "
                   "make demo KEEP=1 / aegis-pipeline dev up")
SAMPLE_SOURCE_NAMES = {"data_go_kr", "data_go_kr_single", "bizinfo", "odcloud", "policy_briefing_rss",
                       "seongdong_board"}


def run_cli(cwd: Path, *arguments: str, timeout: float = 120, **variables: str) -> subprocess.CompletedProcess[str]:
    """`aegis-pipeline <arguments>` in `cwd`, without SOURCES_FILE, with `variables` added to the environment."""
    environment = {name: value for name, value in os.environ.items() if name.upper() != "SOURCES_FILE"}
    environment.update({"LOG_JSON": "true", **variables})
    return subprocess.run([PIPELINE, *arguments], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=timeout)


def stack_sample_sources() -> devstack.SampleSourcesServer:
    server = devstack.sample_sources(load_core_settings())  # the session stack (AEGIS_DATA_DIR, tests/conftest.py)
    assert server is not None, "the session stack has no sample-sources engine"
    return server


@pytest.fixture
async def own_stores(stack: Settings) -> dict[str, str]:
    """Variables giving a run a database (migrated) and raw and dead-letter topics of its own, so that it starts
    with no checkpoint of the sample sources and this test reads back only its records."""
    suffix = uuid.uuid4().hex[:8]
    database = f"fallback_{suffix}"
    await postgres.ensure_database(stack.postgres_dsn(database="postgres"), database)
    await asyncio.to_thread(upgrade_to_head, stack.model_copy(update={"postgres_db": database}))
    raw, dlq = f"policy-raw-{suffix}", f"dlq-{suffix}"
    await kafka.ensure_topics(stack, [raw, dlq], partitions=1)
    return {"POSTGRES_HOST": stack.postgres_host, "POSTGRES_PORT": str(stack.postgres_port),
            "POSTGRES_USER": stack.postgres_user, "POSTGRES_DB": database,
            "KAFKA_TOPIC_RAW_POLICIES": raw, "KAFKA_TOPIC_DLQ": dlq,
            "PROMETHEUS_PUSHGATEWAY_URL": ""}  # nothing pushed to the session stack's Pushgateway


async def count_messages(settings: Settings, topic: str, expected: int, *, timeout_seconds: float = 20) -> int:
    reader = kafka.create_reader(settings, topic)
    await reader.start()
    try:
        count = 0
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while count < expected and asyncio.get_running_loop().time() < deadline:
            batches = await reader.getmany(timeout_ms=500)
            count += sum(len(messages) for messages in batches.values())
        return count
    finally:
        await reader.stop()


async def test_collect_once_without_a_sources_file_collects_the_stacks_sample_sources(
        stack: Settings, own_stores: dict[str, str], tmp_path: Path) -> None:
    server = stack_sample_sources()
    result = await asyncio.to_thread(run_cli, tmp_path, "collect", "--once", **own_stores)

    assert result.returncode == 0, result.stdout + result.stderr
    first, *table = result.stdout.splitlines()
    assert first.startswith(f"no SOURCES_FILE: collecting the embedded stack's sample sources at {server.url} (")
    assert first.endswith("devstack/sample_sources.yaml)")
    rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
    assert set(rows) == SAMPLE_SOURCE_NAMES | {"total"}
    assert all(rows[name][0] == "ok" for name in SAMPLE_SOURCE_NAMES), result.stdout  # the key was the right one
    fetched, published = (int(value) for value in rows["total"][:2])
    assert fetched > published > 0
    assert await count_messages(stack, own_stores["KAFKA_TOPIC_RAW_POLICIES"], published) == published


def test_without_a_stack_and_without_a_sources_file_it_says_what_to_set(tmp_path: Path) -> None:
    for command in (["collect", "--once"], ["scheduler"]):
        result = run_cli(tmp_path, *command, AEGIS_DATA_DIR=str(tmp_path / "no-stack"))
        assert (result.returncode, result.stdout, result.stderr) == (2, "", NO_SOURCES_FILE + "\n"), command


def test_a_stack_whose_sample_sources_do_not_answer_is_named_on_the_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "stopped-stack"
    port = devstack.free_port()  # nothing listens there
    engine = SampleSourcesEngine(data_dir)
    devstack.StackState(data_dir=str(data_dir), engines={engine.name: devstack.EngineRecord(port=port)},
                        settings={engine.name: engine.settings_values(port)}).save(data_dir / "stack.json")
    result = run_cli(tmp_path, "collect", "--once", AEGIS_DATA_DIR=str(data_dir))
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{NO_SOURCES_FILE} (the embedded stack's sample sources at http://127.0.0.1:{port} "
                           "do not answer: ")


@pytest.mark.usefixtures("stack")
def test_a_sources_file_that_is_set_is_read_even_with_the_stack_up(tmp_path: Path) -> None:
    missing = run_cli(tmp_path, "collect", "--once", SOURCES_FILE="missing.yaml")
    assert missing.returncode == 2
    assert missing.stderr.startswith("cannot read sources file missing.yaml")  # the error it has always been
    (tmp_path / "sources.yaml").write_text("sources: nothing\n", encoding="utf-8")  # the default, where it exists
    broken = run_cli(tmp_path, "collect", "--once")
    assert broken.returncode == 2 and "no SOURCES_FILE" not in broken.stdout
    assert "sources.yaml" in broken.stderr, broken.stderr


@pytest.mark.usefixtures("stack")
def test_dev_status_lists_the_sample_sources_engine(tmp_path: Path) -> None:
    server = stack_sample_sources()
    result = run_cli(tmp_path, "dev", "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    engine = json.loads(result.stdout)["engines"]["sample_sources"]
    assert engine["url"] == server.url and server.url.startswith("http://127.0.0.1:")
    assert (engine["healthy"], engine["embedded"], engine["error"]) == (True, True, None)
    assert isinstance(engine["pid"], int)
    robots = httpx.get(f"{server.url}/robots.txt", timeout=5).text
    assert "Crawl-delay: 0" in robots  # the engine's robots.txt asks for no delay: the board takes seconds
