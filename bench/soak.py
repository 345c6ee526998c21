"""Soak run on the embedded stack: the whole pipeline, continuously, for N minutes; then it stops by itself.

    .venv/bin/python bench/soak.py [--minutes 20] [--rate 10] [--change-share 0.2] [--keep]

A sample source keeps offering new records and new revisions of records it offered before (`--rate` a second
in all, `--change-share` of them changes), collected every `--collect-every` seconds by the real collectors
(the `scheduler` process) and stored by the real hot path (a `hot-path` process); at every minute mark the
cold path, the sync and a consistency check run one after the other, each as its own `aegis-pipeline` process,
as the DAG's tasks do; a batch still running at the next mark makes that mark's batch skipped (counted), not
queued. After the last minute the source stops, everything offered is drained into PostgreSQL, and one last
batch runs. See devstack/soak.py for what is measured and how.

Printed, one row per minute as it ends (counts are of that minute):
- in new / in chg: records the source offered (new, changed); st new / st upd: stored in PostgreSQL (new
  policies, new versions); unstored: new records offered so far not stored yet;
- events: events that reached the events topic (read by a consumer of its own, not the outbox's counts);
  dlq: dead letters written;
- p99 ms: the hot path's collection-to-event latency, from its /metrics histogram (bucket counts added in that
  minute, interpolated as Prometheus does);
- hot / sched MB, fd, cpu%: RSS, open file descriptors and CPU share of the hot path and of the scheduler;
- cold / sync s and MB, check s, drift: duration and peak RSS of the batch commands that ended that minute (they
  are short-lived: their peak, from the kernel, not a sample), the consistency check's duration and drift;
- skip: the previous minute's batch still ran at this mark;
- <table> MB: PostgreSQL `pg_total_relation_size`/`pg_indexes_size` of policies, processing_history,
  text_embeddings, collected_records, event_outbox, dead_letters (the JSON also has quality_metrics and
  policy_fingerprints).

Then the verdicts, pass or fail, meant for 20 minutes: memory and descriptors of each process, and the p99, flat
(mean of the last 5 minutes at most 10% above the mean of minutes 5-10; floors: 500 ms for p99, 20 descriptors),
the consistency check clean at the end, nothing lost (every record offered stored, at its latest revision), no
pipeline process ended on its own. A shorter run judges what it can: under 5 minutes, no flatness.
`--minute-seconds` shortens the "minute" (the test's 1-minute soak uses 20 s): rows, batches and verdicts keep
to these minutes. The stack runs in its own data directory (`--data-dir`, default `.aegis-soak`), stopped and
deleted at the end unless `--keep`. The last line is JSON: every row, the last batch, the verdicts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from aegis_pipeline.common.logging import configure_logging
from aegis_pipeline.devstack import soak, stack
from aegis_pipeline.devstack.soak import SoakOptions
from aegis_pipeline.settings import load_core_settings


def print_row(row: soak.MinuteRow) -> None:
    if row.minute == 1:
        print(soak.table_header())
    print(soak.table_row(row), flush=True)


async def main() -> None:
    defaults = SoakOptions()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=defaults.minutes)
    parser.add_argument("--rate", type=float, default=defaults.rate_per_second,
                        help="records per second offered by the source, new and changed (default: %(default)s: "
                             "the cold path and the sync, which encodes every new text, keep up with it on a "
                             "shared 2-core host with room to spare)")
    parser.add_argument("--change-share", type=float, default=defaults.change_share,
                        help="share of the offered records that are changes of records offered before")
    parser.add_argument("--collect-every", type=float, default=defaults.collect_every_seconds,
                        help="seconds between two collections of the source")
    parser.add_argument("--minute-seconds", type=float, default=defaults.minute_seconds,
                        help="length of one soak minute in seconds (shorter only for a quick check)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the records picked to change")
    parser.add_argument("--data-dir", type=Path, default=Path(".aegis-soak"))
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    arguments = parser.parse_args()
    if arguments.minutes < 1 or arguments.rate <= 0 or not 0 <= arguments.change_share < 1:
        parser.error("--minutes must be at least 1, --rate above 0, --change-share in [0, 1)")
    options = SoakOptions(minutes=arguments.minutes, minute_seconds=arguments.minute_seconds,
                          rate_per_second=arguments.rate, change_share=arguments.change_share,
                          collect_every_seconds=arguments.collect_every, seed=arguments.seed)

    configure_logging("WARNING")  # log lines to stderr, and only what went wrong: stdout keeps the table
    core = load_core_settings(aegis_data_dir=arguments.data_dir)
    started = time.monotonic()
    settings = await asyncio.to_thread(stack.up, core)
    try:
        result = await soak.run_soak(settings, options, on_row=print_row, progress=lambda line: print(line, flush=True))
    finally:
        if not arguments.keep:
            await asyncio.to_thread(stack.down, core, purge=True)
    print()
    print(f"drained in {result.drain_seconds} s; batches skipped (still running at the next mark): "
          f"{result.batches_skipped}; events on the topic: {result.events_by_type}")
    for run in result.final_batch:
        print(f"last batch: {run.command} exit {run.exit_code}, {run.seconds} s, peak RSS {run.peak_rss_mb} MB")
    for line in soak.verdict_lines(result):
        print(line)
    report = result.as_dict()
    print(json.dumps({"benchmark": "soak", "seconds": round(time.monotonic() - started, 1), **report},
                     ensure_ascii=False, default=str))


if __name__ == "__main__":
    asyncio.run(main())
