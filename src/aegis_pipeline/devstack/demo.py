"""The demo: the pipeline's main job on the embedded stack, fed by the local sample sources.

Collects the sample sources (devstack/sample_sources.py) from the embedded stack's sample-sources engine (or, on a
stack without one, from a server of its own on a free port), then runs the pipeline stages the project has so far
against them, returning what each stage did. `make demo` runs it after `dev up`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aegis_pipeline.cold_path.run import ColdPathReport, run_cold_path
from aegis_pipeline.collectors.definitions import load_sources
from aegis_pipeline.collectors.run import SourceResult, collect_once, open_context
from aegis_pipeline.common.metrics import push_batch_metrics
from aegis_pipeline.devstack import monitoring, stack
from aegis_pipeline.devstack.engines import SAMPLE_SOURCES_FILE
from aegis_pipeline.devstack.health import sample_sources_problem
from aegis_pipeline.devstack.monitoring import MonitoringSummary
from aegis_pipeline.devstack.sample_sources import SampleSources
from aegis_pipeline.hot_path.service import HotPathSummary, run_hot_path
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import outbox
from aegis_pipeline.sync.consistency import ConsistencyReport, check_consistency
from aegis_pipeline.sync.lookup import SEARCHABLE_TARGETS, Hit, search
from aegis_pipeline.sync.run import SyncReport, run_sync

# What a user might type (the object particle attached): the demo shows what each searchable target finds.
DEMO_QUERY = "스마트공장을 지원하는 사업"


@dataclass
class DemoReport:
    collection: list[SourceResult]
    hot_path: HotPathSummary
    cold_path: ColdPathReport
    cold_path_events_sent: int
    sync: SyncReport | None = None
    consistency: ConsistencyReport | None = None
    sync_events_sent: int = 0
    searches: dict[str, list[Hit]] = field(default_factory=dict)  # target -> the best hits for DEMO_QUERY
    monitoring: MonitoringSummary | None = None  # None when the stack has no Prometheus and Alertmanager


async def run_demo(settings: Settings) -> DemoReport:
    running = await asyncio.to_thread(_answering_sample_sources, settings)
    with _sample_sources_environment(running) as environment:
        sources = load_sources(SAMPLE_SOURCES_FILE, environment).select()
        async with open_context(settings) as context:
            collection = await collect_once(context, sources)
    # Its own consumer group, so the demo never takes records away from a hot path running beside it.
    hot_path = await run_hot_path(settings, asyncio.Event(), drain=True, serve_ops=False, group_id="aegis-demo")
    cold_path = await run_cold_path(settings)
    events_sent = await outbox.send_pending_events(settings)
    report = DemoReport(collection=collection, hot_path=hot_path, cold_path=cold_path,
                        cold_path_events_sent=events_sent)
    # Sync: active policies to Milvus, the graph and Elasticsearch; then each target checked against PostgreSQL.
    report.sync = await run_sync(settings)
    report.consistency = await check_consistency(settings)
    report.sync_events_sent = await outbox.send_pending_events(settings)
    report.searches = {target: await search(settings, DEMO_QUERY, target=target, limit=3)
                       for target in SEARCHABLE_TARGETS}
    report.monitoring = await asyncio.to_thread(_monitoring_after_the_run, settings)
    return report


def _answering_sample_sources(settings: Settings) -> stack.SampleSourcesServer | None:
    server = stack.sample_sources(settings)
    return server if server is not None and sample_sources_problem(server.url) is None else None


@contextlib.contextmanager
def _sample_sources_environment(running: stack.SampleSourcesServer | None) -> Iterator[dict[str, str]]:
    """SAMPLE_SOURCES_URL and SAMPLE_SERVICE_KEY: of the stack's sample-sources engine when it answers, else of a
    server of the demo's own while the collection runs."""
    if running is not None:
        yield running.environment
        return
    # No Crawl-delay in the demo's robots.txt (nor in the engine's), so the board takes seconds, not one second per
    # page.
    with SampleSources(crawl_delay_seconds=0) as server:
        yield {"SAMPLE_SOURCES_URL": server.base_url, "SAMPLE_SERVICE_KEY": server.service_key}


def _monitoring_after_the_run(settings: Settings) -> MonitoringSummary | None:
    """Push the run's metrics as the batch commands do, let Prometheus scrape them and evaluate its alert rules
    once, then read what an operator would: targets, rule states, and the alerts Alertmanager holds."""
    if not (settings.prometheus_url and settings.alertmanager_url and settings.prometheus_pushgateway_url):
        return None
    pushed_at = time.time()
    push_batch_metrics(settings.prometheus_pushgateway_url, "demo")
    monitoring.wait_for_evaluation(settings.prometheus_url, after=pushed_at)
    return monitoring.summarize(settings.prometheus_url, settings.alertmanager_url)
