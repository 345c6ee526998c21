"""`aegis-pipeline`: subcommands wire settings to the functions of each package, and print results."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import SecretStr

from aegis_pipeline.cli.output import (
    ExitCode,
    PipelineCommandGroup,
    confirm_deletion,
    fail_usage,
    json_option,
    print_json,
)
from aegis_pipeline.common.logging import bind_context, configure_logging, register_secrets
from aegis_pipeline.settings import CoreSettings, Settings, SettingsError, explicit_values, load_core_settings
from aegis_pipeline.settings import load_settings as _load_settings

if TYPE_CHECKING:
    from aegis_pipeline.collectors.definitions import SourcesFile
    from aegis_pipeline.devstack.monitoring import MonitoringSummary
    from aegis_pipeline.devstack.stack import SampleSourcesServer


# Commands that run once and end before Prometheus could scrape them: their metrics go to the Pushgateway.
BATCH_COMMANDS = frozenset({"cold-path", "sync", "consistency", "collect", "dlq", "retention"})


def _push_metrics(configured_url: str, command: str) -> None:
    """Push a batch command's metrics to the Pushgateway the environment names, else the embedded stack's (core
    settings do not read the stack's state file; the full settings do)."""
    from aegis_pipeline.common.metrics import push_batch_metrics

    url = configured_url
    if not url:
        with contextlib.suppress(SettingsError):
            url = _load_settings().prometheus_pushgateway_url
    if url:
        push_batch_metrics(url, command)


@click.group(cls=PipelineCommandGroup)
@click.version_option(package_name="aegis-data-pipeline", prog_name="aegis-pipeline")
@click.option("--debug", is_flag=True, help="Show the traceback of an error (as LOG_LEVEL=DEBUG does).")
@click.pass_context
def main(context: click.Context, debug: bool) -> None:
    """Aegis data pipeline: collect, validate, store and sync public policy announcements.

    Exit codes: 0 done; 1 the work failed or found a problem; 2 bad usage or configuration (nothing done);
    3 an engine could not be reached (run again once it is back). An error prints one line with its DP code and a
    hint; --debug (or LOG_LEVEL=DEBUG) shows its traceback."""
    try:
        core = load_core_settings()
    except SettingsError as error:
        fail_usage(str(error))
    context.meta["aegis.debug"] = debug or core.log_level.upper() == "DEBUG"
    configure_logging(core.log_level, json_lines=core.log_json)
    command = context.invoked_subcommand
    # Every line of this run says which command and which run it came from (to follow one run across lines).
    bind_context(service=core.service_name, command=command, run_id=uuid.uuid4().hex)
    if command in BATCH_COMMANDS:
        context.call_on_close(lambda: _push_metrics(core.prometheus_pushgateway_url, command))


def load_settings(**overrides: Any) -> Settings:
    """The full settings; their secret values are registered so that no log line can show them."""
    settings = _load_settings(**overrides)
    register_secrets(value.get_secret_value() for value in settings.__dict__.values() if isinstance(value, SecretStr))
    return settings


@main.group()
def dev() -> None:
    """The embedded engine stack for development, tests and the demo."""


@dev.command("up")
@click.option("--timeout", "timeout_seconds", default=90.0, show_default=True, help="Seconds to wait for health.")
def dev_up(timeout_seconds: float) -> None:
    """Start the embedded engines (what is not running yet), create topics, apply migrations."""
    from aegis_pipeline.devstack import stack

    stack.up(load_core_settings(), startup_timeout_seconds=timeout_seconds)
    _print_status(stack.status(load_core_settings()), as_json=False)


@dev.command("status")
@json_option
def dev_status(as_json: bool) -> None:
    """Show each engine's URL and health. Exits 1 when any engine is unhealthy."""
    from aegis_pipeline.devstack import stack

    report = stack.status(load_core_settings())
    _print_status(report, as_json=as_json)
    engines = report["engines"]
    sys.exit(ExitCode.OK if engines and all(engine["healthy"] for engine in engines.values()) else ExitCode.FAILED)


@dev.command("down")
@click.option("--purge", is_flag=True, help="Also delete the engines' data (asks first; --yes to skip).")
@click.option("--yes", is_flag=True, help="With --purge: delete without asking.")
def dev_down(purge: bool, yes: bool) -> None:
    """Stop the engines `dev up` started (by process id); data is kept unless --purge."""
    from aegis_pipeline.devstack import stack

    if purge:
        confirm_deletion(f"every engine's data in {load_core_settings().aegis_data_dir}", yes=yes)
    stopped = stack.down(load_core_settings(), purge=purge)
    click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@dev.command("roundtrip")
@json_option
def dev_roundtrip(as_json: bool) -> None:
    """Write and read back one record through each engine with the project's clients."""
    from aegis_pipeline.devstack.roundtrip import run_roundtrips

    results = asyncio.run(run_roundtrips(load_settings()))
    all_ok = all(result.ok for result in results)
    if as_json:
        print_json({"ok": all_ok, "engines": results})
    else:
        for result in results:
            mark = "ok  " if result.ok else "FAIL"
            click.echo(f"  {mark} {result.engine:<9} {result.elapsed_ms:>6} ms  {result.detail}")
    sys.exit(ExitCode.OK if all_ok else ExitCode.FAILED)


@dev.command("demo")
@json_option
def dev_demo(as_json: bool) -> None:
    """Run the pipeline on the embedded stack, fed by the local sample sources, and print what happened."""
    from aegis_pipeline.devstack.demo import DEMO_QUERY, run_demo

    report = asyncio.run(run_demo(load_settings()))
    demo_ok = all(result.completed for result in report.collection) and (
        report.sync is None or report.consistency is None or (report.sync.success and report.consistency.consistent))
    if as_json:
        print_json({"ok": demo_ok, "collection": _collection_document(report.collection), "hot_path": report.hot_path,
                    "cold_path": _cold_path_document(report.cold_path),
                    "cold_path_events_sent": report.cold_path_events_sent,
                    "sync": _sync_document(report.sync) if report.sync else None,
                    "sync_events_sent": report.sync_events_sent,
                    "consistency": _consistency_document(report.consistency) if report.consistency else None,
                    "searches": {target: [hit.as_dict() for hit in hits] for target, hits in report.searches.items()},
                    "monitoring": report.monitoring})
        sys.exit(ExitCode.OK if demo_ok else ExitCode.FAILED)
    click.echo("== collection from the sample sources (JSON, XML, RSS, EUC-KR web board)")
    _print_collection(report.collection)
    click.echo("== hot path: raw topic -> PostgreSQL (pending_validation), Redis, policy.validated")
    hot = report.hot_path
    click.echo(f"  received {hot.received}: stored {hot.stored} (new or changed), unchanged {hot.unchanged}, "
               f"superseded {hot.superseded}, invalid {hot.invalid} (DLQ DP_2001), poison {hot.poison} (DLQ DP_4003); "
               f"events sent {hot.events_sent}")
    click.echo("== cold path: full validation, quality score, duplicates -> active / rejected, data.quality_updated")
    _print_cold_path(report.cold_path)
    click.echo(f"  events sent {report.cold_path_events_sent}")
    if report.sync is not None and report.consistency is not None:
        click.echo("== sync: PostgreSQL -> Milvus (vectors), graph, Elasticsearch (search); data.sync_completed")
        for result in report.sync.results:
            _print_target_result(result)
        click.echo(f"  events sent {report.sync_events_sent}")
        click.echo("== consistency report: each target against PostgreSQL")
        _print_consistency(report.consistency)
        for target, hits in report.searches.items():
            click.echo(f"== aegis-pipeline search {DEMO_QUERY!r} --target {target} --limit 3")
            _print_hits(hits)
    if report.monitoring is not None:
        _print_monitoring(report.monitoring)
    sys.exit(ExitCode.OK if demo_ok else ExitCode.FAILED)


@main.command("hot-path")
@click.option("--drain", is_flag=True, help="Process what is in the raw topic, then exit.")
@json_option
def hot_path(drain: bool, as_json: bool) -> None:
    """Consume the raw topic: validate, store as pending_validation, cache, emit policy.validated."""
    import signal

    from aegis_pipeline.hot_path.service import run_hot_path

    settings = load_settings()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stop.set)  # finish the batch in hand, commit, exit
        summary = await run_hot_path(settings, stop, drain=drain)
        if as_json:
            print_json(summary)
        else:
            click.echo("hot path: " + ", ".join(f"{name} {value}" for name, value in summary.__dict__.items()))

    asyncio.run(serve())


