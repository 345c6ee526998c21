"""Requests each shipped source sends on a catalogue of its real size: its first run, a steady 6-hourly run, the
run that takes its weekly full listing, and per day against its daily request budget.

    .venv/bin/python bench/source_requests.py [--sizes mss_biz=10000,bizinfo=20000,...]

Each source of THE SHIPPED file (helm/aegis-data-pipeline/files/sources.yaml) is pointed at
devstack/spec_sources.py, serving the catalogue's size (the fixture, then generated items), and read through the
collector's own code (`devstack.source_reading.read_source`), its checkpoint carried from run to run:

1. first run: nothing collected yet (date windows: the window and the first full listing; 기업마당: the full
   listing alone; K-Startup: what is recruiting);
2. a steady run 6 hours later, everything of run 1 already published;
3. the run 7 days later, when the full listing is due again.

Per day: four runs (`COLLECTION_INTERVAL_HOURS` 6), the full listing on one day in seven; the board once a day
(its requests, detail pages and robots.txt included, counted in the server's log). Baseline, in the same run: the
same file without `incremental` and `full_listing`, where every run lists everything. Target: the day with the
full listing stays within the source's `daily_request_budget`.

Catalogue sizes (assumed from the services' listings, not measured there; requests scale with size / page size):
중기부 10,000 announcements; 기업마당 20,000; K-Startup ~25,000 of which ~300 recruiting (only those are asked for:
served as 375, every fifth one closed); 정부24 10,000 services (its issue's "about ten thousand"); the board 5 list
pages a day. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from aegis_pipeline.collectors.definitions import SourceDefinition, SourceKind, parse_sources
from aegis_pipeline.collectors.incremental import Checkpoint
from aegis_pipeline.devstack.source_reading import Collected, read_source
from aegis_pipeline.devstack.spec_sources import DEFAULT_BIZINFO_KEY, DEFAULT_SERVICE_KEY, SpecSources

SHIPPED_FILE = Path(__file__).parents[1] / "helm" / "aegis-data-pipeline" / "files" / "sources.yaml"
ENVIRONMENT = {"DATA_GO_KR_SERVICE_KEY": DEFAULT_SERVICE_KEY, "BIZINFO_API_KEY": DEFAULT_BIZINFO_KEY}
DEFAULT_SIZES = {"mss_biz": 10_000, "bizinfo": 20_000, "kstartup": 375, "gov24": 10_000, "seongdong_notice": 60}
RUNS_A_DAY = 4
FULL_LISTING_DAYS = 7


def shipped_sources(base_url: str, *, incremental: bool) -> dict[str, SourceDefinition]:
    """The shipped file, its hosts pointed at `base_url`, the board's delay at 0; `incremental=False`: without
    `incremental` and `full_listing` (the baseline: every run lists everything)."""
    document = yaml.safe_load(SHIPPED_FILE.read_text(encoding="utf-8"))
    for entry in document["sources"]:
        parts = urlsplit(entry["url"])
        entry["url"] = base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        if "html" in entry:
            entry["html"]["download_delay_seconds"] = 0
        if not incremental:
            entry.pop("incremental", None)
            entry.pop("full_listing", None)
    parsed = parse_sources(copy.deepcopy(document), ENVIRONMENT, origin=str(SHIPPED_FILE))
    return {source.name: source for source in parsed.sources}


async def counted_run(server: SpecSources, source: SourceDefinition, checkpoint: Checkpoint | None,
                      seen: frozenset[str], now: datetime) -> tuple[Collected, int, float, float]:
    """One run; its requests (the server's log, so a board's detail pages count), wall and CPU seconds."""
    server.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    collected = await read_source(source, checkpoint, seen=seen, now=now)
    return collected, len(server.requests), time.perf_counter() - wall, time.process_time() - cpu


async def measure(server: SpecSources, source: SourceDefinition, baseline: SourceDefinition) -> dict[str, Any]:
    start = datetime.now(UTC)
    first, first_requests, wall, cpu = await counted_run(server, source, Checkpoint(), frozenset(), start)
    seen = frozenset(first.records)
    steady, steady_requests, *_ = await counted_run(server, source, first.next_checkpoint, seen,
                                                    start + timedelta(hours=6))
    assert steady.next_checkpoint is not None
    week_later = start + timedelta(days=FULL_LISTING_DAYS)
    due = replace(steady.next_checkpoint, full_listing_completed_at=start)
    _, full_day_requests, *_ = await counted_run(server, source, due, seen, week_later)
    _, baseline_requests, *_ = await counted_run(server, baseline, None, frozenset(), start)
    runs_a_day = 1 if source.kind is SourceKind.HTML else RUNS_A_DAY
    peak_day = (runs_a_day - 1) * steady_requests + full_day_requests
    return {
        "source": source.name, "records": len(first.records),
        "page_size": getattr(source.pagination, "page_size", None),
        "first_run": first_requests, "first_run_listings": "+".join(first.result.listings if first.result else []),
        "steady_run": steady_requests, "full_listing_run": full_day_requests,
        "per_day": runs_a_day * steady_requests, "per_full_listing_day": peak_day,
        "per_day_before": runs_a_day * baseline_requests, "budget": source.daily_request_budget,
        "within_budget": source.daily_request_budget is None or max(peak_day, first_requests)
        <= source.daily_request_budget,
        "first_run_seconds": round(wall, 2),
        "first_run_cpu_ms_per_record": round(cpu * 1000 / max(1, len(first.fetched_ids)), 3),
    }


def parse_sizes(text: str) -> dict[str, int]:
    sizes = dict(DEFAULT_SIZES)
    for part in filter(None, text.split(",")):
        name, _, count = part.partition("=")
        sizes[name.strip()] = int(count)
    return sizes


async def main_async(sizes: dict[str, int]) -> list[dict[str, Any]]:
    with SpecSources(sizes=sizes) as server:
        sources = shipped_sources(server.base_url, incremental=True)
        baselines = shipped_sources(server.base_url, incremental=False)
        return [await measure(server, sources[name], baselines[name]) for name in sources]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="", help="source=items,... (default: %(default)s then DEFAULT_SIZES)")
    arguments = parser.parse_args()
    rows = asyncio.run(main_async(parse_sizes(arguments.sizes)))
    print(f"{'source':<18}{'items':>7}{'page':>6}{'first run':>10}{'steady':>8}{'full-day run':>13}"
          f"{'a day':>7}{'full day':>9}{'before':>8}{'budget':>8}  first run wall / CPU per record")
    for row in rows:
        print(f"{row['source']:<18}{row['records']:>7}{row['page_size'] or '-':>6}{row['first_run']:>10}"
              f"{row['steady_run']:>8}{row['full_listing_run']:>13}{row['per_day']:>7}{row['per_full_listing_day']:>9}"
              f"{row['per_day_before']:>8}{row['budget'] or '-':>8}  {row['first_run_seconds']} s / "
              f"{row['first_run_cpu_ms_per_record']} ms  {'ok' if row['within_budget'] else 'OVER BUDGET'}")
    average = {row["source"]: round(((FULL_LISTING_DAYS - 1) * row["per_day"] + row["per_full_listing_day"])
                                    / FULL_LISTING_DAYS, 1) for row in rows}
    print(f"average requests a day over a week: {average}")
    verdict = all(row["within_budget"] for row in rows)
    print("verdict:", "every source within its daily request budget" if verdict else "a source exceeds its budget")
    print(json.dumps({"rows": rows, "average_per_day": average, "ok": verdict}, ensure_ascii=False))
    raise SystemExit(0 if verdict else 1)


if __name__ == "__main__":
    main()
