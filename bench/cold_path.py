"""Cold path benchmark on the embedded stack: records scored per second, duplicates found, and the cost of
duplicate detection with blocking against comparing with every active record.

    .venv/bin/python bench/cold_path.py [--records 2500] [--copies 100] [--baseline-sample 100]

1. `--records` realistic records of source A are stored as the hot path stores them and scored (an empty
   index: every record becomes canonical); then `--records` records of source B, `--copies` of which republish
   an A record under B's own id (the rest are other programs), are scored against those A records.
   Records/s of each run; planted copies found (recall) and other records wrongly linked (false duplicates).
2. Baseline: what the design's sketch would do without blocking: each of `--baseline-sample` B records compared
   with every active record (guards and similarity, the same functions); against it, the same records through
   the band-key candidates (`CanonicalIndex`). Per-record time of each, and their ratio.

Targets: >= 100 records/s with thousands of canonical records; every planted copy found, no false duplicate;
blocking compares each record with >= 10x fewer canonical records than the full comparison (the time per
record is printed too: the guards make a single comparison cheap, so the time gap is smaller than the gap in
comparisons at this size, and it grows with the table while the candidate count does not). The last line is
JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

from aegis_pipeline.cold_path import duplicates
from aegis_pipeline.cold_path.run import run_cold_path
from aegis_pipeline.cold_path.store import _POLICY_COLUMNS, record_of
from aegis_pipeline.common.logging import configure_logging
from aegis_pipeline.devstack import stack
from aegis_pipeline.devstack.synthetic import make_records
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.domain.records import CollectionMetadata
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.settings import Settings, load_core_settings
from aegis_pipeline.stores import postgres

TARGET_RECORDS_PER_SECOND = 100
TARGET_RATIO = 10


async def store(settings: Settings, records: list) -> None:
    pool = await postgres.create_pool(settings)
    try:
        clean = [normalize_record(record) for record in records]
        for start in range(0, len(clean), 500):
            await PolicyStore(pool).store_batch(clean[start : start + 500], lambda stored: [])
    finally:
        await pool.close()


async def scored_run(settings: Settings, source: str) -> tuple[float, dict[str, int]]:
    started = time.monotonic()
    report = await run_cold_path(settings, source=source)
    return report.processed / (time.monotonic() - started), report.counts


async def links(settings: Settings, source: str) -> list[tuple[str, str]]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch(
            "SELECT p.external_id, c.external_id AS canonical FROM policy_duplicates d "
            "JOIN policies p ON p.id = d.policy_id JOIN policies c ON c.id = d.canonical_id "
            "WHERE p.source_system = $1", source)
    return [(row["external_id"], row["canonical"]) for row in rows]


async def baseline(settings: Settings, source_a: str, source_b: str, sample: int) -> dict[str, float]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        active = [record_of(row) for row in await connection.fetch(
            f"SELECT {_POLICY_COLUMNS} FROM policies p WHERE source_system = $1", source_a)]  # noqa: S608
        probes = [record_of(row) for row in await connection.fetch(
            f"SELECT {_POLICY_COLUMNS} FROM policies p WHERE source_system = $1 LIMIT $2",  # noqa: S608
            source_b, sample)]
    canonical = [duplicates.features(record) for record in active]
    index = duplicates.CanonicalIndex()
    for item in canonical:
        index.add(item, duplicates.block_keys(item).stored)
    probe_features = [duplicates.features(record) for record in probes]

    started = time.monotonic()
    for item in probe_features:
        max((duplicates.similarity(item, other)[0] for other in canonical), default=0.0)
    full_ms = (time.monotonic() - started) * 1000 / len(probes)
    started = time.monotonic()
    for item in probe_features:
        index.best_match(item, duplicates.block_keys(item).probes, settings.duplicate_similarity_threshold)
    blocked_ms = (time.monotonic() - started) * 1000 / len(probes)
    compared = sum(len(index.candidates(duplicates.block_keys(item).probes)) for item in probe_features) / len(probes)
    return {"canonical_records": len(canonical), "candidates_per_record": round(compared, 1),
            "comparisons_ratio": round(len(canonical) / max(compared, 1), 1),
            "full_comparison_ms_per_record": round(full_ms, 2), "blocking_ms_per_record": round(blocked_ms, 2),
            "time_ratio": round(full_ms / blocked_ms, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2500)
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--baseline-sample", type=int, default=100)
    arguments = parser.parse_args()
    configure_logging("WARNING")
    settings = await asyncio.to_thread(stack.up, load_core_settings())
    token = uuid.uuid4().hex[:6]
    source_a, source_b = f"bench_a_{token}", f"bench_b_{token}"

    originals = make_records(arguments.records, source=source_a)
    copies = [record.model_copy(update={"collection_metadata": CollectionMetadata(
        source=source_b, external_id=f"COPY-{index}", collected_at=datetime.now(UTC))})
        for index, record in enumerate(originals[: arguments.copies])]
    others = make_records(arguments.records - arguments.copies, source=source_b, start=arguments.records)
    await store(settings, originals)
    await store(settings, [*copies, *others])

    first_rate, first_counts = await scored_run(settings, source_a)
    second_rate, second_counts = await scored_run(settings, source_b)
    found = await links(settings, source_b)
    planted = {f"COPY-{index}": originals[index].collection_metadata.external_id for index in range(len(copies))}
    true_links = sum(1 for copy, canonical in found if planted.get(copy) == canonical)
    false_links = len(found) - true_links
    compared = await baseline(settings, source_a, source_b, arguments.baseline_sample)

    print(f"scoring, empty index:        {first_rate:8.1f} records/s  {first_counts}")
    print(f"scoring, {arguments.records} canonical: {second_rate:8.1f} records/s  {second_counts}")
    print(f"planted copies found:        {true_links}/{len(copies)}; false duplicates: {false_links}")
    print(f"duplicate check per record:  compared with {compared['candidates_per_record']} of "
          f"{compared['canonical_records']} canonical records ({compared['comparisons_ratio']}x fewer); "
          f"full comparison {compared['full_comparison_ms_per_record']} ms, blocking "
          f"{compared['blocking_ms_per_record']} ms ({compared['time_ratio']}x)")
    passed = (min(first_rate, second_rate) >= TARGET_RECORDS_PER_SECOND and true_links == len(copies)
              and false_links == 0 and compared["comparisons_ratio"] >= TARGET_RATIO)
    print(json.dumps({"benchmark": "cold_path", "records_per_second": {"empty_index": round(first_rate, 1),
                      "with_canonical": round(second_rate, 1)}, "planted_copies": len(copies),
                      "copies_found": true_links, "false_duplicates": false_links, "baseline": compared,
                      "targets_met": passed}))


if __name__ == "__main__":
    asyncio.run(main())
