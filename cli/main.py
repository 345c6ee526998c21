"""`aegis-pipeline`: subcommands wire settings to the functions of each package, and print results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from common.logging import configure_logging
from settings import Settings, SettingsError, load_core_settings, load_settings

if TYPE_CHECKING:
    from collectors.definitions import SourcesFile


@click.group()
def main() -> None:
    """Aegis data pipeline: collect, validate, store and sync public policy announcements."""
    try:
        core = load_core_settings()
    except SettingsError as error:
        click.echo(str(error), err=True)
        sys.exit(2)
    configure_logging(core.log_level, json_lines=core.log_json)


@main.group()
def dev() -> None:
    """The embedded engine stack for development, tests and the demo."""


@dev.command("up")
@click.option("--timeout", "timeout_seconds", default=90.0, show_default=True, help="Seconds to wait for health.")
def dev_up(timeout_seconds: float) -> None:
    """Start the embedded engines (what is not running yet), create topics, apply migrations."""
    from devstack import stack

    stack.up(load_core_settings(), startup_timeout_seconds=timeout_seconds)
    _print_status(stack.status(load_core_settings()), as_json=False)


@dev.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def dev_status(as_json: bool) -> None:
    """Show each engine's URL and health. Exits 1 when any engine is unhealthy."""
    from devstack import stack

    report = stack.status(load_core_settings())
    _print_status(report, as_json=as_json)
    engines = report["engines"]
    sys.exit(0 if engines and all(engine["healthy"] for engine in engines.values()) else 1)


@dev.command("down")
@click.option("--purge", is_flag=True, help="Also delete the engines' data.")
def dev_down(purge: bool) -> None:
    """Stop the engines `dev up` started (by process id); data is kept unless --purge."""
    from devstack import stack

    stopped = stack.down(load_core_settings(), purge=purge)
    click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@dev.command("roundtrip")
def dev_roundtrip() -> None:
    """Write and read back one record through each engine with the project's clients."""
    from devstack.roundtrip import run_roundtrips

    results = asyncio.run(run_roundtrips(load_settings()))
    for result in results:
        mark = "ok  " if result.ok else "FAIL"
        click.echo(f"  {mark} {result.engine:<9} {result.elapsed_ms:>6} ms  {result.detail}")
    sys.exit(0 if all(result.ok for result in results) else 1)


@dev.command("demo")
def dev_demo() -> None:
    """Run the pipeline on the embedded stack, fed by the local sample sources, and print what happened."""
    from devstack.demo import run_demo

    report = asyncio.run(run_demo(load_settings()))
    click.echo("== collection from the sample sources (JSON, XML, RSS, EUC-KR web board)")
    _print_collection(report.collection)
    click.echo("== hot path: raw topic -> PostgreSQL (pending_validation), Redis, policy.validated")
    hot = report.hot_path
    click.echo(f"  received {hot.received}: stored {hot.stored} (new or changed), unchanged {hot.unchanged}, "
               f"superseded {hot.superseded}, invalid {hot.invalid} (DLQ DP_2001), poison {hot.poison} (DLQ DP_4003); "
               f"events sent {hot.events_sent}")
    sys.exit(0 if all(result.status == "ok" for result in report.collection) else 1)


@main.command("hot-path")
@click.option("--drain", is_flag=True, help="Process what is in the raw topic, then exit.")
def hot_path(drain: bool) -> None:
    """Consume the raw topic: validate, store as pending_validation, cache, emit policy.validated."""
    import signal

    from hot_path.service import run_hot_path

    settings = load_settings()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stop.set)  # finish the batch in hand, commit, exit
        summary = await run_hot_path(settings, stop, drain=drain)
        click.echo("hot path: " + ", ".join(f"{name} {value}" for name, value in summary.__dict__.items()))

    asyncio.run(serve())


@main.group()
def dlq() -> None:
    """The dead-letter queue: what no stage could process, with its DP code and reason."""


