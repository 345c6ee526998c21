"""Every Prometheus metric the pipeline exports, in one place (names and labels from the design, §6.4).

Dashboards and alert rules may only name metrics defined here. Label values are bounded sets (source names from
the sources file, a status word, a target name): never ids, URLs or free text.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
