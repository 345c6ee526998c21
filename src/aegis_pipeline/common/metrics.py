"""Every Prometheus metric the pipeline exports, in one place (names and labels from the design, §6.4), and how
batch work pushes them (`push_batch_metrics`). docs/metrics.md lists them all: who exports each, its unit, how to
aggregate and rate it.

Dashboards and alert rules may only name metrics defined here. Label values are bounded sets (source names from
the sources file, a status word, a target name): never ids, URLs or free text.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from aegis_pipeline.common.logging import get_logger

# Durations of batch work (a source's collection run, a sync or cold-path run): seconds to an hour. A run takes
# minutes; buckets that stopped at 10 s put every run in +Inf, and no quantile could be read from them. The
# design's buckets (1, 5, 10, 30, 60, 120 and 1, 5, 10, 30, 60) are all kept, so its queries read the same.
BATCH_DURATION_BUCKETS = (1.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
# The hot path's sub-second buckets (its budget is one second a record: HotPathLatencyHigh), then the batch ones:
# one histogram serves both paths, and the cold path's records wait up to its hourly run.
PROCESSING_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, *BATCH_DURATION_BUCKETS[2:])

data_collection_total = Counter(
    "data_collection_total",
    "Records and source runs seen by the collectors, by outcome "
    "(published, unchanged, invalid: records; failed, circuit_open: source runs)",
    ["source", "status"],
)
data_collection_latency_seconds = Histogram(
    "data_collection_latency_seconds",
    "Duration of one collection run of one source",
    ["source"],
    buckets=BATCH_DURATION_BUCKETS,
)
collector_egress_refused_total = Counter(
    "collector_egress_refused_total",
    "Source runs stopped because the collector refused a URL by the egress policy (collectors.egress), by reason: "
    "origin (not the source's own host nor an allowed one), scheme, address (a private, loopback, link-local or "
    "reserved address the source's own host is not in), metadata (a cloud metadata endpoint), redirects (too many)",
    ["source", "reason"],
)
collector_deadline_exceeded_total = Counter(
    "collector_deadline_exceeded_total",
    "Deadlines the collectors hit, by scope: request (one request past request_deadline_seconds, retried as a "
    "timeout), run (a source run stopped at run_deadline_seconds, keeping what it had published)",
    ["source", "scope"],
)

# Pipeline (hot and cold paths)
pipeline_processing_total = Counter(
    "pipeline_processing_total",
    "Records processed, by path (hot, cold) and outcome",
    ["path", "status"],
)
pipeline_processing_latency_seconds = Histogram(
    "pipeline_processing_latency_seconds",
    "From collection to the event announcing the record (hot: policy.validated sent; cold: from the record's last "
    "change to its score being committed)",
    ["path"],
    buckets=PROCESSING_LATENCY_BUCKETS,
)
pipeline_run_duration_seconds = Histogram(
    "pipeline_run_duration_seconds",
    "Duration of one whole run of a batch path (cold: from the run's start to its end, over all its workers)",
    ["path"],
    buckets=BATCH_DURATION_BUCKETS,
)
pipeline_lag_seconds = Gauge(
    "pipeline_lag_seconds",
    "How long the records a path has not finished yet have waited. hot: now minus the broker timestamp of the "
    "oldest record on the raw topic the hot path's consumer group has not committed, 0 when it is caught up; read "
    "from the broker by the scheduler on each scrape (a stopped hot path exports nothing, its backlog still ages). "
    "Never negative: a broker timestamp ahead of this clock counts as 0",
    ["path"],
)
pipeline_lag_last_refresh_timestamp_seconds = Gauge(
    "pipeline_lag_last_refresh_timestamp_seconds",
    "When pipeline_lag_seconds of a path (and, for hot, kafka_consumer_group_lag) was last read from the broker, "
    "Unix time: a scrape whose read failed keeps the last values, and this tells how old they are",
    ["path"],
)
kafka_consumer_lag = Gauge(
    "kafka_consumer_lag",
    "Messages not yet consumed, per partition of the consumed topic, by the hot-path replica it is assigned to "
    "(the partition's end offset minus the consumer's position, never negative), refreshed apart from its batches "
    "(drives the hot path autoscaler)",
    ["topic", "partition"],
)
kafka_consumer_lag_last_refresh_timestamp_seconds = Gauge(
    "kafka_consumer_lag_last_refresh_timestamp_seconds",
    "When this hot-path replica last refreshed its kafka_consumer_lag of the topic, Unix time: a replica whose "
    "refresh stalls or fails keeps exporting its last lag, and this tells how old it is",
    ["topic"],
)
kafka_consumer_group_lag = Gauge(
    "kafka_consumer_group_lag",
    "Messages the hot path's consumer group has not committed, per partition of the raw topic: the end offset "
    "minus the group's committed offset (the partition's beginning when it never committed), never negative. Read "
    "from the broker by the scheduler on each scrape, so it grows while the hot path is stopped or stuck",
    ["topic", "partition"],
)
policy_cache_writes_total = Counter(
    "policy_cache_writes_total",
    "Policies written to the Redis cache, by outcome (ok, error: Redis unavailable, the hot path went on; "
    "refilled: cached after Redis came back)",
    ["status"],
)
dead_letters_total = Counter(
    "dead_letters_total",
    "Records sent to the dead-letter queue, by stage and DP error code",
    ["stage", "error_code"],
)
outbox_events_sent_total = Counter(
    "outbox_events_sent_total",
    "Events relayed from the outbox to Kafka, by event type",
    ["event_type"],
)
broker_data_loss_recoveries_total = Counter(
    "broker_data_loss_recoveries_total",
    "Times the hot path found the broker had lost its data (its sentinel topic gone) and announced again",
)
events_reannounced_total = Counter(
    "events_reannounced_total",
    "Events written to the outbox again after the broker lost its data, by event type",
    ["event_type"],
)

# Quality (cold path)
data_quality_score = Gauge(
    "data_quality_score",
    "Mean quality score (0..1) of the records a cold-path run scored, per source",
    ["source"],
)
cold_path_stale_score_records = Gauge(
    "cold_path_stale_score_records",
    "Scored records (active or rejected) whose score and status were decided under older scoring rules than the "
    "current ones (cold_path/scoring_rules.py), per source; the cold path rescores them in the background, oldest "
    "rules first, and every run sets this at its end (0 when a source is all on the current rules)",
    ["source"],
)

# Sync of PostgreSQL to the target stores (vectors, graph, search)
db_sync_total = Counter(
    "db_sync_total",
    "Sync runs per target store, by outcome (success, failure)",
    ["target_db", "status"],
)
db_sync_latency_seconds = Histogram(
    "db_sync_latency_seconds",
    "Duration of one sync run of one target store",
    ["target_db"],
    buckets=BATCH_DURATION_BUCKETS,
)
db_sync_last_run_failed = Gauge(
    "db_sync_last_run_failed",
    "1 when the last sync run (or rebuild) of the target failed, 0 when it succeeded; a run that found the target "
    "busy (left to a later run) changes nothing. db_sync_total adds up over runs, so this says how the last ended",
    ["target_db"],
)
consistency_drift_documents = Gauge(
    "consistency_drift_documents",
    "Documents that differ from PostgreSQL at the last consistency check, per target and kind "
    "(missing, stale, orphaned)",
    ["target_db", "kind"],
)

# Lifecycle (issue 25, docs/lifecycle.md)
policies_archived_total = Counter(
    "policies_archived_total",
    "Programmes the cold path took out of the catalogue, per reason (closed: its application period ended; "
    "withdrawn: a complete listing of its source no longer had it)",
    ["reason"],
)

# Operations (issue 7)
dead_letters_unresolved = Gauge(
    "dead_letters_unresolved",
    "Dead letters not resolved yet, per stage and status (pending: retries left; exhausted: waits for a person). "
    "Read from the dead_letters table on each scrape, so every process serving /metrics reports the same "
    "value: aggregate with max, not sum",
    ["stage", "status"],
)

# Retention (issue 25): the daily deletion of history past each table's RETENTION_DAYS_* (cold_path/retention.py),
# pushed as job aegis-retention whether the CLI or the policy_retention DAG ran it.
retention_rows_deleted_total = Counter(
    "retention_rows_deleted_total",
    "Rows the retention job deleted, per table (a dry run deletes none and counts none)",
    ["table"],
)
retention_old_rows_kept = Gauge(
    "retention_old_rows_kept",
    "Rows past their table's retention that the last retention run kept because they must stay (a policy's "
    "latest score or status change, an open dead letter, the latest report per target, the latest run of a kind)",
    ["table"],
)
retention_last_success_timestamp_seconds = Gauge(
    "retention_last_success_timestamp_seconds",
    "When the last retention run that deleted (not a dry run) finished, Unix time",
)


# Pushgateway: batch work (the CLI's batch commands, the Airflow tasks, the demo) ends before Prometheus could
# scrape it, so it pushes its metrics as it ends. docs/metrics.md ("Pushed batch metrics") says why they are added
# up rather than replaced, and how to graph and rate them.

PUSH_TIMEOUT_SECONDS = 10.0
# What the gateway adds to every group itself: its own gauges, and the grouping labels of each series.
_GATEWAY_FIELDS = frozenset({"labels", "last_push_successful", "push_time_seconds", "push_failure_time_seconds"})
_GROUPING_LABELS = frozenset({"job", "instance"})

_LabelSet = frozenset[tuple[str, str]]

# Gauges of long-running processes, true only while the process refreshes them (the consumer lag of the partitions
# a hot path holds, the broker's view of the group read by the scheduler, the dead-letter counts read from the
# table on each scrape). A batch process that ran a hot path in-process (the demo) has them too: pushed, the
# gateway would serve them unchanged forever, beside the live ones (a stale lag for the autoscaler, an exhausted
# letter long resolved). They are never pushed.
SCRAPED_ONLY = frozenset({
    "kafka_consumer_lag", "kafka_consumer_lag_last_refresh_timestamp_seconds", "kafka_consumer_group_lag",
    "pipeline_lag_seconds", "pipeline_lag_last_refresh_timestamp_seconds", "dead_letters_unresolved",
})


@dataclass
class _HistogramSeries:
    buckets: dict[float, float]  # upper bound (le) to cumulative count
    count: float
    sum: float


@dataclass
class PushedGroup:
    """What a Pushgateway holds for one group, by series (labels without the grouping ones): counters by sample
    name (`x_total`), histograms and gauges by family name."""

    counters: dict[str, dict[_LabelSet, float]] = field(default_factory=dict)
    histograms: dict[str, dict[_LabelSet, _HistogramSeries]] = field(default_factory=dict)
    gauges: dict[str, dict[_LabelSet, float]] = field(default_factory=dict)

    @classmethod
    def from_api(cls, answer: dict[str, Any], job: str) -> PushedGroup:
        """The group `{job=<job>}` (and no other grouping label) of the gateway's `GET /api/v1/metrics` answer;
        empty when the gateway has none."""
        group = cls()
        found = next((item for item in answer.get("data", []) if item.get("labels") == {"job": job}), None)
        for name, family in (found or {}).items():
            if name in _GATEWAY_FIELDS or not isinstance(family, dict):
                continue
            kind = family.get("type")
            for series in family.get("metrics", []):
                labels = frozenset((key, value) for key, value in series.get("labels", {}).items()
                                   if key not in _GROUPING_LABELS)
                if kind == "COUNTER":
                    group.counters.setdefault(name, {})[labels] = float(series["value"])
                elif kind == "HISTOGRAM":
                    group.histograms.setdefault(name, {})[labels] = _HistogramSeries(
                        {float(bound): float(count) for bound, count in series.get("buckets", {}).items()},
                        float(series["count"]), float(series["sum"]))
                elif kind == "GAUGE":
                    group.gauges.setdefault(name, {})[labels] = float(series["value"])
        return group


class RunsAddedUp(Collector):
    """This run's metric families as the group should hold them after it: as if one long-running process had done
    every run of the group.

    - counters and histograms: what the group held plus this run's increments; series this run did not touch keep
      their total (a counter that disappeared would read as a reset). A histogram series whose buckets changed
      (new bucket bounds in the code) starts again from this run: its old buckets cannot be added to the new.
    - gauges: this run's value; series this run did not set keep the group's last value (the last sync of a
      target another run did not sync, the last mean score of a source this run did not score). `*_timestamp_
      seconds` gauges ("when X last happened") keep the later of the two: a run where X did not happen exports
      the gauge's 0 and must not take it back.
    - `_created` samples are left out: they would be this run's start, not the total's; and the gauges of
      `SCRAPED_ONLY`.
    """

    def __init__(self, families: Iterable[Metric], before: PushedGroup) -> None:
        self._families = list(families)  # collected once: the values of this run when it ends
        self._before = before

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            if family.name in SCRAPED_ONLY:
                continue
            if family.type == "counter":
                yield self._counter(family)
            elif family.type == "histogram":
                yield self._histogram(family)
            elif family.type == "gauge":
                yield self._gauge(family)
            else:
                kept = Metric(family.name, family.documentation, family.type, family.unit)
                kept.samples = [sample for sample in family.samples if not sample.name.endswith("_created")]
                yield kept

    def _counter(self, family: Metric) -> Metric:
        total = family.name + "_total"
        before = dict(self._before.counters.get(total, {}))
        merged = Metric(family.name, family.documentation, "counter", family.unit)
        for sample in family.samples:
            if sample.name == total:
                merged.add_sample(total, sample.labels,
                                  before.pop(frozenset(sample.labels.items()), 0.0) + sample.value)
        for labels, value in sorted(before.items()):
            merged.add_sample(total, dict(labels), value)
        return merged

    def _histogram(self, family: Metric) -> Metric:
        now: dict[_LabelSet, _HistogramSeries] = {}
        for sample in family.samples:
            labels = frozenset((key, value) for key, value in sample.labels.items() if key != "le")
            series = now.setdefault(labels, _HistogramSeries({}, 0.0, 0.0))
            if sample.name == family.name + "_bucket":
                series.buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == family.name + "_count":
                series.count = sample.value
            elif sample.name == family.name + "_sum":
                series.sum = sample.value
        before = dict(self._before.histograms.get(family.name, {}))
        for labels, series in now.items():
            previous = before.pop(labels, None)
            # Other bucket bounds than this run's: the code's buckets changed, the series starts again here.
            if previous is not None and previous.buckets.keys() == series.buckets.keys():
                now[labels] = _HistogramSeries({bound: count + previous.buckets[bound]
                                                for bound, count in series.buckets.items()},
                                               series.count + previous.count, series.sum + previous.sum)
        merged = Metric(family.name, family.documentation, "histogram", family.unit)
        for labels, series in [*now.items(), *sorted(before.items(), key=lambda item: sorted(item[0]))]:
            for bound, count in sorted(series.buckets.items()):
                merged.add_sample(family.name + "_bucket", {**dict(labels), "le": floatToGoString(bound)}, count)
            merged.add_sample(family.name + "_count", dict(labels), series.count)
            merged.add_sample(family.name + "_sum", dict(labels), series.sum)
        return merged

    def _gauge(self, family: Metric) -> Metric:
        before = dict(self._before.gauges.get(family.name, {}))
        latest = family.name.endswith("_timestamp_seconds")
        merged = Metric(family.name, family.documentation, "gauge", family.unit)
        for sample in family.samples:
            previous = before.pop(frozenset(sample.labels.items()), None)
            value = max(sample.value, previous) if latest and previous is not None else sample.value
            merged.add_sample(sample.name, sample.labels, value)
        for labels, value in sorted(before.items()):
            merged.add_sample(family.name, dict(labels), value)
        return merged


def read_pushed_group(gateway_url: str, job: str) -> PushedGroup:
    """What the gateway holds now for group `job` (its JSON API, Pushgateway 1.0 or later). Raises what the
    request raised."""
    base = gateway_url if "://" in gateway_url else f"http://{gateway_url}"  # as push_to_gateway reads it
    with urllib.request.urlopen(urllib.parse.urljoin(base.rstrip("/") + "/", "api/v1/metrics"),
                                timeout=PUSH_TIMEOUT_SECONDS) as answer:
        return PushedGroup.from_api(json.load(answer), job)


def push_batch_metrics(gateway_url: str, command: str, *, registry: CollectorRegistry | None = None) -> None:
    """Add this process's metrics (`registry`, default the pipeline's) to group `job=aegis-<command>` of a
    Prometheus Pushgateway, for batch work that ends before Prometheus could scrape it.

    `command` is the CLI command of the work (`cold-path`, `sync`, `consistency`, ...), whether the CLI or an
    Airflow task ran it: one group per kind of work, whoever started it, so its counters add up over every run
    of that work (`RunsAddedUp`): the group's counts are read from the gateway, this run's are added, and the sum
    replaces the group. Two runs of 5 records read 10, and rate()/increase() work on the group as on a scraped
    process; a gateway that lost its groups (restarted without its persistence file) is a counter reset, which
    rate() expects.

    A failed read of the group is logged and this run's counts are pushed alone (a reset, not a loss). A failed
    push is logged, never raised: the run's own outcome stands, a missed push only leaves a gap until the next run.
    Two runs of one kind that end at the same moment may read the same totals, and the later push wins (the other
    run's increments are lost, seen as a reset): batch runs of one kind are serialised (locks, Airflow's
    max_active_runs), so this is left as is (docs/metrics.md)."""
    job = f"aegis-{command}"
    log = get_logger(__name__)
    families = list((registry or prometheus_client.REGISTRY).collect())
    try:
        before = read_pushed_group(gateway_url, job)
    except Exception as error:  # unreadable: push this run alone, Prometheus sees a counter reset
        log.warning("metrics_push_base_unreadable", job=job, reason=f"{type(error).__name__}: {error}")
        before = PushedGroup()
    pushed = CollectorRegistry(auto_describe=False)
    pushed.register(RunsAddedUp(families, before))
    try:
        prometheus_client.push_to_gateway(gateway_url, job=job, registry=pushed, timeout=PUSH_TIMEOUT_SECONDS)
    except Exception as error:  # whatever broke (refused, timed out, an answer that is not HTTP): same outcome
        log.warning("metrics_push_failed", job=job, reason=f"{type(error).__name__}: {error}")
