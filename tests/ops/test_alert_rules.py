"""The alert rules and the Grafana dashboard: valid for Prometheus (promtool), each alert unit-tested, the
design's alerts and panels present, every metric they name exported by the code (common/metrics.py) or by
Prometheus and the Pushgateway themselves, every alert linked to its section of docs/runbooks.md, and every
component an alert reads covered by a staleness alert and an absence alert (a silent component fires nothing else).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import aegis_pipeline.common.metrics  # noqa: F401  (registers every metric of the pipeline)

ROOT = Path(__file__).parents[2]
CHART_FILES = ROOT / "helm" / "aegis-data-pipeline" / "files"
ALERTS = CHART_FILES / "alerts.yaml"
# The alerts of minutes (evaluated every minute), and those that wait hours or days (every 5 minutes: fast enough).
ALERT_TESTS = [Path(__file__).parent / "prometheus" / name for name in ("alerts_test.yaml", "alerts_long_test.yaml")]
RUNBOOKS = ROOT / "docs" / "runbooks.md"
DAGS = ROOT / "dags"
DASHBOARDS = sorted((CHART_FILES / "dashboards").glob("*.json"))

DESIGN_ALERTS = {"DataCollectionFailed", "PipelineLagHigh", "DataQualityLow"}  # §9.2
OPERATIONS_ALERTS = {"HotPathLatencyHigh", "KafkaConsumerLagHigh", "DeadLettersGrowing", "DeadLettersExhausted",
                     "ConsistencyDriftHigh", "SyncFailed"}
STALENESS_ALERTS = {"PipelineTargetDown", "HotPathDown", "HotPathAbsent", "SchedulerDown", "SchedulerAbsent",
                    "PushgatewayDown", "ColdPathStale", "ColdPathAbsent", "SyncStale", "SyncAbsent",
                    "ConsistencyCheckStale", "ConsistencyCheckAbsent", "DeadLetterRetryStale", "DeadLetterRetryAbsent",
                    "RetentionStale", "RetentionAbsent"}
DESIGN_PANELS = {"Data Collection Rate", "Pipeline Processing Latency (p50, p95, p99)", "Data Quality Score",
                 "DB Sync Success Rate"}  # §9.1
OPERATIONS_PANELS = {"Hot Path Latency (p50, p95, p99)", "Kafka Consumer Lag", "Dead-Letter Queue Size",
                     "Sync Results", "Consistency Drift"}

_SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                    "summary": ("", "_count", "_sum", "_created"), "gauge": ("",), "info": ("_info",),
                    "stateset": ("",), "gaugehistogram": ("_bucket", "_gcount", "_gsum"), "unknown": ("",)}


def exported_metric_names() -> set[str]:
    """Every series name the pipeline's registry can expose, from the metric families themselves (a labelled
    metric that was never touched has no samples yet, so names are derived from family name and type)."""
    return {family.name + suffix for family in REGISTRY.collect() for suffix in _SAMPLE_SUFFIXES[family.type]}


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or",
                 "unless", "inf", "nan", "atan2"}


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords, label names
    (inside {...} or by/without/on/ignoring/group_x lists), strings, ranges or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][\w:]*", text):
        following = text[match.end():].lstrip()
        if following.startswith("(") or match.group() in _PROMQL_WORDS:
            continue  # a function, an aggregation or a keyword (durations such as 1h never match: digit first)
        names.add(match.group())
    return names


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def dashboard_panels(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["panels"]


def promtool() -> str:
    found = shutil.which("promtool", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, "promtool is missing: `make install` unpacks it from Debian's prometheus package into .venv/bin"
    return found


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    # One promtool per file, side by side: the long file takes most of the time.
    runs = [subprocess.Popen([promtool(), "test", "rules", str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for path in ALERT_TESTS]
    for path, run in zip(ALERT_TESTS, runs, strict=True):
        output, _ = run.communicate(timeout=120)
        assert run.returncode == 0, f"{path.name}:\n{output}"


def _unit_test_cases() -> list[dict]:
    return [case for path in ALERT_TESTS for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
            for case in test["alert_rule_test"]]


def test_the_design_alerts_and_the_operations_alerts_exist_and_each_is_unit_tested() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert set(names) == DESIGN_ALERTS | OPERATIONS_ALERTS | STALENESS_ALERTS
    assert len(names) == len(set(names))
    firing = {case["alertname"] for case in _unit_test_cases() if case.get("exp_alerts")}
    assert firing == set(names)
    # A staleness alert is also tested silent while its component reports (the healthy neighbour).
    silent = {case["alertname"] for case in _unit_test_cases() if case.get("exp_alerts") == []}
    assert STALENESS_ALERTS <= silent
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_dashboard_has_the_design_panels_and_the_operations_panels() -> None:
    assert [path.name for path in DASHBOARDS] == ["data-pipeline.json"]
    panels = dashboard_panels(DASHBOARDS[0])
    titles = {panel["title"] for panel in panels}
    assert DESIGN_PANELS | OPERATIONS_PANELS <= titles
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"])


def _every_expression() -> list[tuple[str, str]]:
    expressions = [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    for path in DASHBOARDS:
        for panel in dashboard_panels(path):
            expressions += [(f"{path.name}: {panel['title']}", target["expr"]) for target in panel["targets"]]
    return expressions


# Series the pipeline's code does not export but the staleness alerts read: written by Prometheus for every scrape
# target, and by the Pushgateway for every group pushed to it.
EXTERNAL_SERIES = {"up", "push_time_seconds"}


@pytest.mark.parametrize(("where", "expr"), _every_expression(), ids=lambda value: value[:60])
def test_rules_and_dashboards_name_only_exported_metrics(where: str, expr: str) -> None:
    named = metric_names_in(expr)
    assert named, f"{where}: no metric found in {expr!r}"
    unknown = named - exported_metric_names() - EXTERNAL_SERIES
    assert not unknown, f"{where} names metrics the code does not export: {unknown}"


def test_the_metric_name_check_catches_an_unknown_metric() -> None:
    expr = ('sum by (source, status) (rate(data_collection_total{status=~"failed|x"}[5m])) '
            '/ ignoring(status) group_left pipeline_lag_second offset 1h > bool 0.5')
    assert metric_names_in(expr) == {"data_collection_total", "pipeline_lag_second"}
    assert "pipeline_lag_second" not in exported_metric_names()
    assert {"pipeline_processing_latency_seconds_bucket", "db_sync_total", "dead_letters_unresolved",
            "kafka_consumer_lag"} <= exported_metric_names()


# --- runbooks ---------------------------------------------------------------------------------------------------

RUNBOOK_URL = re.compile(r"docs/runbooks\.md#([a-z0-9-]+)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading: lower case, punctuation dropped but `-` and
    `_`, spaces as `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> list[str]:
    return [github_anchor(line.lstrip("#")) for line in RUNBOOKS.read_text(encoding="utf-8").splitlines()
            if re.match(r"#{1,6} ", line)]


def test_every_alert_links_to_its_own_section_of_the_runbooks() -> None:
    anchors = runbook_anchors()
    assert len(anchors) == len(set(anchors)), "two headings of docs/runbooks.md share an anchor"
    for rule in alert_rules():
        url = rule["annotations"].get("runbook_url", "")
        match = RUNBOOK_URL.fullmatch(url)
        assert match, f"{rule['alert']}: runbook_url {url!r} is not docs/runbooks.md#<anchor>"
        assert match.group(1) == rule["alert"].lower(), f"{rule['alert']}: links to another alert's section ({url})"
        assert match.group(1) in anchors, f"{rule['alert']}: docs/runbooks.md has no heading `## {rule['alert']}`"


def test_the_runbooks_links_within_the_file_resolve() -> None:
    anchors = set(runbook_anchors())
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOKS.read_text(encoding="utf-8"))
    assert links
    assert not set(links) - anchors


def test_the_anchor_is_githubs() -> None:
    assert github_anchor(" HotPathDown") == "hotpathdown"
    assert github_anchor("Batch jobs: common checks") == "batch-jobs-common-checks"


# --- silence ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Component:
    """Something that reports the metrics of alerts, and the alerts that fire when it does not."""

    selector: str          # how the staleness rules select its series (a label matcher)
    stopped: str           # fires when it reported, then stopped
    never: str | None      # fires when it never reported
    feeds: frozenset[str]  # the alerts that read what it reports


COMPONENTS = {
    # long-running processes, scraped
    "hot-path": Component('container="hot-path"', "HotPathDown", "HotPathAbsent", frozenset({
        "KafkaConsumerLagHigh", "HotPathLatencyHigh", "DeadLettersGrowing", "DeadLettersExhausted"})),
    "scheduler": Component('container="scheduler"', "SchedulerDown", "SchedulerAbsent", frozenset({
        "DataCollectionFailed", "PipelineLagHigh", "DeadLettersGrowing", "DeadLettersExhausted"})),
    # batch jobs, pushed as aegis-<command>
    "cold-path": Component('job="aegis-cold-path"', "ColdPathStale", "ColdPathAbsent", frozenset({"DataQualityLow"})),
    "sync": Component('job="aegis-sync"', "SyncStale", "SyncAbsent", frozenset({"SyncFailed"})),
    "consistency": Component('job="aegis-consistency"', "ConsistencyCheckStale", "ConsistencyCheckAbsent",
                             frozenset({"ConsistencyDriftHigh"})),
    "dlq": Component('job="aegis-dlq"', "DeadLetterRetryStale", "DeadLetterRetryAbsent", frozenset()),
    "retention": Component('job="aegis-retention"', "RetentionStale", "RetentionAbsent", frozenset()),
    # Every pushed metric passes through it. Never reported: each batch job's absence alert says so.
    "pushgateway": Component('job=~".*pushgateway.*"', "PushgatewayDown", None, frozenset({
        "DataQualityLow", "SyncFailed", "ConsistencyDriftHigh"})),
}
# One process of several fails its scrapes (any of the scraped components).
PER_TARGET = {"PipelineTargetDown"}
# Jobs the DAGs push that need no alert of their own: `events` relays the outbox, which every hot path relays too
# (stores/outbox.OutboxRelay, beside its consumer): HotPathDown covers it.
UNWATCHED_JOBS = {"events"}


def test_every_alert_reads_a_component_that_has_a_staleness_alert_and_an_absence_alert() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    fed = {alert for component in COMPONENTS.values() for alert in component.feeds}
    unwatched = set(rules) - STALENESS_ALERTS - fed
    assert not unwatched, f"alerts that read no component listed in COMPONENTS: {unwatched}"
    for name, component in COMPONENTS.items():
        for alert in (component.stopped, component.never):
            if alert is not None:
                assert alert in rules, f"{name}: no alert {alert}"
                assert component.selector in rules[alert]["expr"], f"{alert} does not select {name}"
    companions = {alert for component in COMPONENTS.values() for alert in (component.stopped, component.never)}
    assert companions - {None} | PER_TARGET == STALENESS_ALERTS


def test_every_job_a_dag_pushes_has_a_staleness_alert() -> None:
    pushed = {job for path in DAGS.glob("*.py")
              for job in re.findall(r'metrics_job="([\w-]+)"', path.read_text(encoding="utf-8"))}
    assert pushed
    watched = {name for name, component in COMPONENTS.items() if component.selector.startswith('job="aegis-')}
    assert pushed - UNWATCHED_JOBS <= watched


def test_the_staleness_alerts_are_grouped_apart() -> None:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    assert {rule["alert"] for rule in groups[-1]["rules"]} == STALENESS_ALERTS


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(duration: str) -> int:
    return sum(int(amount) * _DURATION_UNITS[unit] for amount, unit in re.findall(r"(\d+)([smhd])", duration))


def test_the_absence_alerts_wait_hours_and_the_staleness_alerts_wait_in_their_expressions() -> None:
    """The alert tests on the embedded stack divide every `for:` by 60 (devstack.faults.shorten_alerting) and run
    no pipeline process for most of their minutes: an absence alert of 6 hours is 6 minutes there, longer than the
    module, and a stopped process pages only after the 10 minutes of its expression's range, which nothing divides.
    """
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for component in COMPONENTS.values():
        if component.never is not None:
            assert _seconds(rules[component.never]["for"]) >= 6 * 3600, component.never
        stopped = rules[component.stopped]["expr"]
        assert "[10m]" in stopped or "time() - " in stopped, component.stopped
