"""The alert rules and the Grafana dashboard: valid for Prometheus (promtool), each alert unit-tested, the
design's alerts and panels present, and every metric they name exported by the code (common/metrics.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import aegis_pipeline.common.metrics  # noqa: F401  (registers every metric of the pipeline)

ROOT = Path(__file__).parents[2]
CHART_FILES = ROOT / "helm" / "aegis-data-pipeline" / "files"
ALERTS = CHART_FILES / "alerts.yaml"
ALERT_TESTS = Path(__file__).parent / "prometheus" / "alerts_test.yaml"
DASHBOARDS = sorted((CHART_FILES / "dashboards").glob("*.json"))

DESIGN_ALERTS = {"DataCollectionFailed", "PipelineLagHigh", "DataQualityLow"}  # §9.2
OPERATIONS_ALERTS = {"HotPathLatencyHigh", "KafkaConsumerLagHigh", "DeadLettersGrowing", "DeadLettersExhausted",
                     "ConsistencyDriftHigh", "SyncFailed"}
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
    result = subprocess.run([promtool(), "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_design_alerts_and_the_operations_alerts_exist_and_each_is_unit_tested() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert set(names) == DESIGN_ALERTS | OPERATIONS_ALERTS
    assert len(names) == len(set(names))
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    firing = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert firing == set(names)
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


@pytest.mark.parametrize(("where", "expr"), _every_expression(), ids=lambda value: value[:60])
def test_rules_and_dashboards_name_only_exported_metrics(where: str, expr: str) -> None:
    named = metric_names_in(expr)
    assert named, f"{where}: no metric found in {expr!r}"
    unknown = named - exported_metric_names()
    assert not unknown, f"{where} names metrics the code does not export: {unknown}"


def test_the_metric_name_check_catches_an_unknown_metric() -> None:
    expr = ('sum by (source, status) (rate(data_collection_total{status=~"failed|x"}[5m])) '
            '/ ignoring(status) group_left pipeline_lag_second offset 1h > bool 0.5')
    assert metric_names_in(expr) == {"data_collection_total", "pipeline_lag_second"}
    assert "pipeline_lag_second" not in exported_metric_names()
    assert {"pipeline_processing_latency_seconds_bucket", "db_sync_total", "dead_letters_unresolved",
            "kafka_consumer_lag"} <= exported_metric_names()