@dlq.command("list")
@click.option("--status", "statuses", multiple=True, default=["pending", "exhausted"], show_default=True,
              type=click.Choice(["pending", "resolved", "exhausted"]))
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def dlq_list(statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List dead letters, newest failure first."""
    from stores.dead_letters import DeadLetterStore

    async def fetch() -> tuple[list, dict[str, int]]:
        async with _pool(load_settings()) as pool:
            store = DeadLetterStore(pool)
            return await store.list(statuses=list(statuses), limit=limit), await store.counts()

    letters, counts = asyncio.run(fetch())
    if as_json:
        click.echo(json.dumps({"counts": counts, "letters": [
            {**letter.__dict__, "first_failed_at": letter.first_failed_at.isoformat(),
             "last_failed_at": letter.last_failed_at.isoformat()} for letter in letters]},
            ensure_ascii=False, indent=2))
        return
    click.echo("counts: " + (", ".join(f"{status} {count}" for status, count in sorted(counts.items())) or "none"))
    for letter in letters:
        click.echo(f"{letter.id}  {letter.stage:<7} {letter.error_code}  retries {letter.retry_count}  "
                   f"{letter.status:<9} {letter.record_key or '-'}  {letter.error_message[:100]}")


@dlq.command("retry")
@click.option("--id", "ids", multiple=True, help="Only these letters (default: every pending one with retries left).")
@click.option("--sources-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sources file for letters from collectors (default: SOURCES_FILE).")
def dlq_retry(ids: tuple[str, ...], sources_file: Path | None) -> None:
    """Retry pending letters (at most 3 times each) through the stage that refused them."""
    from collectors.dead_letter_retry import retry_collect_letter
    from hot_path.dead_letter_retry import retry_hot_letter
    from hot_path.service import open_hot_path
    from stores.dead_letters import DeadLetterStore

    settings = load_settings()

    async def retry() -> dict[str, int]:
        outcomes: dict[str, int] = {}
        async with _pool(settings) as pool, open_hot_path(settings, group_id="aegis-dlq-retry") as service:
            letters = DeadLetterStore(pool)
            pending = await letters.retriable(ids=list(ids) or None)
            sources = None
            for letter in pending:
                if letter.stage == "collect":
                    if sources is None:
                        sources = _load_sources_or_exit(settings, sources_file)
                    status = await retry_collect_letter(letter, sources, service.producer,
                                                        settings.kafka_topic_raw_policies, letters)
                elif letter.stage == "hot":
                    status = await retry_hot_letter(letter, service.processor, letters)
                else:
                    status = "skipped"  # cold and sync failures are retried by their own runs
                outcomes[status] = outcomes.get(status, 0) + 1
        return outcomes

    outcomes = asyncio.run(retry())
    click.echo("retried: " + (", ".join(f"{status} {count}" for status, count in sorted(outcomes.items())) or "none"))


@dlq.command("purge")
@click.option("--status", "statuses", multiple=True, default=["resolved"], show_default=True,
              type=click.Choice(["pending", "resolved", "exhausted"]))
@click.option("--older-than-days", default=0.0, show_default=True)
def dlq_purge(statuses: tuple[str, ...], older_than_days: float) -> None:
    """Delete dead letters in these states whose last failure is older than the given age."""
    from stores.dead_letters import DeadLetterStore

    async def purge() -> int:
        async with _pool(load_settings()) as pool:
            return await DeadLetterStore(pool).purge(statuses=list(statuses), older_than_days=older_than_days)

    click.echo(f"purged: {asyncio.run(purge())}")


@contextlib.asynccontextmanager
async def _pool(settings: Any) -> Any:
    from stores import postgres

    pool = await postgres.create_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()


@main.group()
def db() -> None:
    """PostgreSQL schema migrations."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration not yet applied (idempotent)."""
    from schemas.migrations import current_revision, upgrade_to_head

    settings = load_settings()
    upgrade_to_head(settings)
    click.echo(f"database at revision {current_revision(settings)}")


@db.command("current")
def db_current() -> None:
    """Print the revision the database is at, and the newest one available."""
    from schemas.migrations import current_revision, head_revision

    click.echo(f"current: {current_revision(load_settings())}  head: {head_revision()}")


@main.command()
@click.option("--once", is_flag=True, help="Collect now, once (the scheduler runs collections on schedule).")
@click.option("--source", "source_name", help="Only this source (enabled or not).")
@click.option("--sources-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sources file (default: SOURCES_FILE).")
def collect(once: bool, source_name: str | None, sources_file: Path | None) -> None:
    """Fetch the sources, publish new and changed records to the raw topic; print counts per source."""
    from collectors.run import collect_once, open_context

    if not once:
        raise click.UsageError("collect runs with --once; `aegis-pipeline scheduler` runs collections on schedule")
    settings = load_settings()
    definitions = _load_sources_or_exit(settings, sources_file)
    sources = definitions.select(source_name)

    async def run() -> list:
        async with open_context(settings) as context:
            return await collect_once(context, sources)

    results = asyncio.run(run())
    _print_collection(results)
    sys.exit(0 if all(result.status == "ok" for result in results) else 1)


def _print_collection(results: list) -> None:
    click.echo(f"{'source':<22}{'status':<14}{'fetched':>8}{'published':>10}{'unchanged':>10}{'invalid':>8}"
               f"{'failed':>7}")
    for result in results:
        click.echo(f"{result.source:<22}{result.status:<14}{result.fetched:>8}{result.published:>10}"
                   f"{result.unchanged:>10}{result.invalid:>8}{result.failed:>7}"
                   + (f"  {result.error}" if result.error else ""))
    totals = {key: sum(getattr(result, key) for result in results)
              for key in ("fetched", "published", "unchanged", "invalid", "failed")}
    click.echo(f"{'total':<36}{totals['fetched']:>8}{totals['published']:>10}{totals['unchanged']:>10}"
               f"{totals['invalid']:>8}{totals['failed']:>7}")


@main.command()
@click.option("--sources-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sources file (default: SOURCES_FILE).")
def scheduler(sources_file: Path | None) -> None:
    """Run every enabled source on its schedule until SIGTERM or Ctrl-C (safe to run on several replicas)."""
    import signal

    from collectors.run import open_context
    from collectors.scheduler import CollectionScheduler
    from stores import cache

    settings = load_settings()
    sources = _load_sources_or_exit(settings, sources_file).select()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stop.set)
        lock_client = cache.create_client(settings.redis_url)
        try:
            async with open_context(settings) as context:
                await CollectionScheduler(context, sources, lock_client).serve(stop)
        finally:
            await lock_client.aclose()

    asyncio.run(serve())


def _load_sources_or_exit(settings: Settings, sources_file: Path | None) -> SourcesFile:
    """The sources file given on the command line, else SOURCES_FILE; exit 2 naming what is wrong in it."""
    from collectors.definitions import load_sources
    from common.errors import SourceConfigError
    from settings import environment_values

    try:
        return load_sources(sources_file or settings.sources_file, environment_values())
    except SourceConfigError as error:
        click.echo(str(error.args[0]), err=True)
        sys.exit(2)


def _print_status(report: dict, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    if report.get("error"):
        click.echo(report["error"], err=True)
    for name, engine in report["engines"].items():
        state = "healthy" if engine["healthy"] else "UNHEALTHY"
        origin = f"embedded pid {engine['pid']}" if engine["embedded"] and engine["pid"] else (
            "embedded" if engine["embedded"] else "external")
        line = f"  {name:<9} {state:<9} {engine['url']}  ({origin})"
        if engine["error"]:
            line += f"  {engine['error']}"
        click.echo(line)
