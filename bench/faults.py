"""Fault benchmark on the embedded stack: the reliability scenarios at the issue's full durations, one table.

    .venv/bin/python bench/faults.py [--scenarios broker,postgres,...] [--rate 20] [--keep]

Each scenario (devstack/fault_scenarios.py) streams records through the real collectors (the scheduler
process), the hot path (a process), the cold path and the sync where the scenario uses them, while one fault
happens: the Kafka-API broker stopped 30 s (it restarts empty), PostgreSQL stopped 60 s, Redis stopped 30 s,
the vectors (Milvus) and search (Elasticsearch API) targets stopped 30 s each, the hot path and the cold path
killed with SIGKILL 3 times at random points. The graph target is an embedded file, with no server to stop.

Printed per scenario: records sent (offered by the source), stored, lost, duplicated (stored twice), events
missing (expected events not on the topic, read from its beginning, by event id), recovery time (from the end
of the fault until everything offered by then was stored), whether the sync targets agree with PostgreSQL
after the next sync and a repair. Then per scenario and event type (`policy.validated`,
`data.quality_updated`, `data.sync_completed`): expected (one per stored fact: each policy's version, each
policy's current scoring, each sync run of the scenario), lost with the broker (of those, on the topic when the
broker stopped: it restarts empty, so each was announced again; broker scenario only, which scores and syncs
before the fault so that it loses events of every type), found after, missing. The stack runs in its own data
directory (`--data-dir`, default `.aegis-faults`), stopped and deleted at the end unless `--keep`.
Target: 0 lost, 0 duplicated, 0 events missing of any type for every scenario. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from pathlib import Path

from aegis_pipeline.devstack import fault_scenarios, stack
from aegis_pipeline.devstack.fault_scenarios import SCENARIOS, RunOptions
from aegis_pipeline.settings import load_core_settings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, from: {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--rate", type=float, default=20.0, help="new records per second offered by the source")
    parser.add_argument("--outage-seconds", type=float, default=None,
                        help="override every engine outage (default: the issue's: broker 30, PostgreSQL 60, ...)")
    parser.add_argument("--seed", type=int, default=8, help="seed of the random kill points")
    parser.add_argument("--data-dir", type=Path, default=Path(".aegis-faults"))
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    arguments = parser.parse_args()
    names = [name.strip() for name in arguments.scenarios.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")

    core = load_core_settings(aegis_data_dir=arguments.data_dir)
    settings = await asyncio.to_thread(stack.up, core)
    options = RunOptions(rate_per_second=arguments.rate, seed=arguments.seed)
    results = []
    started = time.monotonic()
    try:
        for name in names:
            scenario = SCENARIOS[name]
            if arguments.outage_seconds is not None and scenario.engine is not None:
                scenario = dataclasses.replace(scenario, outage_seconds=arguments.outage_seconds)
            result = await fault_scenarios.run_scenario(core, settings, scenario, options,
                                                        progress=lambda line: print(line, flush=True))
            results.append(result)
            missing = ", ".join(f"{event_type} {figures.missing}" for event_type, figures in result.events.items())
            print(f"{name}: sent {result.sent}, stored {result.stored}, lost {result.lost}, duplicated "
                  f"{result.duplicated}, events missing {result.events_missing} ({missing}), recovery "
                  f"{result.recovery_seconds} s", flush=True)
    finally:
        if not arguments.keep:
            await asyncio.to_thread(stack.down, core, purge=True)
    print()
    print(fault_scenarios.table(results))
    met = {result.scenario: result.nothing_lost for result in results}
    print(json.dumps({"benchmark": "faults", "rate_per_second": arguments.rate,
                      "seconds": round(time.monotonic() - started, 1),
                      "scenarios": [result.as_dict() for result in results],
                      "target": "0 lost, 0 duplicated, 0 events missing, targets converged",
                      "met": met, "all_met": all(met.values())}, ensure_ascii=False, default=str))


if __name__ == "__main__":
    asyncio.run(main())
