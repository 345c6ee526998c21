"""Faults survived with nothing lost (issue 8, part 1): records flow through the real collectors (scheduler
process), the hot path (process) and PostgreSQL while the Kafka-API broker, PostgreSQL or Redis is stopped and
restarted, or the hot path is killed with SIGKILL several times. After each: every record the source offered is
in PostgreSQL exactly once, every stored policy's `policy.validated` is on the events topic (read from its
beginning, by event id), and no process had to be restarted by hand (only the killed one is started again).

These faults stop engines, so this module runs on a stack of its own (its own data directory), not on the
session's. Outages are shorter than the issue's where that keeps the module short (PostgreSQL 30 s instead of 60,
Redis 10 s); `bench/faults.py` runs the issue's durations. Scenarios: `devstack/fault_scenarios.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import fault_scenarios, stack
from devstack.fault_scenarios import RunOptions, Scenario, ScenarioResult
from settings import CoreSettings, Settings, load_core_settings

pytestmark = pytest.mark.integration

TEST_SCENARIOS = [
    Scenario("broker", engine="kafka", outage_seconds=30),
    Scenario("postgres", engine="postgres", outage_seconds=30),
    Scenario("redis", engine="redis", outage_seconds=10),
    Scenario("hot_path_kill", process="hot_path", kills=3),
]


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoreSettings, Settings]]:
    core = load_core_settings(aegis_data_dir=tmp_path_factory.mktemp("faults"))
    settings = stack.up(core)
    yield core, settings
    stack.down(core, purge=True)


def explain(result: ScenarioResult) -> str:
    return f"{result.as_dict()} (process logs in {Path(result.notes['logs'])})"


@pytest.mark.parametrize("scenario", TEST_SCENARIOS, ids=lambda scenario: scenario.name)
def test_fault_loses_nothing_and_stores_nothing_twice(fault_stack: tuple[CoreSettings, Settings],
                                                      scenario: Scenario) -> None:
    core, settings = fault_stack
    result = asyncio.run(fault_scenarios.run_scenario(core, settings, scenario, RunOptions(seed=8)))

    assert result.sent > 0 and result.stored == result.sent, explain(result)
    assert result.lost == 0, explain(result)
    assert result.duplicated == 0, explain(result)
    assert result.events_missing == 0, explain(result)
    assert result.unexpected_exits == [], explain(result)  # nothing needed a hand restart
    assert result.recovery_seconds is not None, explain(result)
    assert set(result.notes["exit_codes"].values()) == {0}, explain(result)  # and each stopped cleanly at the end
    if scenario.process is not None:
        assert result.notes["kills"] == scenario.kills
