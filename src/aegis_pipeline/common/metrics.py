"""Every Prometheus metric the pipeline exports, in one place (names and labels from the design, §6.4).

Dashboards and alert rules may only name metrics defined here. Label values are bounded sets (source names from
the sources file, a status word, a target name): never ids, URLs or free text.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

from aegis_pipeline.common.logging import get_logger

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
    buckets=(1, 5, 10, 30, 60, 120),
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
    "From collection to the event announcing the record (hot: policy.validated sent)",
    ["path"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
)
pipeline_lag_seconds = Gauge(
    "pipeline_lag_seconds",
    "How long the records a path has not finished yet have waited. hot: now minus the broker timestamp of the "
    "oldest record on the raw topic the hot path's consumer group has not committed, 0 when it is caught up; read "
    "from the broker by the scheduler on each scrape (a stopped hot path exports nothing, its backlog still ages)",
    ["path"],
)
kafka_consumer_lag = Gauge(
    "kafka_consumer_lag",
    "Messages not yet consumed, per partition of the consumed topic, by the hot-path replica it is assigned to, "
    "refreshed apart from its batches (drives the hot path autoscaler)",
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
    buckets=(1, 5, 10, 30, 60),
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


def push_batch_metrics(gateway_url: str, command: str) -> None:
    """Send this process's metrics to a Prometheus Pushgateway as job `aegis-<command>` (replacing that group's
    last push), for batch work that ends before Prometheus could scrape it.

    `command` is the CLI command of the work (`cold-path`, `sync`, `consistency`, ...), whether the CLI or an
    Airflow task ran it: one group per kind of work, holding its last run whoever started it. The gateway keeps
    each group's last push, and alerts sum over groups, so two groups for one kind of work would count it twice.

    A failed push is logged, never raised: the run's own outcome stands, a missed push only leaves a gap on the
    dashboard until the next run."""
    job = f"aegis-{command}"
    try:
        prometheus_client.push_to_gateway(gateway_url, job=job, registry=prometheus_client.REGISTRY, timeout=10)
    except Exception as error:  # whatever broke (refused, timed out, an answer that is not HTTP): same outcome
        get_logger(__name__).warning("metrics_push_failed", job=job, reason=f"{type(error).__name__}: {error}")