@main.group()
def dlq() -> None:
    """The dead-letter queue: what no stage could process, with its DP code and reason."""


@dlq.command("list")
@click.option("--status", "statuses", multiple=True, default=["pending", "exhausted"], show_default=True,
              type=click.Choice(["pending", "resolved", "exhausted"]))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@json_option
def dlq_list(statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List dead letters, newest failure first."""
    from aegis_pipeline.stores.dead_letters import DeadLetterStore

    async def fetch() -> tuple[list, dict[str, int]]:
        async with _pool(load_settings()) as pool:
            store = DeadLetterStore(pool)
            return await store.list(statuses=list(statuses), limit=limit), await store.counts()

    letters, counts = asyncio.run(fetch())
    if as_json:
        print_json({"counts": counts, "letters": letters})
        return
    click.echo("counts: " + (", ".join(f"{status} {count}" for status, count in sorted(counts.items())) or "none"))
    for letter in letters:
        click.echo(f"{letter.id}  {letter.stage:<7} {letter.error_code}  retries {letter.retry_count}  "
                   f"{letter.status:<9} {letter.record_key or '-'}  {letter.error_message[:100]}")


@dlq.command("retry")
@click.option("--id", "ids", multiple=True, type=click.UUID,
              help="Only these letters (default: every pending one with retries left).")
@click.option("--sources-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sources file for letters from collectors (default: SOURCES_FILE).")
@json_option
def dlq_retry(ids: tuple[uuid.UUID, ...], sources_file: Path | None, as_json: bool) -> None:
    """Retry pending letters (at most 3 times each) through the stage that refused them."""
    from aegis_pipeline.common.errors import SourceConfigError
    from aegis_pipeline.dead_letter_retry import retry_dead_letters

    settings = load_settings()
    try:
        report = asyncio.run(retry_dead_letters(settings, ids=ids, sources_file=sources_file))
    except SourceConfigError as error:  # the sources file, read at the first collector's letter
        fail_usage(str(error.args[0]))
    if as_json:
        print_json({"retried": report.retried, "outcomes": report.outcomes})
    else:
        click.echo(report.summary())


@dlq.command("purge")
@click.option("--status", "statuses", multiple=True, default=["resolved"], show_default=True,
              type=click.Choice(["pending", "resolved", "exhausted"]))
@click.option("--older-than-days", default=0.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--yes", is_flag=True, help="Delete without asking (needed when not on a terminal).")
@json_option
def dlq_purge(statuses: tuple[str, ...], older_than_days: float, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Delete dead letters in these states whose last failure is older than the given age. Asks first on a
    terminal; elsewhere deletes only with --yes. --dry-run counts them and deletes nothing."""
    from aegis_pipeline.stores.dead_letters import DeadLetterStore

    settings = load_settings()
    selection = dict(statuses=list(statuses), older_than_days=older_than_days)
    what = f"the {'/'.join(statuses)} dead letters last failed {older_than_days:g}+ days ago"

    async def count() -> int:
        async with _pool(settings) as pool:
            return await DeadLetterStore(pool).count_purgeable(**selection)

    async def purge() -> int:
        async with _pool(settings) as pool:
            return await DeadLetterStore(pool).purge(**selection)

    if dry_run:
        matching = asyncio.run(count())
        if as_json:
            print_json({"dry_run": True, "statuses": list(statuses), "older_than_days": older_than_days,
                        "would_purge": matching})
        else:
            click.echo(f"would purge: {matching} (dry run: nothing deleted)")
        return
    matching = asyncio.run(count())
    if matching:
        confirm_deletion(f"{matching} of {what}", yes=yes)
    purged = asyncio.run(purge()) if matching else 0
    if as_json:
        print_json({"dry_run": False, "statuses": list(statuses), "older_than_days": older_than_days,
                    "purged": purged})
    else:
        click.echo(f"purged: {purged}")


@contextlib.asynccontextmanager
async def _pool(settings: Any) -> Any:
    from aegis_pipeline.stores import postgres

    pool = await postgres.create_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()


@main.group("cold-path")
def cold_path_group() -> None:
    """The cold path: full validation, quality score, duplicates, status active or rejected."""


@cold_path_group.command("run")
@click.option("--limit", type=click.IntRange(min=1), help="Score at most this many records.")
@click.option("--source", "source_name", help="Only records of this source.")
@click.option("--rescore-all", is_flag=True,
              help="Score every record (not archived) again now, all of it, whatever rules scored it. Without it, "
                   "records scored under older rules are rescored in the background, COLD_PATH_RESCORE_SECONDS "
                   "per run, once nothing waits.")
@json_option
def cold_path_run(limit: int | None, source_name: str | None, rescore_all: bool, as_json: bool) -> None:
    """Run the cold path once; print counts per status, the score distribution, and how many records were
    rescored under the current rules and how many are still on older ones."""
    from aegis_pipeline.cold_path.run import run_cold_path

    settings = load_settings()
    report = asyncio.run(run_cold_path(settings, limit=limit, source=source_name, rescore_all=rescore_all))
    if not as_json:
        _print_cold_path(report)
    events = _send_outbox_events(settings, as_json=as_json)
    if as_json:
        print_json({**_cold_path_document(report), **events})


def _send_outbox_events(settings: Settings, *, as_json: bool) -> dict[str, Any]:
    """Send the events a batch command committed (there may be no hot path running to relay them); return the
    figures for the command's JSON document. Events that could not be sent stay in the outbox (said on stderr):
    the next run or a hot path sends them."""
    from aegis_pipeline.common.errors import PipelineError
    from aegis_pipeline.stores.outbox import send_pending_events

    try:
        sent = asyncio.run(send_pending_events(settings))
    except PipelineError as error:
        click.echo(f"  events left in the outbox for the next relay: {error}", err=True)
        return {"events_sent": 0, "events_left_in_outbox": str(error)}
    if not as_json:
        click.echo(f"  events sent: {sent}")
    return {"events_sent": sent}


def _cold_path_document(report: Any) -> dict[str, Any]:
    return {**dataclasses.asdict(report), "processed": report.processed}


def _print_cold_path(report: Any) -> None:
    counts = report.counts
    click.echo(f"  run {report.run_id}: {report.processed} records in {report.batches} batches, "
               f"{report.elapsed_seconds:.1f} s")
    click.echo(f"  active {counts.get('active', 0)}, rejected {counts.get('rejected', 0)}, duplicate "
               f"{counts.get('duplicate', 0)} (linked to their canonical record), failed {report.failed} (DLQ DP_4002)"
               + (f", requeued {report.requeued}" if report.requeued else ""))
    lifecycle = report.lifecycle
    click.echo(f"  archived: closed {lifecycle.get('closed', 0)}, withdrawn {lifecycle.get('withdrawn', 0)}; "
               f"back from withdrawn {lifecycle.get('back', 0)} (docs/lifecycle.md)")
    if report.rejected_by_code:
        click.echo("  rejected by code: " + ", ".join(f"{code} {n}" for code, n in report.rejected_by_code.items()))
    click.echo("  score distribution: " + ", ".join(f"{bucket} {n}" for bucket, n in report.score_distribution.items()))
    if report.mean_score_by_source:
        click.echo("  mean score by source: " + ", ".join(
            f"{source} {mean:.2f}" for source, mean in report.mean_score_by_source.items()))
    click.echo(f"  rules {report.rules_version}: rescored {report.rescored} (scored under older rules), "
               f"{report.stale_remaining} still on older rules")


@main.group()
def catalogue() -> None:
    """The catalogue topic (KAFKA_TOPIC_POLICY_STATE): the latest state of every active policy, for late consumers."""


@catalogue.command("dump")
@json_option
def catalogue_dump(as_json: bool) -> None:
    """Read the catalogue topic from its beginning to its end, as a consumer that starts from nothing does: the
    active policies, and the offset of each partition to follow on from."""
    from aegis_pipeline.stores.catalogue import read_catalogue

    loaded = asyncio.run(read_catalogue(load_settings()))
    policies = [loaded.policies[policy_id] for policy_id in sorted(loaded.policies)]
    offsets = {str(partition): offset for partition, offset in sorted(loaded.offsets.items())}
    if as_json:
        print_json({"topic": loaded.topic, "offsets": offsets, "policies": policies})
        return
    for state in policies:
        click.echo(f"{state['policy_id']}  v{state['version']:<3} {state['quality_score']:.2f}  "
                   f"{state['source_system']}/{state['external_id']}  {state['title']}")
    click.echo(f"{len(policies)} active policies on {loaded.topic}; follow on from offsets "
               + (", ".join(f"{partition}:{offset}" for partition, offset in offsets.items()) or "none"))


@catalogue.command("publish")
@json_option
def catalogue_publish(as_json: bool) -> None:
    """Write the state of every active policy to the catalogue topic again (once, when the topic is first deployed
    on a pipeline that already has a catalogue; the hot path does it by itself after a broker lost its topics)."""
    from aegis_pipeline.stores.catalogue import announce_catalogue

    settings = load_settings()

    async def announce() -> int:
        async with _pool(settings) as pool:
            return await announce_catalogue(pool, settings)

    announced = asyncio.run(announce())
    if not as_json:
        click.echo(f"  policies announced: {announced}")
    events = _send_outbox_events(settings, as_json=as_json)
    if as_json:
        print_json({"policies_announced": announced, **events})


@main.group("sync")
def sync_group() -> None:
    """Sync PostgreSQL to Milvus (vectors), the graph store (graph) and Elasticsearch (search)."""


_TARGET_CHOICE = click.Choice(["vectors", "graph", "search"])


@sync_group.command("run")
@click.option("--target", "targets", multiple=True, type=_TARGET_CHOICE, help="Only this target (repeatable).")
@json_option
def sync_run(targets: tuple[str, ...], as_json: bool) -> None:
    """Send each target the records changed since its last successful sync. Exits 1 if a target failed."""
    from aegis_pipeline.sync.run import run_sync

    settings = load_settings()
    report = asyncio.run(run_sync(settings, targets=list(targets) or None))
    if not as_json:
        click.echo(f"sync {report.run_id}: {report.policies_synced} policies")
        for result in report.results:
            _print_target_result(result)
    events = _send_outbox_events(settings, as_json=as_json)
    if as_json:
        print_json({**_sync_document(report), **events})
    sys.exit(ExitCode.OK if report.success else ExitCode.FAILED)


def _sync_document(report: Any) -> dict[str, Any]:
    return {"run_id": report.run_id, "policies_synced": report.policies_synced, "success": report.success,
            "started_at": report.started_at, "finished_at": report.finished_at,
            "targets": [result.as_dict() for result in report.results]}


@sync_group.command("rebuild")
@click.option("--target", required=True, type=_TARGET_CHOICE)
@json_option
def sync_rebuild(target: str, as_json: bool) -> None:
    """Write a complete new copy of the target, then swap it in (search never goes empty)."""
    from aegis_pipeline.sync.run import rebuild

    result = asyncio.run(rebuild(load_settings(), target))
    if as_json:
        print_json(result.as_dict())
    else:
        _print_target_result(result)
    sys.exit(ExitCode.OK if result.success else ExitCode.FAILED)


@main.command("search")
@click.argument("query")
@click.option("--target", type=click.Choice(["vectors", "search"]), default="vectors", show_default=True,
              help="vectors: Milvus, by meaning; search: Elasticsearch, by words.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(min=1, max=1000))
@click.option("--open", "open_only", is_flag=True,
              help="Only programmes still open today (no end date, or one today or later).")
@json_option
def search_command(query: str, target: str, limit: int, open_only: bool, as_json: bool) -> None:
    """What users will find for QUERY: the best policies in the live vectors or search alias."""
    from aegis_pipeline.sync.lookup import search

    if not query.strip():
        raise click.BadParameter("the query is empty", param_hint="QUERY")
    hits = asyncio.run(search(load_settings(), query, target=target, limit=limit, open_only=open_only))
    if as_json:
        keys = ("source_system", "external_id", "title", "score", "application_end_date", "days_left")
        print_json([{key: hit.as_dict()[key] for key in keys} for hit in hits])
        return
    if not hits:
        click.echo(f"no {target} results for {query!r}")
    _print_hits(hits)


def _print_hits(hits: list[Any]) -> None:
    for rank, hit in enumerate(hits, start=1):
        if hit.days_left is None:
            period = "no end date"
        else:
            period = f"ends {hit.application_end_date}, " + (f"{hit.days_left} days left" if hit.days_left >= 0
                                                              else "closed")
        click.echo(f"{rank:>3}. {hit.score:8.4f}  {hit.source_system}/{hit.external_id}  {hit.title}  ({period})")


def _print_target_result(result: Any) -> None:
    state = "busy" if result.busy else ("ok  " if result.success else "FAIL")
    line = (f"  {state} {result.target:<8} ({result.store}) upserted {result.upserted}, deleted {result.deleted}, "
            f"encoded {result.encoded}, deferred {result.deferred}, {result.duration_seconds:.1f} s")
    if result.busy:
        line += "  another sync, rebuild or repair of this target is running: the next run catches up"
    click.echo(line + (f"  {result.error}" if result.error else ""))


@main.group()
def consistency() -> None:
    """Compare each sync target with PostgreSQL, and repair what differs."""


@consistency.command("check")
@click.option("--target", "targets", multiple=True, type=_TARGET_CHOICE, help="Only this target (repeatable).")
@json_option
def consistency_check(targets: tuple[str, ...], as_json: bool) -> None:
    """Count missing, stale and orphaned documents per target. Exits 1 when not consistent."""
    from aegis_pipeline.sync.consistency import check_consistency

    report = asyncio.run(check_consistency(load_settings(), targets=list(targets) or None))
    if as_json:
        print_json(_consistency_document(report))
    else:
        _print_consistency(report)
    sys.exit(ExitCode.OK if report.consistent else ExitCode.FAILED)


def _consistency_document(report: Any) -> dict[str, Any]:
    return {**report.summary(), "report_id": report.report_id, "duration_seconds": report.duration_seconds}


@consistency.command("repair")
@json_option
def consistency_repair(as_json: bool) -> None:
    """Check, then fix exactly what was found: rewrite missing and stale documents, delete orphaned ones."""
    from aegis_pipeline.sync.consistency import check_consistency, repair

    async def check_and_repair() -> tuple[Any, Any]:
        settings = load_settings()
        report = await check_consistency(settings)
        return report, await repair(settings, report)

    report, repaired = asyncio.run(check_and_repair())
    if as_json:
        print_json({"check": _consistency_document(report), "repair": repaired.summary()})
        sys.exit(ExitCode.OK if repaired.success else ExitCode.FAILED)
    _print_consistency(report)
    click.echo("repaired: " + ", ".join(f"{name} " + " ".join(f"{kind} {count}" for kind, count in kinds.items())
                                        for name, kinds in repaired.fixed.items()))
    for name, error in repaired.summary()["errors"].items():
        click.echo(f"  FAIL {name}: {error}")
    sys.exit(ExitCode.OK if repaired.success else ExitCode.FAILED)


def _print_consistency(report: Any) -> None:
    click.echo(f"consistency {'ok' if report.consistent else 'DRIFT'} ({report.duration_seconds:.1f} s, "
               f"report {report.report_id})")
    for name, check in report.targets.items():
        counts = check.drift.counts()
        line = f"  {name:<8} missing {counts['missing']}, stale {counts['stale']}, orphaned {counts['orphaned']}"
        click.echo(line + (f"  {check.error_code}: {check.error}" if check.error else ""))


@main.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--yes", is_flag=True, help="Delete without asking (needed when not on a terminal).")
@json_option
def retention(dry_run: bool, yes: bool, as_json: bool) -> None:
    """Delete history past each table's RETENTION_DAYS_* in batches, keeping each policy's latest score and status
    change, open dead letters, the latest report per target and the latest run of each kind."""
    from aegis_pipeline.cold_path.retention import apply_retention

    if not dry_run:  # the policy_retention DAG deletes on schedule; a person running it by hand confirms
        confirm_deletion("the history past each table's RETENTION_DAYS_* (`--dry-run` counts it)", yes=yes)
    report = asyncio.run(apply_retention(load_settings(), dry_run=dry_run))
    if as_json:
        print_json(report.summary())
        return
    click.echo(f"retention {report.run_id}{' (dry run: nothing deleted)' if dry_run else ''}: "
               f"{'would delete' if dry_run else 'deleted'} {report.deleted} rows in {report.duration_seconds:.1f} s "
               f"(batches of {report.batch_size})")
    for table, outcome in report.tables.items():
        if outcome.cutoff is None:
            click.echo(f"  {table:<20} kept forever (retention 0 days)")
            continue
        click.echo(f"  {table:<20} older than {outcome.days} days: {'would delete' if dry_run else 'deleted'} "
                   f"{outcome.deleted}, kept {outcome.kept} that must stay, {outcome.batches} batches")


@main.group()
def db() -> None:
    """PostgreSQL schema migrations."""


@db.command("upgrade")
@json_option
def db_upgrade(as_json: bool) -> None:
    """Apply every migration not yet applied (idempotent)."""
    from aegis_pipeline.schemas.migrations import current_revision, upgrade_to_head
    from aegis_pipeline.stores.postgres import translate_errors

    settings = load_settings()
    with translate_errors("migrate"):  # Alembic lets the driver's errors through
        upgrade_to_head(settings)
        revision = current_revision(settings)
    if as_json:
        print_json({"current": revision})
    else:
        click.echo(f"database at revision {revision}")


@db.command("current")
@json_option
def db_current(as_json: bool) -> None:
    """Print the revision the database is at, and the newest one available."""
    from aegis_pipeline.schemas.migrations import current_revision, head_revision
    from aegis_pipeline.stores.postgres import translate_errors

    with translate_errors("read the schema revision"):  # Alembic lets the driver's errors through
        current = current_revision(load_settings())
    head = head_revision()
    if as_json:
        print_json({"current": current, "head": head})
    else:
        click.echo(f"current: {current}  head: {head}")


@main.command()
@click.option("--once", is_flag=True, help="Collect now, once (the scheduler runs collections on schedule).")
@click.option("--source", "source_name", help="Only this source (enabled or not).")
@click.option("--sources-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sources file (default: SOURCES_FILE; without one, the embedded stack's sample sources).")
@json_option
def collect(once: bool, source_name: str | None, sources_file: Path | None, as_json: bool) -> None:
    """Fetch the sources, publish new and changed records to the raw topic; print counts per source."""
    from aegis_pipeline.collectors.run import collect_once, open_context

    if not once:
        raise click.UsageError("collect runs with --once; `aegis-pipeline scheduler` runs collections on schedule")
    sources_file, environment = _resolve_sources_file(sources_file)
    settings = load_settings()
    definitions = _load_sources_or_exit(settings, sources_file, environment)
    sources = definitions.select(source_name)

    async def run() -> list:
        async with open_context(settings) as context:
            return await collect_once(context, sources)

    results = asyncio.run(run())
    if as_json:
        print_json(_collection_document(results))
    else:
        _print_collection(results)
    sys.exit(ExitCode.OK if all(result.completed for result in results) else ExitCode.FAILED)


def _collection_document(results: list) -> dict[str, Any]:
    return {"completed": all(result.completed for result in results), "sources": results,
            "total": {key: sum(getattr(result, key) for result in results) for key in _COLLECTION_TOTALS}}


_COLLECTION_TOTALS = ("fetched", "published", "unchanged", "invalid", "failed", "requests")


def _print_collection(results: list) -> None:
    """One line a source: its counts, the requests it sent and what it listed (a full listing in progress says
    the page it resumes at), then its error or why it stopped."""
    click.echo(f"{'source':<22}{'status':<14}{'fetched':>8}{'published':>10}{'unchanged':>10}{'invalid':>8}"
               f"{'failed':>7}{'requests':>9}  listed")
    for result in results:
        listed = "+".join(result.listings) or "-"
        if result.full_listing_next_page is not None:
            listed += f" (full listing resumes at page {result.full_listing_next_page + 1})"
        if result.board_next_page is not None:  # a board's crawl stopped midway
            listed += f" (board crawl resumes at list page {result.board_next_page})"
        click.echo(f"{result.source:<22}{result.status:<14}{result.fetched:>8}{result.published:>10}"
                   f"{result.unchanged:>10}{result.invalid:>8}{result.failed:>7}{result.requests:>9}  {listed}"
                   + (f"  {result.error}" if result.error else ""))
    totals = {key: sum(getattr(result, key) for result in results) for key in _COLLECTION_TOTALS}
    click.echo(f"{'total':<36}{totals['fetched']:>8}{totals['published']:>10}{totals['unchanged']:>10}"
               f"{totals['invalid']:>8}{totals['failed']:>7}{totals['requests']:>9}")


@main.command()
@click.option("--sources-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sources file (default: SOURCES_FILE; without one, the embedded stack's sample sources).")
def scheduler(sources_file: Path | None) -> None:
    """Run every enabled source on its schedule until SIGTERM or Ctrl-C (safe to run on several replicas)."""
    import signal

    from aegis_pipeline.collectors.run import open_context
    from aegis_pipeline.collectors.scheduler import CollectionScheduler
    from aegis_pipeline.common.ops_server import OpsServer, ops_hosts
    from aegis_pipeline.stores import cache, kafka

    sources_file, environment = _resolve_sources_file(sources_file)
    settings = load_settings()
    sources = _load_sources_or_exit(settings, sources_file, environment).select()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stop.set)
        lock_client = cache.create_client(settings)
        # The hot path's freshness is measured here, on the broker, not by the hot path: a hot path that is stopped
        # or stuck exports nothing fresh, and its records waiting on the raw topic must still age on the dashboard
        # and fire PipelineLagHigh.
        freshness = kafka.GroupFreshnessProbe(settings, settings.kafka_topic_raw_policies,
                                              settings.kafka_consumer_group)

        async def refresh_hot_path_freshness() -> None:
            # pipeline_lag_seconds{path="hot"}, kafka_consumer_group_lag and their refresh time (docs/metrics.md)
            await freshness.export_metrics(path="hot")

        async def refresh_gauges() -> None:
            # Side by side within the one refresh budget of a scrape: a broker slow to answer leaves the dead-letter
            # counts their time, and either failing still lets the other be set (the first failure is raised, for
            # the ops server to log).
            outcomes = await asyncio.gather(context.dead_letters.refresh_unresolved_gauge(),
                                            refresh_hot_path_freshness(), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

        try:
            async with open_context(settings) as context:
                await freshness.start()
                # /health, /health/ready and /metrics (the collectors' metrics live in this process, and the hot
                # path's freshness: pipeline_lag_seconds{path="hot"})
                ops = OpsServer(settings.metrics_port, lambda: None, hosts=ops_hosts(settings),
                                before_scrape=refresh_gauges, job="scheduler",
                                discovery_dir=settings.prometheus_file_sd_dir)
                await ops.start()
                try:
                    await CollectionScheduler(context, sources, lock_client).serve(stop)
                finally:
                    await ops.stop()
        finally:
            await freshness.stop()
            await lock_client.aclose()

    asyncio.run(serve())


NO_SOURCES_FILE = ("no sources file: set SOURCES_FILE (see docs/sources.md) or start the embedded stack with "
                   "make demo KEEP=1 / aegis-pipeline dev up")


def _resolve_sources_file(sources_file: Path | None) -> tuple[Path | None, dict[str, str]]:
    """Which sources file `collect` and `scheduler` read, and the variables it needs beyond the environment.

    The one given on the command line, else SOURCES_FILE (set, or `sources.yaml` where it exists). With neither,
    the embedded stack's sample sources when its sample-sources engine answers: devstack/sample_sources.yaml with
    that server's address and key, said on the first line of output. Else exit 2 with one line saying what to set.
    Called before the full settings are read: without a stack they would fail first, and less to the point.
    """
    core = load_core_settings()
    if sources_file is not None or "sources_file" in explicit_values() or core.sources_file.is_file():
        return sources_file, {}
    from aegis_pipeline.devstack.engines import SAMPLE_SOURCES_FILE

    server = _answering_sample_sources_or_exit(core)
    click.echo(f"no SOURCES_FILE: collecting the embedded stack's sample sources at {server.url} "
               f"({_shown_path(SAMPLE_SOURCES_FILE)})")
    return SAMPLE_SOURCES_FILE, server.environment


def _answering_sample_sources_or_exit(core: CoreSettings) -> SampleSourcesServer:
    if not core.stack_state_path.is_file():  # no stack: say so at once, without loading the stack's code
        fail_usage(NO_SOURCES_FILE)
    from aegis_pipeline.devstack import stack
    from aegis_pipeline.devstack.health import sample_sources_problem

    server = stack.sample_sources(core)
    if server is None:
        fail_usage(f"{NO_SOURCES_FILE} (the embedded stack in {core.aegis_data_dir} has no sample sources yet: "
                   "aegis-pipeline dev up starts them)")
    problem = sample_sources_problem(server.url)
    if problem is not None:
        fail_usage(f"{NO_SOURCES_FILE} (the embedded stack's sample sources at {server.url} do not answer: "
                   f"{problem})")
    return server


def _shown_path(path: Path) -> str:
    """`path` relative to the working directory when it lies below it (as a user would type it), else whole."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _load_sources_or_exit(settings: Settings, sources_file: Path | None,
                          environment: dict[str, str] | None = None) -> SourcesFile:
    """The sources file given on the command line, else SOURCES_FILE, its `${VAR}`s from the process's environment
    and `environment` (which wins); exit 2 naming what is wrong in it."""
    from aegis_pipeline.collectors.definitions import load_configured_sources
    from aegis_pipeline.common.errors import SourceConfigError

    try:
        with _environment_variables(environment or {}):  # read once, here: sources keep their values
            return load_configured_sources(settings, sources_file)
    except SourceConfigError as error:
        fail_usage(str(error.args[0]))


@contextlib.contextmanager
def _environment_variables(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ while the block runs; what was there before is put back."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _print_monitoring(summary: MonitoringSummary) -> None:
    click.echo(f"== monitoring: Prometheus {summary.prometheus_url}, Alertmanager {summary.alertmanager_url}")
    for target, health in summary.targets.items():
        click.echo(f"  scraped {target}: {health}")
    by_state: dict[str, list[str]] = {}
    for rule, state in summary.rules.items():
        by_state.setdefault(state, []).append(rule)
    click.echo(f"  {len(summary.rules)} alert rules: " + "; ".join(
        f"{state} {len(rules)}" + (f" ({', '.join(rules)})" if state != "inactive" else "")
        for state, rules in sorted(by_state.items())))
    if not summary.alerts:
        click.echo("  Alertmanager holds no alert")
    for alert in summary.alerts:
        click.echo(f"  ALERT {alert.name} [{alert.state}] since {alert.starts_at}: {alert.summary}")


def _print_status(report: dict, *, as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    if report.get("error"):
        click.echo(report["error"], err=True)
    width = max((len(name) for name in report["engines"]), default=0)
    for name, engine in report["engines"].items():
        state = "healthy" if engine["healthy"] else "UNHEALTHY"
        origin = f"embedded pid {engine['pid']}" if engine["embedded"] and engine["pid"] else (
            "embedded" if engine["embedded"] else "external")
        line = f"  {name:<{width}} {state:<9} {engine['url']}  ({origin})"
        if engine["error"]:
            line += f"  {engine['error']}"
        click.echo(line)
