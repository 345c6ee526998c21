"""Faults survived with nothing lost (issue 8, part 1): records flow through the real collectors (scheduler
process), the hot path (process), the cold path and the sync while the Kafka-API broker, PostgreSQL, Redis or a
sync target (Elasticsearch API) is stopped and restarted, or the hot path or the cold path is killed with SIGKILL
several times. After each: every record the source offered is in PostgreSQL exactly once, every stored fact's
event is on the events topic (read from its beginning, by event id: each policy's version and current scoring,
each sync run), the targets agree with PostgreSQL after the next sync and a repair, and no process had to be
restarted by hand (only the killed one is started again). The broker, which restarts empty, held events of all
three types when it stopped (the scenario scores and syncs first): every one is on the topic again at the end.

These faults stop engines, so this module runs on a stack of its own (its own data directory), not on the
session's. Outages are shorter than the issue's to keep the module short, each still longer than the clients'
retries and reconnection backoff (broker 20 s instead of 30, PostgreSQL 12 s instead of 60, Redis 8 s, the sync
targets 10 s); `bench/faults.py` runs the issue's durations.
Scenarios: `devstack/fault_scenarios.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegis_pipeline.devstack import fault_scenarios, stack
from aegis_pipeline.devstack.fault_scenarios import RunOptions, Scenario, ScenarioResult
from aegis_pipeline.settings import CoreSettings, Settings, load_core_settings

pytestmark = pytest.mark.integration

TEST_SCENARIOS = [
    Scenario("broker", engine="kafka", outage_seconds=20, lag_seconds=5, every_event_type_before_fault=True),
    Scenario("postgres", engine="postgres", outage_seconds=12),
    Scenario("redis", engine="redis", outage_seconds=8, publish_during_fault=True),
    Scenario("hot_path_kill", process="hot_path", kills=3),
    Scenario("cold_path_kill", process="cold_path", kills=3, cold_path=True),
    Scenario("vectors_target", engine="milvus", outage_seconds=10, cold_path=True, sync=True),
    Scenario("search_target", engine="search", outage_seconds=10, cold_path=True, sync=True),
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
    # The sync scenario encodes every active record's text (about 45/s here): a slower stream keeps it short.
    options = RunOptions(seed=8, rate_per_second=10.0 if scenario.sync else 20.0)
    result = asyncio.run(fault_scenarios.run_scenario(core, settings, scenario, options))

    assert result.sent > 0 and result.stored == result.sent, explain(result)
    assert result.lost == 0, explain(result)
    assert result.duplicated == 0, explain(result)
    assert result.events_missing == 0, explain(result)
    assert result.unexpected_exits == [], explain(result)  # nothing needed a hand restart
    assert result.recovery_seconds is not None, explain(result)
    assert set(result.notes["exit_codes"].values()) == {0}, explain(result)  # and each stopped cleanly at the end
    if scenario.lag_seconds:  # the broker went down holding acknowledged records nobody had stored yet
        assert result.notes["published_unstored_when_stopped"] > 0, explain(result)
    if scenario.every_event_type_before_fault:  # the broker lost events of every type: all announced again
        assert all(figures.lost_with_broker for figures in result.events.values()), explain(result)
        for event_type in ("data.quality_updated", "data.sync_completed"):  # only made before the fault
            figures = result.events[event_type]
            assert figures.lost_with_broker == figures.expected == figures.found, explain(result)
    if scenario.process is not None:
        assert result.notes["kills"] == scenario.kills
    if scenario.cold_path:  # every stored policy scored once its runs were done, the killed ones included
        assert result.notes["unscored"] == 0 and result.notes["cold_path_last_exit_code"] == 0, explain(result)
    if scenario.sync:  # the stopped target caught up: after the next sync and a repair, all agree with PostgreSQL
        assert result.targets_converged is True, explain(result)
    if scenario.engine == "redis":  # the hot path went on without the cache, counted the misses, refilled after
        assert result.notes["cache_writes"].get("error", 0) > 0, explain(result)
        assert result.notes["cache_writes"].get("refilled", 0) > 0, explain(result)
        stored_during_outage = result.notes["published_during_fault"]
        assert stored_during_outage > 0, explain(result)
        assert result.notes["cached_of_published_during_fault"] == stored_during_outage, explain(result)

