"""The embedded stack's monitoring: Prometheus runs compose's configuration and the chart's alert rules (with
loopback addresses and file-based discovery), finds a pipeline process that announces itself, scrapes the
Pushgateway the batch commands push to, and reaches Alertmanager. The alerts themselves: tests/ops/test_alerts_fire.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from aegis_pipeline.common.metrics import push_batch_metrics
from aegis_pipeline.common.ops_server import OpsServer
from aegis_pipeline.devstack import monitoring
from aegis_pipeline.settings import Settings

PROMTOOL = str(Path(sys.executable).with_name("promtool"))
SERVICES = {"pushgateway:9091": "127.0.0.1:19091", "alertmanager:9093": "127.0.0.1:19093"}


def test_the_config_is_composes_with_loopback_addresses_and_file_discovery(tmp_path: Path) -> None:
    compose = yaml.safe_load(monitoring.PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config_path = monitoring.write_prometheus_files(tmp_path, services=SERVICES)
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))

    assert config["global"] == compose["global"]
    assert [job["job_name"] for job in config["scrape_configs"]] == \
           [job["job_name"] for job in compose["scrape_configs"]]
    pipeline, pushgateway = config["scrape_configs"]
    assert pipeline["file_sd_configs"][0]["files"] == [str(tmp_path / "targets" / "*.json")]
    assert "dns_sd_configs" not in pipeline
    assert pushgateway["static_configs"][0]["targets"] == ["127.0.0.1:19091"]
    assert pushgateway["honor_labels"] is True
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    # The rule file is the chart's, byte for byte.
    assert (tmp_path / "rules" / monitoring.RULES_FILE_NAME).read_text(encoding="utf-8") == \
        monitoring.ALERT_RULES.read_text(encoding="utf-8")
    checked = subprocess.run([PROMTOOL, "check", "config", str(config_path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_address_the_stack_does_not_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="alertmanager:9093"):
        monitoring.write_prometheus_files(tmp_path, services={"pushgateway:9091": "127.0.0.1:1"})


def test_the_shortened_rules_change_only_intervals_and_for_durations(tmp_path: Path) -> None:
    chart = yaml.safe_load(monitoring.ALERT_RULES.read_text(encoding="utf-8"))
    short = yaml.safe_load(monitoring.alert_rules(interval="1s", for_divisor=60))
    for chart_group, short_group in zip(chart["groups"], short["groups"], strict=True):
        assert short_group["interval"] == "1s"
        for chart_rule, short_rule in zip(chart_group["rules"], short_group["rules"], strict=True):
            assert {key: value for key, value in short_rule.items() if key != "for"} == \
                   {key: value for key, value in chart_rule.items() if key != "for"}
    durations = {rule["alert"]: rule["for"] for rule in short["groups"][0]["rules"]}
    assert durations["SyncFailed"] == "5s" and durations["KafkaConsumerLagHigh"] == "15s"
    assert durations["ConsistencyDriftHigh"] == "30s"
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(monitoring.alert_rules(interval="1s", for_divisor=60), encoding="utf-8")
    checked = subprocess.run([PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _targets(settings: Settings) -> list[dict]:
    return httpx.get(f"{settings.prometheus_url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]


@pytest.mark.integration
async def test_prometheus_scrapes_an_announced_process_and_the_pushgateway(stack: Settings) -> None:
    assert stack.prometheus_file_sd_dir is not None
    server = OpsServer(0, lambda: None, hosts=("127.0.0.1",), job="monitoring-test",
                       discovery_dir=stack.prometheus_file_sd_dir)
    await server.start()
    announcement = stack.prometheus_file_sd_dir / f"monitoring-test-{os.getpid()}.json"
    try:
        assert announcement.is_file()
        push_batch_metrics(stack.prometheus_pushgateway_url, "monitoring-test")
        wanted = {f"127.0.0.1:{server.port}", monitoring.embedded_services(
            stack.prometheus_pushgateway_url, stack.alertmanager_url)["pushgateway:9091"]}
        deadline = time.monotonic() + 45  # discovery refreshes every 5 s, the stack scrapes every 15 s
        up: set[str] = set()
        while time.monotonic() < deadline and not wanted <= up:
            up = {target["labels"]["instance"] for target in await asyncio.to_thread(_targets, stack)
                  if target["health"] == "up"}
            await asyncio.sleep(1)
        assert wanted <= up, _targets(stack)
        async with httpx.AsyncClient(timeout=10) as client:
            alertmanagers = (await client.get(f"{stack.prometheus_url}/api/v1/alertmanagers")).json()["data"]
        assert [item["url"] for item in alertmanagers["activeAlertmanagers"]] == \
               [f"{stack.alertmanager_url}/api/v2/alerts"]
    finally:
        await server.stop()
    assert not announcement.exists()  # a stopped process is no longer a target
