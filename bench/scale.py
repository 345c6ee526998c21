"""Scale benchmark on the embedded stack: every stage at 10,000, 30,000 and 100,000 policies of a national
catalogue, so a cost that grows with the table shows as a curve, with CPU time per record beside wall time.

    .venv/bin/python bench/scale.py [--sizes 10000,30000,100000] [--workers 1] [--stages cold,sync]

Per size, in a database and target collections of its own (dropped afterwards):
1. `devstack.synthetic.make_catalogue(size)`: templated titles, one programme name across years, 시·도 and rounds
   (look-alike siblings), 5% labelled copies another source published later, stored as the hot path stores them.
2. Cold path on all of them: records/s over the whole run, batch time by tenth of the run and `slowdown` (time per
   record of the last 10% of batches over the first 10%), labelled copies found (`recall`), links between two
   programmes (`false_duplicates`), of which between records of one programme name (`siblings_linked`). With
   `--workers N`, N processes score the run at once, as the DAG's N mapped tasks do (`score_batches`).
3. Sync (`--stages sync`): full sync of every active policy (embeddings stored beforehand, as bench/sync.py
   does), 1% changed and scored again then the incremental sync, and the consistency check of the unchanged
   targets, per target.

CPU seconds of the pipeline's processes and of PostgreSQL (its server and every backend, from /proc) are
printed per record beside wall time: on this shared host wall time moves by up to 2x from run to run, CPU time
far less. Targets, checked at the largest size: cold path >= 500 records/s, slowdown <= 1.5, every copy found,
no sibling linked; consistency check under 10 s for all three targets; incremental sync of 1% under 30 s. The
last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from aegis_pipeline.cold_path.run import WorkerReport, finish_run, score_batches, start_run
from aegis_pipeline.common.logging import configure_logging
from aegis_pipeline.common.progress import progress
from aegis_pipeline.devstack import stack
from aegis_pipeline.devstack.synthetic import CatalogueRecord, make_catalogue
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings, load_core_settings, load_settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.sync.consistency import check_consistency
from aegis_pipeline.sync.run import run_sync

TARGET_RECORDS_PER_SECOND = 500
TARGET_SLOWDOWN = 1.5
TARGET_CHECK_SECONDS = 10.0
TARGET_INCREMENTAL_SECONDS = 30.0
STORE_CHUNK = 500  # the hot path's batch: records of one chunk share an `updated_at`, so this keeps the order


def _bench_sync_module() -> Any:
    """bench/sync.py's helpers (embedding prefill, per-target figures, clean-up); loaded by path because the
    module's name would shadow the `sync` package."""
    spec = importlib.util.spec_from_file_location("bench_sync", Path(__file__).with_name("sync.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log(message: str) -> None:
    print(message, flush=True)


# --- CPU accounting ----------------------------------------------------------------------------------------------

def postgres_cpu_seconds(settings: Settings) -> float | None:
    """CPU seconds used so far by the stack's PostgreSQL: the server, its live backends, and (through the
    server's children times) every backend that has exited."""
    pid_file = settings.aegis_data_dir / "postgres" / "data" / "postmaster.pid"
    try:
        server = psutil.Process(int(pid_file.read_text().splitlines()[0]))
        times = server.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in server.children():
            with_child = child.cpu_times()
            total += with_child.user + with_child.system
        return total
    except (OSError, ValueError, psutil.Error):
        return None


def own_cpu_seconds() -> float:
    """This process's CPU seconds plus those of the worker processes it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Meter:
    """Wall and CPU seconds of one stage."""

    settings: Settings
    wall: float = 0.0
    pipeline_cpu: float = 0.0
    postgres_cpu: float | None = None

    def __enter__(self) -> Meter:
        self._wall, self._cpu, self._pg = time.perf_counter(), own_cpu_seconds(), postgres_cpu_seconds(self.settings)
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.pipeline_cpu = own_cpu_seconds() - self._cpu
        after = postgres_cpu_seconds(self.settings)
        self.postgres_cpu = None if after is None or self._pg is None else after - self._pg

    def per_record_us(self, records: int) -> dict[str, float | None]:
        return {"pipeline_cpu_us": round(self.pipeline_cpu / records * 1e6),
                "postgres_cpu_us": None if self.postgres_cpu is None else round(self.postgres_cpu / records * 1e6)}


# --- the stages --------------------------------------------------------------------------------------------------

async def store_catalogue(settings: Settings, catalogue: Sequence[CatalogueRecord]) -> None:
    pool = await postgres.create_pool(settings)
    try:
        store = PolicyStore(pool)
        with progress("store policies", total=len(catalogue)) as shown:
            for start in range(0, len(catalogue), STORE_CHUNK):
                chunk = [normalize_record(item.record) for item in catalogue[start:start + STORE_CHUNK]]
                await store.store_batch(chunk, lambda stored: [])
                shown.advance(len(chunk))
    finally:
        await pool.close()


async def score_in_workers(settings: Settings, workers: int) -> tuple[str, list[WorkerReport]]:
    """One cold-path run scored by `workers` processes at once (each `score_batches`, as a mapped DAG task)."""
    run_id = f"bench-scale-{uuid.uuid4().hex[:8]}"
    await start_run(settings, run_id, limit=None, source=None, rescore_all=False)
    if workers == 1:
        return run_id, [await score_batches(settings, run_id)]
    # Every PostgreSQL variable, so the workers use this run's database and take nothing of it from the stack.
    environment = {**os.environ, "AEGIS_DATA_DIR": str(settings.aegis_data_dir),
                   "POSTGRES_HOST": settings.postgres_host, "POSTGRES_PORT": str(settings.postgres_port),
                   "POSTGRES_USER": settings.postgres_user, "POSTGRES_DB": settings.postgres_db,
                   "POSTGRES_PASSWORD": settings.postgres_password.get_secret_value()}
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--worker-of", run_id, stdout=asyncio.subprocess.PIPE, env=environment)
        for _ in range(workers)]
    reports = []
    for process in processes:
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"a cold-path worker failed with exit code {process.returncode}")
        fields = json.loads(output.decode().strip().splitlines()[-1])
        reports.append(WorkerReport(**{**fields, "batch_seconds": tuple(fields["batch_seconds"])}))
    return run_id, reports


def batch_curve(reports: Sequence[WorkerReport], records_per_batch: int) -> tuple[list[float], float]:
    """Mean ms per record of each tenth of the run's batches (all workers' batches in time order), and the
    slowdown: last tenth over first tenth."""
    # Workers run side by side: their batches in turn, each worker's by its place in its own run.
    batches = [seconds for turn in itertools.zip_longest(*(report.batch_seconds for report in reports))
               for seconds in turn if seconds is not None]
    tenth = max(1, len(batches) // 10)
    deciles = [sum(batches[i:i + tenth]) / len(batches[i:i + tenth]) * 1000 / records_per_batch
               for i in range(0, tenth * 10, tenth) if batches[i:i + tenth]]
    return [round(value, 3) for value in deciles], round(deciles[-1] / deciles[0], 2)


async def duplicate_quality(settings: Settings, catalogue: Sequence[CatalogueRecord]) -> dict[str, int]:
    """Copies linked with a record of their own programme (either way: a copy scored before its original is the
    programme's canonical record and the original links to it), links across programmes, and of those the links
    between records of one programme name (a sibling in another year, 시·도 or round)."""
    label = {item.record.collection_metadata.external_id: item for item in catalogue}
    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch(
            "SELECT p.external_id, c.external_id AS canonical FROM policy_duplicates d "
            "JOIN policies p ON p.id = d.policy_id JOIN policies c ON c.id = d.canonical_id")
    pairs = [(label[row["external_id"]], label[row["canonical"]]) for row in rows]
    linked_copies = len({id(item) for pair in pairs if pair[0].programme == pair[1].programme
                         for item in pair if item.copy})
    false_links = [(first, second) for first, second in pairs if first.programme != second.programme]
    siblings = sum(1 for first, second in false_links if first.name == second.name)
    found = {id(item) for pair in pairs if pair[0].programme == pair[1].programme for item in pair}
    for first, second in false_links[:3]:
        log(f"  false duplicate: {first.record.title!r} ({first.record.issuing_organization}) -> "
            f"{second.record.title!r} ({second.record.issuing_organization})")
    for item in [item for item in catalogue if item.copy and id(item) not in found][:3]:
        original = next(other for other in catalogue if other.programme == item.programme and not other.copy)
        log(f"  copy not linked: {item.record.title!r} ({item.record.issuing_organization}), original "
            f"{original.record.title!r} ({original.record.issuing_organization})")
    return {"copies": sum(1 for item in catalogue if item.copy), "copies_found": linked_copies,
            "false_duplicates": len(false_links), "siblings_linked": siblings}


async def change_one_percent(settings: Settings, catalogue: Sequence[CatalogueRecord]) -> int:
    """A new version of 1% of the originals (an amended notice), scored again so they are active once more."""
    changed = [item.record for item in catalogue if not item.copy][: max(1, len(catalogue) // 100)]
    amended = [record.model_copy(update={"content": record.content + " (정정 공고: 접수 기간이 연장되었습니다.)"})
               for record in changed]
    await store_catalogue(settings, [CatalogueRecord(record, -1, "", copy=False) for record in amended])
    run_id, workers = await score_in_workers(settings, 1)
    await finish_run(settings, run_id, workers)
    return len(amended)


async def measure_size(base: Settings, size: int, *, workers: int, stages: set[str],
                       bench_sync: Any) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    database = f"bench_scale_{suffix}"
    scratch = base.aegis_data_dir / f"bench-scale-{suffix}"
    scratch.mkdir(parents=True)
    await postgres.ensure_database(base.postgres_dsn(database="postgres"), database)
    settings = base.model_copy(update={
        "postgres_db": database, "milvus_collection": f"bench_scale_{suffix}",
        "elasticsearch_index": f"bench-scale-{suffix}", "graph_uri": str(scratch / "graph.lbug"),
        "sync_batch_size": 5000, "sync_max_encode_per_run": 0})
    await asyncio.to_thread(upgrade_to_head, settings)
    figures: dict[str, Any] = {"records": size}
    try:
        catalogue = make_catalogue(size)
        with Meter(settings) as stored:
            await store_catalogue(settings, catalogue)
        log(f"[{size}] stored in {stored.wall:.1f} s")
        # The hourly DAG finds a settled database; right after a bulk load autovacuum would vacuum and analyze the
        # new rows during the first part of the run (measured: its first tenth 2-3x slower than the second).
        async with postgres.connect(settings.postgres_dsn()) as connection:
            await connection.execute("VACUUM (ANALYZE)")

        with Meter(settings) as cold:
            run_id, reports = await score_in_workers(settings, workers)
            report = await finish_run(settings, run_id, reports)
        curve, slowdown = batch_curve(reports, settings.cold_path_batch_size)
        quality = await duplicate_quality(settings, catalogue)
        figures["cold_path"] = {
            "records": report.processed, "workers": workers, "seconds": round(cold.wall, 1),
            "records_per_second": round(report.processed / cold.wall), "slowdown": slowdown,
            "ms_per_record_by_tenth": curve, "recall": round(quality["copies_found"] / max(quality["copies"], 1), 4),
            **quality, "counts": report.counts, **cold.per_record_us(report.processed)}
        log(f"[{size}] cold path: {report.processed} in {cold.wall:.1f} s = {report.processed / cold.wall:.0f}/s "
            f"({workers} worker(s)); ms/record by tenth {curve}, slowdown {slowdown}; copies found "
            f"{quality['copies_found']}/{quality['copies']}, false duplicates {quality['false_duplicates']} "
            f"(siblings {quality['siblings_linked']}); CPU/record: pipeline "
            f"{figures['cold_path']['pipeline_cpu_us']} µs, PostgreSQL {figures['cold_path']['postgres_cpu_us']} µs")

        if "sync" in stages:
            figures |= await measure_sync(settings, catalogue, report.counts["active"], bench_sync)
    finally:
        await bench_sync.cleanup(settings, base, database, scratch)
    return figures


async def measure_sync(settings: Settings, catalogue: Sequence[CatalogueRecord], active: int,
                       bench_sync: Any) -> dict[str, Any]:
    await bench_sync.prefill_embeddings(settings, seed=1)
    with Meter(settings) as full:
        synced = await run_sync(settings)
    assert synced.success, [result.error for result in synced.results]
    size = len(catalogue)
    log(f"[{size}] full sync of {active}: {full.wall:.1f} s; " + ", ".join(
        f"{result.target} {result.duration_seconds:.1f} s" for result in synced.results))

    changed = await change_one_percent(settings, catalogue)
    await bench_sync.prefill_embeddings(settings, seed=2)
    with Meter(settings) as incremental:
        delta = await run_sync(settings)
    assert delta.success, [result.error for result in delta.results]
    log(f"[{size}] incremental sync of {changed} changed: {incremental.wall:.2f} s; " + ", ".join(
        f"{result.target} {result.duration_seconds:.2f} s" for result in delta.results))

    with Meter(settings) as checked:
        check = await check_consistency(settings)
    per_target = {name: round(target.duration_seconds, 2) for name, target in check.targets.items()}
    log(f"[{size}] consistency check of {active} unchanged: {checked.wall:.2f} s {per_target}, "
        f"consistent: {check.consistent}")
    return {
        "full_sync": {"records": active, "seconds": round(full.wall, 1),
                      "records_per_second": round(active / full.wall), "targets": bench_sync.per_target(synced),
                      **full.per_record_us(active)},
        "incremental_sync": {"changed": changed, "seconds": round(incremental.wall, 2),
                             "targets": bench_sync.per_target(delta)},
        "consistency_check": {"documents": active, "seconds": round(checked.wall, 2), "targets": per_target,
                              "consistent": check.consistent, **checked.per_record_us(active)},
    }


def print_table(results: Sequence[dict[str, Any]]) -> None:
    log("")
    log(f"{'records':>8} {'cold rec/s':>10} {'slowdown':>8} {'recall':>6} {'false':>5} {'cpu µs/rec':>10} "
        f"{'pg µs/rec':>9} {'full sync s':>11} {'1% sync s':>9} {'check s':>7}")
    for figures in results:
        cold = figures["cold_path"]
        log(f"{figures['records']:>8} {cold['records_per_second']:>10} {cold['slowdown']:>8} {cold['recall']:>6} "
            f"{cold['false_duplicates']:>5} {cold['pipeline_cpu_us']:>10} {cold['postgres_cpu_us']!s:>9} "
            f"{figures.get('full_sync', {}).get('seconds', '-')!s:>11} "
            f"{figures.get('incremental_sync', {}).get('seconds', '-')!s:>9} "
            f"{figures.get('consistency_check', {}).get('seconds', '-')!s:>7}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--stages", default="cold,sync")
    parser.add_argument("--worker-of", help=argparse.SUPPRESS)  # internal: score run WORKER_OF as one worker
    arguments = parser.parse_args()
    configure_logging(os.environ.get("LOG_LEVEL") or ("WARNING" if sys.stderr.isatty() else "INFO"),
                      json_lines=False)
    if arguments.worker_of:
        report = await score_batches(load_settings(), arguments.worker_of)
        print(json.dumps({**report.__dict__, "batch_seconds": list(report.batch_seconds)}))
        return
    base = await asyncio.to_thread(stack.up, load_core_settings())
    bench_sync = _bench_sync_module()
    stages = set(arguments.stages.split(","))
    results = [await measure_size(base, int(size), workers=arguments.workers, stages=stages, bench_sync=bench_sync)
               for size in arguments.sizes.split(",")]
    print_table(results)
    largest = results[-1]
    cold = largest["cold_path"]
    met = {"cold_path_records_per_second": cold["records_per_second"] >= TARGET_RECORDS_PER_SECOND,
           "cold_path_slowdown": cold["slowdown"] <= TARGET_SLOWDOWN,
           "every_copy_found": cold["copies_found"] == cold["copies"],
           "no_sibling_linked": cold["siblings_linked"] == 0}
    if "consistency_check" in largest:
        met["consistency_check_under_10s"] = largest["consistency_check"]["seconds"] < TARGET_CHECK_SECONDS
        met["incremental_sync_under_30s"] = largest["incremental_sync"]["seconds"] < TARGET_INCREMENTAL_SECONDS
    print(json.dumps({**{key: value for key, value in largest.items() if key != "records"},
                      "sizes": {figures["records"]: figures for figures in results},
                      "targets_met": met, "all_met": all(met.values())}, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
