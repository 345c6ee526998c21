"""The embedded stack's monitoring, configured from the files compose and the chart use (one source, no copies):
`deploy/prometheus/prometheus.yml`, `deploy/alertmanager/alertmanager.yml` and the chart's
`files/alerts.yaml`. Compose names its services (`pushgateway:9091`); here they are loopback addresses, and the
pipeline's own processes are found through file-based discovery (they announce themselves: common/ops_server.py)
instead of DNS.

Also what an operator, `dev demo` and the alert tests read back: the alerts Alertmanager holds, and a copy of the
rule file with shorter evaluation intervals and `for:` durations, generated for tests that cannot wait 15 minutes.

May import: `settings`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

REPOSITORY = Path(__file__).resolve().parents[3]
PROMETHEUS_CONFIG = REPOSITORY / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPOSITORY / "deploy" / "alertmanager" / "alertmanager.yml"
ALERT_RULES = REPOSITORY / "helm" / "aegis-data-pipeline" / "files" / "alerts.yaml"
RULES_FILE_NAME = "data-pipeline.yaml"
DISCOVERY_REFRESH = "5s"


def _source(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the embedded stack's monitoring runs from a checkout")
    return path.read_text(encoding="utf-8")


def prometheus_config(*, rules_dir: Path, discovery_dir: Path, services: Mapping[str, str],
                      scrape_interval: str | None = None) -> dict[str, Any]:
    """Compose's Prometheus configuration for this machine. `services` maps compose's `host:port` addresses to
    loopback ones; a DNS-discovered job (the pipeline's processes) reads `discovery_dir/*.json` instead."""
    config: dict[str, Any] = yaml.safe_load(_source(PROMETHEUS_CONFIG))
    config["rule_files"] = [str(rules_dir / "*.yaml")]
    if scrape_interval is not None:
        config["global"]["scrape_interval"] = scrape_interval
    for job in config["scrape_configs"]:
        if job.pop("dns_sd_configs", None) is not None:
            job["file_sd_configs"] = [{"files": [str(discovery_dir / "*.json")],
                                       "refresh_interval": DISCOVERY_REFRESH}]
        _replace_targets(job.get("static_configs", []), services)
    for alertmanager in config.get("alerting", {}).get("alertmanagers", []):
        _replace_targets(alertmanager.get("static_configs", []), services)
    return config


def _replace_targets(static_configs: list[dict[str, Any]], services: Mapping[str, str]) -> None:
    for static in static_configs:
        unknown = [target for target in static["targets"] if target not in services]
        if unknown:
            raise ValueError(f"{PROMETHEUS_CONFIG} names {unknown}: the embedded stack runs only {sorted(services)}")
        static["targets"] = [services[target] for target in static["targets"]]


def alertmanager_config() -> str:
    return _source(ALERTMANAGER_CONFIG)


def alert_rules(*, interval: str | None = None, for_divisor: int = 1) -> str:
    """The chart's rule file, or a copy for tests: each group evaluated every `interval`, each `for:` duration
    divided by `for_divisor` (rounded up to whole seconds). Expressions and thresholds are never changed."""
    text = _source(ALERT_RULES)
    if interval is None and for_divisor == 1:
        return text
    rules: dict[str, Any] = yaml.safe_load(text)
    for group in rules["groups"]:
        if interval is not None:
            group["interval"] = interval
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{-(-_seconds(rule['for']) // for_divisor)}s"
    return yaml.safe_dump(rules, allow_unicode=True, sort_keys=False)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(duration: str) -> int:
    if not re.fullmatch(r"(\d+[smhd])+", duration):
        raise ValueError(f"not a Prometheus duration this stack understands: {duration!r}")
    return sum(int(amount) * _DURATION_UNITS[unit] for amount, unit in re.findall(r"(\d+)([smhd])", duration))


def embedded_services(pushgateway_url: str, alertmanager_url: str) -> dict[str, str]:
    """Compose's addresses of the Pushgateway and Alertmanager, mapped to where they run here."""
    return {"pushgateway:9091": _host_port(pushgateway_url), "alertmanager:9093": _host_port(alertmanager_url)}


def _host_port(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


def write_prometheus_files(home: Path, *, services: Mapping[str, str], scrape_interval: str | None = None,
                           rules: str | None = None) -> Path:
    """Write Prometheus's configuration and rule file under `home`; returns the configuration's path."""
    rules_dir, targets_dir = home / "rules", discovery_dir(home)
    rules_dir.mkdir(parents=True, exist_ok=True)
    targets_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / RULES_FILE_NAME).write_text(rules if rules is not None else alert_rules(), encoding="utf-8")
    config_path = home / "prometheus.yml"
    config = prometheus_config(rules_dir=rules_dir, discovery_dir=targets_dir, services=services,
                               scrape_interval=scrape_interval)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config_path


def discovery_dir(home: Path) -> Path:
    return home / "targets"


def reload_prometheus(prometheus_url: str) -> None:
    """Make Prometheus read its configuration and rules again (it runs with --web.enable-lifecycle)."""
    httpx.post(f"{prometheus_url}/-/reload", timeout=10).raise_for_status()


def ping(url: str) -> None:
    """Prometheus, the Pushgateway and Alertmanager all answer `/-/healthy` with 200 when they run."""
    httpx.get(f"{url}/-/healthy", timeout=5).raise_for_status()


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # Alertmanager's: active (firing, notified), suppressed (inhibited or silenced), unprocessed
    labels: Mapping[str, str]
    summary: str
    starts_at: str


def alerts(alertmanager_url: str) -> list[Alert]:
    """The alerts Alertmanager holds now (API v2), firing ones only: a resolved alert leaves this list."""
    response = httpx.get(f"{alertmanager_url}/api/v2/alerts", timeout=10)
    response.raise_for_status()
    return sorted(
        (Alert(name=item["labels"].get("alertname", ""), state=item["status"]["state"], labels=item["labels"],
               summary=item.get("annotations", {}).get("summary", ""), starts_at=item["startsAt"])
         for item in response.json()),
        key=lambda alert: (alert.name, sorted(alert.labels.items())),
    )


@dataclass(frozen=True)
class MonitoringSummary:
    """What an operator looks at after a run: is everything scraped, which rules fire, what reached Alertmanager."""

    prometheus_url: str
    alertmanager_url: str
    targets: Mapping[str, str]  # scrape job and instance -> up / down (with the error)
    rules: Mapping[str, str]    # alert rule -> inactive / pending / firing
    alerts: list[Alert]


def _scrape_targets(prometheus_url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{prometheus_url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]


def _rule_groups(prometheus_url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]


def wait_for_evaluation(prometheus_url: str, *, after: float, timeout_seconds: float = 60) -> None:
    """Wait until Prometheus has scraped every target and evaluated its rules since the Unix time `after`, so a
    summary shows what a run changed. Gives up quietly at the timeout: the summary then says what it saw."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        targets, groups = _scrape_targets(prometheus_url), _rule_groups(prometheus_url)
        scraped = all(_unix(target["lastScrape"]) > after for target in targets)
        evaluated = all(_unix(group["lastEvaluation"]) > after for group in groups)
        if scraped and evaluated:
            return
        time.sleep(1)


def _unix(timestamp: str) -> float:
    # Prometheus writes nanoseconds (2026-12-05T09:07:23.934597147Z); Python parses up to microseconds.
    whole, _, fraction = timestamp.rstrip("Z").partition(".")
    parsed = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    return parsed.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def summarize(prometheus_url: str, alertmanager_url: str) -> MonitoringSummary:
    targets, groups = _scrape_targets(prometheus_url), _rule_groups(prometheus_url)
    return MonitoringSummary(
        prometheus_url=prometheus_url,
        alertmanager_url=alertmanager_url,
        targets={f"{target['labels']['job']} {target['labels']['instance']}":
                 target["health"] + (f" ({target['lastError']})" if target["lastError"] else "")
                 for target in targets},
        rules={rule["name"]: rule["state"]
               for group in groups for rule in group["rules"] if rule["type"] == "alerting"},
        alerts=alerts(alertmanager_url),
    )
