"""A chart that validates itself (issue 27): values.schema.json types and bounds every value of values.yaml and knows
no other key, so Helm's own rendering (`helm template`, `helm install`, `helm lint`, and helm/render_manifests.py)
stops at a misspelled key or a wrong value, naming it; the hot path's autoscaler is capped at the raw topic's
partitions; a PodDisruptionBudget only over more than one replica; release notes that say what runs, how to check
it and what is risky. The manifests themselves are validated in test_ops_manifests.py."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from annotated_types import Ge, Gt, Le
from pydantic import SecretStr

from aegis_pipeline.settings import Settings

ROOT = Path(__file__).parents[2]
CHART = ROOT / "helm" / "aegis-data-pipeline"
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
VALUES = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))["version"]
K8S_VALUES = yaml.safe_load((ROOT / "k8s" / "values.yaml").read_text(encoding="utf-8"))
SECRET_VALUES = {"POSTGRES_PASSWORD": "pg-secret", "NEO4J_PASSWORD": "neo-secret",
                 "KAFKA_SASL_PASSWORD": "kafka-secret", "REDIS_PASSWORD": "redis-secret",
                 "MILVUS_TOKEN": "aegis:milvus-secret", "ELASTICSEARCH_API_KEY": "ZXMtc2VjcmV0",
                 "IDENTIFIER_HASH_KEY": "identifier-hash-key-of-32-characters",
                 "DATA_GO_KR_SERVICE_KEY": "dgk", "BIZINFO_API_KEY": "bik"}
# Settings the chart sets itself (from metrics, pushgateway, kafka and tls, or the pod's IP): not in `settings`.
CHART_SETS = {"SOURCES_FILE", "METRICS_PORT", "METRICS_HOST", "PROMETHEUS_PUSHGATEWAY_URL", "KAFKA_TOPIC_PARTITIONS",
              "POSTGRES_SSL_ROOT_CERT", "KAFKA_CA_FILE", "REDIS_CA_FILE", "MILVUS_CA_FILE", "NEO4J_CA_FILE",
              "ELASTICSEARCH_CA_FILE"}
SETTING_FIELDS = {name.upper(): field for name, field in Settings.model_fields.items()}
SECRET_SETTINGS = {name for name, field in SETTING_FIELDS.items() if field.annotation is SecretStr}

_spec = importlib.util.spec_from_file_location("render_manifests", ROOT / "helm" / "render_manifests.py")
assert _spec is not None and _spec.loader is not None
render_manifests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_manifests)


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Values merged as Helm merges -f files and --set: maps key by key, anything else replaced."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merged(result[key], value)
            else:
                result[key] = value
    return result


def with_secrets(**values: Any) -> dict[str, Any]:
    return merged({"secrets": {"values": SECRET_VALUES}}, values)


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for text in render_manifests.render_chart(values).values()
            for doc in yaml.safe_load_all(text) if doc]


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def settings_map(docs: list[dict[str, Any]]) -> dict[str, str]:
    (config,) = [doc for doc in kinds(docs, "ConfigMap") if doc["metadata"]["name"].endswith("-settings")]
    return config["data"]


def hpa_max(docs: list[dict[str, Any]]) -> int:
    (hpa,) = kinds(docs, "HorizontalPodAutoscaler")
    return hpa["spec"]["maxReplicas"]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        assert set(node) == {"$ref"}, f"draft-07 ignores what stands beside $ref: {node}"
        node = SCHEMA["definitions"][node["$ref"].removeprefix("#/definitions/")]
    return node


def object_schemas(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema of an object in the schema, with where it is."""
    if node.get("type") == "object":
        yield path, node
    for key in ("properties", "definitions"):
        for name, child in node.get(key, {}).items():
            yield from object_schemas(child, f"{path}/{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from object_schemas(node[key], f"{path}/{key}")


def value_paths(values: Any, schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(path, value, its schema) for every value of `values`, down to the leaves; fails where the schema has none."""
    schema = resolve(schema)
    yield path, values, schema
    if isinstance(values, dict) and "properties" in schema:
        for key, value in values.items():
            assert key in schema["properties"], f"{path}/{key}: not in values.schema.json"
            yield from value_paths(value, schema["properties"][key], f"{path}/{key}")
    elif isinstance(values, list) and "items" in schema:
        for index, item in enumerate(values):
            yield from value_paths(item, schema["items"], f"{path}/{index}")


# --- the schema ----------------------------------------------------------------------------------------------


def test_the_schema_is_draft_07_and_every_object_is_closed() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    for path, node in object_schemas(SCHEMA):
        closed = node.get("additionalProperties") is False
        a_map = isinstance(node.get("additionalProperties"), dict)  # labels, selectors: keys of the operator's own
        assert closed or (a_map and "properties" not in node), f"{path or '/'}: additionalProperties is not false"
        assert set(node.get("required", [])) <= set(node.get("properties", {})), path


def test_the_schema_covers_every_value_of_values_yaml() -> None:
    leaves = 0
    for path, value, schema in value_paths(VALUES, SCHEMA):
        assert "type" in schema or "enum" in schema, f"{path}: no type"
        if isinstance(value, dict) and "required" in schema:
            # The chart's own structure: every key of values.yaml is required (a `null` that drops one fails).
            assert set(schema.get("required", [])) == set(value), path
        leaves += not isinstance(value, dict | list)
    assert leaves >= 70


def test_the_schema_knows_every_setting_the_chart_does_not_set_itself() -> None:
    """Any real setting may be given in `settings` (typed as settings.py types it); a secret one, one the chart
    sets itself, or a misspelled one may not."""
    expected = set(SETTING_FIELDS) - SECRET_SETTINGS - CHART_SETS
    assert set(SCHEMA["properties"]["settings"]["properties"]) == expected
    secrets = SCHEMA["properties"]["secrets"]["properties"]
    assert set(secrets["values"]["properties"]) == set(VALUES["secrets"]["values"])
    assert set(secrets["optional"]["items"]["enum"]) == set(VALUES["secrets"]["values"])
    chart_set = set(settings_map(render(with_secrets(tls={"caSecret": "ca"}))))
    assert CHART_SETS - chart_set == {"METRICS_HOST"}  # an environment variable of each pod (the pod's IP)


def _bounds(name: str) -> tuple[float | None, float | None, float | None]:
    """(ge, gt, le) of a setting, as settings.py declares them."""
    ge = gt = le = None
    for meta in SETTING_FIELDS[name].metadata:
        ge = meta.ge if isinstance(meta, Ge) else ge
        gt = meta.gt if isinstance(meta, Gt) else gt
        le = meta.le if isinstance(meta, Le) else le
    return ge, gt, le


def test_the_schema_bounds_settings_as_settings_py_does() -> None:
    properties = SCHEMA["properties"]["settings"]["properties"]
    bounded = 0
    for name, schema in properties.items():
        ge, gt, le = _bounds(name)
        assert (schema.get("minimum"), schema.get("exclusiveMinimum"), schema.get("maximum")) == (ge, gt, le), name
        bounded += (ge, gt, le) != (None, None, None)
    assert bounded >= 30
    partitions = SCHEMA["properties"]["kafka"]["properties"]["topicPartitions"]
    assert (partitions["minimum"], partitions["maximum"]) == (_bounds("KAFKA_TOPIC_PARTITIONS")[0],
                                                              _bounds("KAFKA_TOPIC_PARTITIONS")[2])


# --- Helm validates against it -------------------------------------------------------------------------------


def test_the_shipped_values_and_k8s_values_pass() -> None:
    with helm_python.Chart.load(str(CHART)) as chart:
        assert chart.schema == SCHEMA
        chart.validate_schema(chart.values)
        chart.validate_schema(chart.merge_values(K8S_VALUES))
    assert render(K8S_VALUES) and render(with_secrets())
    # every setting written as the environment writes it (its default), all at once
    defaults = {name: str(field.default).lower() if isinstance(field.default, bool) else str(field.default)
                for name, field in SETTING_FIELDS.items() if name in SCHEMA["properties"]["settings"]["properties"]
                and not field.is_required() and field.default is not None
                and not isinstance(field.default, frozenset)}
    assert settings_map(render(with_secrets(settings=defaults))).items() >= defaults.items()


@pytest.mark.parametrize(("values", "message"), [
    # wrong types
    ({"metrics": {"port": "9090"}}, "at '/metrics/port': got string, want integer"),
    ({"hotPath": {"autoscaling": {"enabled": "yes"}}}, "at '/hotPath/autoscaling/enabled': got string, want boolean"),
    ({"image": {"tag": 1.1}}, "at '/image/tag': got number, want string"),
    ({"settings": {"POSTGRES_PORT": "fifty"}}, "/settings/POSTGRES_PORT"),
    ({"networkPolicy": {"enginePorts": "5432"}}, "at '/networkPolicy/enginePorts': got string, want array"),
    # unknown keys: a typo, a setting that does not exist, a secret in the ConfigMap, one the chart sets itself
    ({"hotPath": {"replica": 3}}, "at '/hotPath': additional properties 'replica' not allowed"),
    ({"hotPath": {"autoscaling": {"maxReplica": 3}}}, "additional properties 'maxReplica' not allowed"),
    ({"settings": {"POSTGRES_HOTS": "db"}}, "at '/settings': additional properties 'POSTGRES_HOTS' not allowed"),
    ({"settings": {"POSTGRES_PASSWORD": "pw"}}, "additional properties 'POSTGRES_PASSWORD' not allowed"),
    ({"settings": {"KAFKA_TOPIC_PARTITIONS": "6"}}, "additional properties 'KAFKA_TOPIC_PARTITIONS' not allowed"),
    ({"secrets": {"values": {"POSTGRES_PASWORD": "pw"}}}, "additional properties 'POSTGRES_PASWORD' not allowed"),
    ({"serviceMonitor": {"enabled": False}}, "additional properties 'serviceMonitor' not allowed"),
    # bounds and enums
    ({"hotPath": {"replicas": 0}}, "at '/hotPath/replicas': minimum"),
    ({"metrics": {"port": 70000}}, "at '/metrics/port': maximum"),
    ({"networkPolicy": {"enginePorts": [5432, 0]}}, "at '/networkPolicy/enginePorts/1': minimum"),
    ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
    ({"kafka": {"topicPartitions": 0}}, "at '/kafka/topicPartitions': minimum"),
    ({"settings": {"HOT_PATH_BATCH_SIZE": 20000}}, "at '/settings/HOT_PATH_BATCH_SIZE': maximum"),
    ({"settings": {"QUALITY_SCORE_THRESHOLD": "1.5"}}, "/settings/QUALITY_SCORE_THRESHOLD"),
    ({"settings": {"ENVIRONMENT": "prod"}}, "/settings/ENVIRONMENT"),
    ({"settings": {"ALLOW_INSECURE_CONNECTIONS": "postgres,mongo"}}, "/settings/ALLOW_INSECURE_CONNECTIONS"),
    ({"networkPolicy": {"metricsFrom": []}}, "at '/networkPolicy/metricsFrom': minItems"),
    ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "/metrics/serviceMonitor/interval"),
    ({"hotPath": {"resources": {"requests": {"cpu": "half"}}}}, "/hotPath/resources/requests/cpu"),
    ({"hotPath": {"tolerations": [{"key": "dedicated", "effect": "NoSchedul"}]}}, "/hotPath/tolerations/0/effect"),
])
def test_a_wrong_value_stops_the_rendering_naming_it(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as raised:
        render(with_secrets(**values))
    assert message in str(raised.value)


def test_helm_lint_reports_a_wrong_value() -> None:
    report = helm_python.lint(str(CHART), with_secrets(hotPath={"replica": 3}), strict=True)
    assert "additional properties 'replica' not allowed" in json.dumps(report)


def test_the_k8s_manifests_are_rendered_through_the_same_validation(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    typo = tmp_path / "values.yaml"
    typo.write_text(yaml.safe_dump(merged(K8S_VALUES, {"tls": {"caSecrets": "x"}})), encoding="utf-8")
    monkeypatch.setattr(render_manifests, "K8S_VALUES", typo)
    with pytest.raises(helm_python.HelmValuesError, match="additional properties 'caSecrets' not allowed"):
        render_manifests.plain_manifests()


def test_numbers_and_booleans_in_settings_are_written_as_the_environment_reads_them() -> None:
    """Helm reads numbers of values as floats: a large one must not reach the ConfigMap as 1.6e+07."""
    config = settings_map(render(with_secrets(settings={
        "HOT_PATH_BATCH_MAX_BYTES": 16000000, "MAX_RESPONSE_BYTES": 10000000, "POSTGRES_PORT": 5432,
        "QUALITY_SCORE_THRESHOLD": 0.75, "HOT_PATH_TIMEOUT_SECONDS": 1.0, "LOG_JSON": False})))
    assert {name: config[name] for name in ("HOT_PATH_BATCH_MAX_BYTES", "MAX_RESPONSE_BYTES", "POSTGRES_PORT",
                                            "QUALITY_SCORE_THRESHOLD", "HOT_PATH_TIMEOUT_SECONDS", "LOG_JSON")} == {
        "HOT_PATH_BATCH_MAX_BYTES": "16000000", "MAX_RESPONSE_BYTES": "10000000", "POSTGRES_PORT": "5432",
        "QUALITY_SCORE_THRESHOLD": "0.75", "HOT_PATH_TIMEOUT_SECONDS": "1", "LOG_JSON": "false"}
    hpa = kinds(render(with_secrets(hotPath={"autoscaling": {"consumerLag": {"averageValue": 2000000}}})),
                "HorizontalPodAutoscaler")[0]
    (lag,) = [metric for metric in hpa["spec"]["metrics"] if metric["type"] == "External"]
    assert lag["external"]["target"]["averageValue"] == "2000000"


# --- the hot path: partitions and autoscaler -----------------------------------------------------------------


@pytest.mark.parametrize(("max_replicas", "partitions", "expected"), [(10, 3, 3), (10, 12, 10), (6, 6, 6), (2, 256, 2)])
def test_one_value_gives_the_topics_partitions_and_caps_the_autoscaler(max_replicas: int, partitions: int,
                                                                         expected: int) -> None:
    docs = render(with_secrets(kafka={"topicPartitions": partitions},
                               hotPath={"autoscaling": {"maxReplicas": max_replicas}}))
    assert settings_map(docs)["KAFKA_TOPIC_PARTITIONS"] == str(partitions)
    assert hpa_max(docs) == expected
    # the setting is the one settings.py reads for the partitions of the topics the pipeline creates
    assert Settings.model_fields["kafka_topic_partitions"].annotation is int


@pytest.mark.parametrize("docs", [render(with_secrets()), render(K8S_VALUES)], ids=["chart", "k8s"])
def test_the_shipped_autoscaler_never_outnumbers_the_partitions(docs: list[dict[str, Any]]) -> None:
    assert hpa_max(docs) <= int(settings_map(docs)["KAFKA_TOPIC_PARTITIONS"])
    plain = yaml.safe_load_all((ROOT / "k8s" / "data-pipeline.yaml").read_text(encoding="utf-8"))
    assert [doc["spec"]["maxReplicas"] for doc in plain if doc and doc["kind"] == "HorizontalPodAutoscaler"] == [3]


@pytest.mark.parametrize(("values", "message"), [
    ({"kafka": {"topicPartitions": 3}, "hotPath": {"autoscaling": {"minReplicas": 4}}},
     "hotPath.autoscaling.minReplicas (4) is above kafka.topicPartitions (3)"),
    ({"hotPath": {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}},
     "hotPath.autoscaling.minReplicas (3) is above hotPath.autoscaling.maxReplicas (2)"),
    ({"hotPath": {"podDisruptionBudget": {"minAvailable": 2}}},
     "hotPath.podDisruptionBudget.minAvailable (2) must be below the hot path's 2 replicas "
     "(hotPath.autoscaling.minReplicas)"),
    ({"hotPath": {"replicas": 3, "autoscaling": {"enabled": False}, "podDisruptionBudget": {"minAvailable": 3}}},
     "hotPath.podDisruptionBudget.minAvailable (3) must be below the hot path's 3 replicas (hotPath.replicas)"),
])
def test_hot_path_values_that_cannot_work_stop_the_rendering(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render(with_secrets(**values))


# --- PodDisruptionBudget -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hot_path", "budget"), [
    ({}, True),  # autoscaled, minReplicas 2
    ({"autoscaling": {"minReplicas": 1}}, False),
    ({"autoscaling": {"minReplicas": 1, "maxReplicas": 3}, "replicas": 3}, False),  # the autoscaler's minimum counts
    ({"autoscaling": {"enabled": False}, "replicas": 1}, False),
    ({"autoscaling": {"enabled": False}, "replicas": 2}, True),
    ({"autoscaling": {"enabled": False, "minReplicas": 1}, "replicas": 4}, True),
])
def test_a_pod_disruption_budget_only_over_more_than_one_replica(hot_path: dict[str, Any], budget: bool) -> None:
    budgets = kinds(render(with_secrets(hotPath=hot_path)), "PodDisruptionBudget")
    assert len(budgets) == budget
    for pdb in budgets:
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "hot-path"


def test_the_scheduler_a_single_replica_has_no_budget() -> None:
    docs = render(with_secrets())
    (scheduler,) = [doc for doc in kinds(docs, "Deployment") if doc["metadata"]["name"].endswith("-scheduler")]
    assert scheduler["spec"]["replicas"] == 1
    assert [pdb["metadata"]["name"] for pdb in kinds(docs, "PodDisruptionBudget")] == [
        "aegis-data-pipeline-hot-path"]


# --- release notes -------------------------------------------------------------------------------------------


def test_the_notes_say_what_runs_how_to_check_it_and_where_the_metrics_are() -> None:
    notes = render_manifests.render_notes(K8S_VALUES)
    for expected in (
        f"(chart aegis-data-pipeline-{CHART_VERSION}) is installed: release aegis in namespace aegis",
        "image aegis/data-pipeline:1.0.0",
        "Deployment aegis-data-pipeline-hot-path, consuming policy-raw (3 partitions",
        "HorizontalPodAutoscaler aegis-data-pipeline-hot-path: 2 to 3 replicas",
        "maxReplicas 10 is capped at the topic's 3 partitions",
        "PodDisruptionBudget aegis-data-pipeline-hot-path",
        "Job aegis-data-pipeline-migrations",
        # the Secret that must exist, and the CA
        "Secret aegis-data-pipeline-secrets (secrets.existingSecret), which this chart does not create",
        "kubectl -n aegis get secret aegis-data-pipeline-secrets",
        "kubectl -n aegis create secret generic aegis-engines-ca --from-file=ca.crt=",
        # how to check it
        "kubectl -n aegis get jobs,pods -l app.kubernetes.io/instance=aegis,app.kubernetes.io/component=migrations",
        "kubectl -n aegis logs job/aegis-data-pipeline-migrations",
        "kubectl -n aegis rollout status deployment/aegis-data-pipeline-hot-path",
        "kubectl -n aegis get hpa aegis-data-pipeline-hot-path",
        "kubectl -n aegis rollout status deployment/aegis-data-pipeline-scheduler",
        # metrics and alerts
        "ServiceMonitor aegis-data-pipeline",
        'up{namespace="aegis", service="aegis-data-pipeline-metrics"}',
        "kubectl -n aegis get prometheusrule aegis-data-pipeline",
        "ConfigMap aegis-data-pipeline-dashboard",
    ):
        assert expected in notes, expected
    for name in SECRET_VALUES:
        assert name in notes
    assert "WARNINGS" not in notes  # the k8s values are the production ones: nothing risky
    assert "{{" not in notes and "<no value>" not in notes


def test_the_notes_warn_of_risky_values() -> None:
    notes = render_manifests.render_notes(with_secrets(
        hotPath={"replicas": 5, "autoscaling": {"enabled": False}}, scheduler={"enabled": False},
        metrics={"prometheusRule": {"enabled": False}}, networkPolicy={"enabled": False},
        settings={"ENVIRONMENT": "staging", "ALLOW_INSECURE_CONNECTIONS": "redis,search"}))
    warnings = notes.split("\nWARNINGS\n")[1]
    for expected in (
        "hotPath.replicas (5) is above kafka.topicPartitions (3): 2 hot-path replica(s) get no partition",
        "POSTGRES_SSLMODE is verify-full but tls.caSecret is empty",
        "ENVIRONMENT is staging",
        'ALLOW_INSECURE_CONNECTIONS is "redis,search"',
        "scheduler.enabled is false",
        "metrics.prometheusRule.enabled is false",
        "networkPolicy.enabled is false",
    ):
        assert expected in warnings, expected
    assert "Those secrets are in the release's values too (helm get values shows them)" in notes
    single = render_manifests.render_notes(with_secrets(tls={"caSecret": "ca"},
                                                        hotPath={"autoscaling": {"minReplicas": 1}}))
    assert single.split("\nWARNINGS\n")[1].strip().startswith("- The hot path may run a single replica")
    assert "PodDisruptionBudget" not in single.split("\nWARNINGS\n")[0]


def test_the_notes_stay_out_of_the_manifests() -> None:
    names = render_manifests.render_templates(K8S_VALUES)
    assert any(name.endswith("/NOTES.txt") for name in names)
    assert not any(name.endswith("/NOTES.txt") for name in render_manifests.render_chart(K8S_VALUES))
    assert "NOTES" not in (ROOT / "k8s" / "data-pipeline.yaml").read_text(encoding="utf-8")
