"""The deployment: the Helm chart rendered by Helm's own engine (helm-python-sdk binds Helm's Go SDK), every
manifest validated offline against the Kubernetes schemas (kubernetes-validate, strict) and the
prometheus-operator models; k8s/ equal to the rendered chart; the design's autoscaling, probes and resources;
every environment name in the chart, the manifests and compose a real setting of settings.py."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator
from pydantic import SecretStr

from aegis_pipeline.settings import Settings

ROOT = Path(__file__).parents[2]
CHART = ROOT / "helm" / "aegis-data-pipeline"
SECRET_VALUES = {"POSTGRES_PASSWORD": "pg-secret", "NEO4J_PASSWORD": "neo-secret",
                 "KAFKA_SASL_PASSWORD": "kafka-secret", "REDIS_PASSWORD": "redis-secret",
                 "MILVUS_TOKEN": "aegis:milvus-secret", "ELASTICSEARCH_API_KEY": "ZXMtc2VjcmV0",
                 "IDENTIFIER_HASH_KEY": "identifier-hash-key-of-32-characters",
                 "DATA_GO_KR_SERVICE_KEY": "dgk", "BIZINFO_API_KEY": "bik"}
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())  # Chart.yaml: kubeVersion >=1.27
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor"): prometheus_operator.ServiceMonitor,
                    ("monitoring.coreos.com/v1", "PrometheusRule"): prometheus_operator.PrometheusRule}

_spec = importlib.util.spec_from_file_location("render_manifests", ROOT / "helm" / "render_manifests.py")
assert _spec is not None and _spec.loader is not None
render_manifests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_manifests)


def documents(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for text in render_manifests.render_chart(values).values() for doc in documents(text)]


CHART_DEFAULTS = render({"secrets": {"values": SECRET_VALUES}})
CHART_EVERYTHING_OFF = render({"secrets": {"values": SECRET_VALUES}, "scheduler": {"enabled": False},
                               "hotPath": {"autoscaling": {"enabled": False}}, "networkPolicy": {"enabled": False},
                               "metrics": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False},
                                           "grafanaDashboard": {"enabled": False}}})
CHART_TLS = render({"secrets": {"values": SECRET_VALUES}, "tls": {"caSecret": "engines-ca"}})
PLAIN = documents((ROOT / "k8s" / "data-pipeline.yaml").read_text(encoding="utf-8"))
SECRET_EXAMPLE = documents((ROOT / "k8s" / "secret.example.yaml").read_text(encoding="utf-8"))
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    matches = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"{kind} *{name_suffix}: {len(matches)} found"
    return matches[0]


def validation_problems(document: dict[str, Any]) -> list[str]:
    """Empty when the manifest is valid: core kinds against the Kubernetes schemas of each supported version
    (strict: unknown fields are errors), the prometheus-operator kinds against their models (a field the model
    does not know is dropped by it, so a round trip that loses something is an error too)."""
    kind, api_version = document.get("kind"), document.get("apiVersion")
    model = CUSTOM_RESOURCES.get((api_version, kind))
    if model is not None:
        try:
            dumped = model.model_validate(document).model_dump(by_alias=True, exclude_unset=True, mode="json")
        except ValueError as error:
            return [f"{kind}: {error}"]
        return [] if dumped == document else [f"{kind}: fields unknown to the {kind} model"]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            problems.append(f"{kind} {document['metadata'].get('name')} on {version}: {error}")
    return problems


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield f"{doc['kind']} {doc['metadata']['name']}", doc["spec"]["template"]["spec"]


# --- rendering and validation --------------------------------------------------------------------------------


def test_helm_lints_the_chart_without_errors() -> None:
    report = helm_python.lint(str(CHART), {"secrets": {"values": SECRET_VALUES}}, strict=True)
    assert report["errors"] == [] and report["messages"] == [], report


def test_every_rendered_manifest_is_valid() -> None:
    rendered = CHART_DEFAULTS + CHART_EVERYTHING_OFF + PLAIN + SECRET_EXAMPLE
    assert len(CHART_DEFAULTS) >= 13
    problems = [problem for doc in rendered for problem in validation_problems(doc)]
    assert problems == []


def test_the_validation_rejects_what_a_cluster_would_reject() -> None:
    deployment = find(CHART_DEFAULTS, "Deployment", "-hot-path")
    misspelled = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    assert validation_problems(misspelled)
    monitor = find(CHART_DEFAULTS, "ServiceMonitor")
    assert validation_problems({**monitor, "spec": {**monitor["spec"], "endpoint": []}})
    assert validation_problems({**monitor, "spec": {**monitor["spec"], "endpoints": "metrics"}})


def test_a_missing_secret_value_stops_the_rendering() -> None:
    with pytest.raises(helm_python.HelmError, match="POSTGRES_PASSWORD is required"):
        render({"secrets": {"values": {**SECRET_VALUES, "POSTGRES_PASSWORD": ""}}})
    assert not any(doc["kind"] == "Secret" for doc in render({"secrets": {"existingSecret": "mine"}}))


def test_k8s_manifests_are_the_chart_rendered_with_k8s_values() -> None:
    assert (ROOT / "k8s" / "data-pipeline.yaml").read_text(encoding="utf-8") == render_manifests.plain_manifests(), (
        "k8s/data-pipeline.yaml is out of date: run .venv/bin/python helm/render_manifests.py")


# --- what the design asks of the deployment ------------------------------------------------------------------


def test_the_hot_path_autoscales_as_in_the_design() -> None:
    hpa = find(CHART_DEFAULTS, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == find(CHART_DEFAULTS, "Deployment", "-hot-path")["metadata"]["name"]
    # The design's 2 to 10, the most capped at the raw topic's partitions (3 by default; tests/ops/test_chart.py)
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 3)
    partitions_of_the_design = render({"secrets": {"values": SECRET_VALUES}, "kafka": {"topicPartitions": 10}})
    assert find(partitions_of_the_design, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 10
    by_kind = {(metric["type"], (metric.get("resource") or {}).get("name")): metric for metric in hpa["metrics"]}
    assert by_kind[("Resource", "cpu")]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert by_kind[("Resource", "memory")]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    lag = by_kind[("External", None)]["external"]
    assert lag["metric"] == {"name": "kafka_consumer_lag", "selector": {"matchLabels": {"topic": "policy-raw"}}}
    assert lag["target"] == {"type": "AverageValue", "averageValue": "1000"}
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    # With the autoscaler on, the Deployment leaves the replica count to it (an upgrade would reset it).
    assert "replicas" not in find(CHART_DEFAULTS, "Deployment", "-hot-path")["spec"]
    assert find(CHART_EVERYTHING_OFF, "Deployment", "-hot-path")["spec"]["replicas"] == 2


def test_probes_resources_and_commands() -> None:
    hot = find(CHART_DEFAULTS, "Deployment", "-hot-path")["spec"]["template"]["spec"]["containers"][0]
    scheduler_spec = find(CHART_DEFAULTS, "Deployment", "-scheduler")["spec"]
    scheduler = scheduler_spec["template"]["spec"]["containers"][0]
    for container in (hot, scheduler):
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "metrics"}
        assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert hot["args"] == ["hot-path"] and scheduler["args"] == ["scheduler"]
    assert hot["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    assert scheduler_spec["replicas"] == 1 and scheduler_spec["strategy"] == {"type": "Recreate"}
    migrations = find(CHART_DEFAULTS, "Job", "-migrations")
    assert migrations["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


@pytest.mark.parametrize("docs", [CHART_DEFAULTS, PLAIN], ids=["chart", "k8s"])
def test_every_pod_runs_non_root_on_a_read_only_filesystem(docs: list[dict[str, Any]]) -> None:
    specs = list(pod_specs(docs))
    assert len(specs) == 3
    for where, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        assert spec["automountServiceAccountToken"] is False, where
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert {mount["mountPath"] for mount in container["volumeMounts"]} >= {"/tmp"}, where


def test_the_metrics_service_monitor_pdb_and_network_policy_select_the_pipeline_pods() -> None:
    service = find(CHART_DEFAULTS, "Service", "-metrics")
    monitor = find(CHART_DEFAULTS, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == [service["spec"]["ports"][0]["name"]]
    pod_labels = {name: spec for name, spec in (
        (doc["metadata"]["name"], doc["spec"]["template"]["metadata"]["labels"])
        for doc in CHART_DEFAULTS if doc["kind"] == "Deployment")}
    for labels in pod_labels.values():
        assert service["spec"]["selector"].items() <= labels.items()
        assert find(CHART_DEFAULTS, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    pdb = find(CHART_DEFAULTS, "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1
    assert pdb["selector"]["matchLabels"].items() <= pod_labels[f"{service['metadata']['name'][:-8]}-hot-path"].items()
    rule = find(CHART_DEFAULTS, "PrometheusRule")["spec"]
    chart_alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text(encoding="utf-8"))
    assert rule == chart_alerts


# --- settings: the real environment names, all required ones given -------------------------------------------

SETTING_NAMES = {name.upper() for name in Settings.model_fields}
SECRET_SETTINGS = {name.upper() for name, field in Settings.model_fields.items() if field.annotation is SecretStr}
REQUIRED_SETTINGS = {name.upper() for name, field in Settings.model_fields.items() if field.is_required()}
SOURCES_FILE = CHART / "files" / "sources.yaml"
SOURCE_KEYS = set(re.findall(r"\$\{(\w+)\}", yaml.safe_dump(yaml.safe_load(SOURCES_FILE.read_text(encoding="utf-8")))))


def settings_given(docs: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(names in the settings ConfigMap, names in the Secret) as the pods receive them."""
    config = find(docs, "ConfigMap", "-settings")["data"]
    secrets = [doc for doc in docs if doc["kind"] == "Secret"]
    return set(config), {name for doc in secrets for name in doc.get("stringData", {})}


def test_the_sources_file_parses_and_its_keys_come_from_the_secret() -> None:
    from aegis_pipeline.collectors.definitions import parse_sources

    document = yaml.safe_load(SOURCES_FILE.read_text(encoding="utf-8"))
    assert len(parse_sources(document, dict.fromkeys(SOURCE_KEYS, "key")).sources) == 5
    assert SOURCE_KEYS == {"DATA_GO_KR_SERVICE_KEY", "BIZINFO_API_KEY"}


@pytest.mark.parametrize("docs", [CHART_DEFAULTS, PLAIN + SECRET_EXAMPLE], ids=["chart", "k8s"])
def test_config_map_and_secret_carry_real_settings(docs: list[dict[str, Any]]) -> None:
    config, secret = settings_given(docs)
    assert config <= SETTING_NAMES, f"not settings: {config - SETTING_NAMES}"
    assert secret <= SECRET_SETTINGS | SOURCE_KEYS, f"not secret settings: {secret - SECRET_SETTINGS - SOURCE_KEYS}"
    assert not config & SECRET_SETTINGS, "a secret setting in the ConfigMap"
    assert REQUIRED_SETTINGS <= config, f"required settings not given: {REQUIRED_SETTINGS - config}"
    assert SECRET_SETTINGS | SOURCE_KEYS <= secret
    for _, spec in pod_specs(docs):
        for container in spec["containers"]:
            assert {name for item in container.get("env", []) for name in [item["name"]]} <= SETTING_NAMES
            refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
            assert refs == {find(docs, "ConfigMap", "-settings")["metadata"]["name"],
                            "aegis-data-pipeline-secrets"}


@pytest.mark.parametrize("docs", [CHART_TLS, PLAIN + SECRET_EXAMPLE], ids=["chart", "k8s"])
def test_the_deployment_starts_in_production_with_secure_connections(docs: list[dict[str, Any]]) -> None:
    """The chart's settings pass production's refusal of plaintext and unauthenticated engines (settings.py),
    with the engines' CA mounted where the settings point."""
    config = find(docs, "ConfigMap", "-settings")["data"]
    secret = {**dict.fromkeys(SECRET_SETTINGS, ""), **SECRET_VALUES}  # k8s: as secret.example.yaml, filled in
    settings = Settings(**{name.lower(): value for name, value in {**config, **secret}.items()
                           if name.lower() in Settings.model_fields})
    assert settings.environment == "production" and settings.insecure_connections() == []
    ca_file = settings.postgres_ssl_root_cert
    assert ca_file is not None
    for where, spec in pod_specs(docs):
        (container,) = spec["containers"]
        mounted = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        (ca_volume,) = [volume for volume in spec["volumes"] if volume["name"] == "engines-ca"]
        assert mounted["engines-ca"] == str(ca_file.parent), where
        assert ca_volume["secret"]["items"] == [{"key": "ca.crt", "path": ca_file.name}], where
    assert {settings.kafka_ca_file, settings.redis_ca_file, settings.milvus_ca_file, settings.neo4j_ca_file,
            settings.elasticsearch_ca_file} == {settings.postgres_ssl_root_cert}


def test_values_name_only_real_settings() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert set(values["settings"]) <= SETTING_NAMES - SECRET_SETTINGS
    assert set(values["secrets"]["values"]) == SECRET_SETTINGS | SOURCE_KEYS


def _compose_pipeline_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in COMPOSE["services"].items()
            if str(service.get("image", "")).startswith("aegis/data-pipeline")}


def test_compose_gives_the_pipeline_real_settings_and_runs_it_like_kubernetes() -> None:
    services = _compose_pipeline_services()
    assert set(services) == {"migrations", "hot-path", "scheduler", "airflow"}
    for name, service in services.items():
        environment = set(service["environment"])
        ours = {variable for variable in environment if not variable.startswith("AIRFLOW__")}
        assert ours <= SETTING_NAMES | SOURCE_KEYS, f"{name}: not settings: {ours - SETTING_NAMES - SOURCE_KEYS}"
        assert REQUIRED_SETTINGS | SECRET_SETTINGS <= environment, name
        if name != "airflow":
            assert service["read_only"] is True and service["user"] == "10001:10001", name
            assert service["cap_drop"] == ["ALL"], name
    assert services["hot-path"]["command"] == ["hot-path"] and services["scheduler"]["command"] == ["scheduler"]


def test_compose_runs_every_engine_and_mounts_only_files_that_exist() -> None:
    services = COMPOSE["services"]
    assert {"kafka", "postgres", "redis", "milvus", "neo4j", "elasticsearch", "airflow", "prometheus",
            "pushgateway", "alertmanager", "grafana"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "analysis-nori" in (ROOT / "deploy" / "elasticsearch" / "Dockerfile").read_text(encoding="utf-8")
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build["context"]
            assert (ROOT / context / "Dockerfile").is_file(), name


def test_airflow_values_feed_the_tasks_the_pipeline_settings() -> None:
    values = yaml.safe_load((ROOT / "helm" / "airflow-values.yaml").read_text(encoding="utf-8"))
    references = yaml.safe_load(values["extraEnvFrom"])
    names = {next(iter(ref.values()))["name"] for ref in references}
    assert names == {find(CHART_DEFAULTS, "ConfigMap", "-settings")["metadata"]["name"],
                     find(CHART_DEFAULTS, "Secret")["metadata"]["name"]}
    assert values["images"]["airflow"]["repository"] == "aegis/data-pipeline-airflow"
    assert values["dags"]["gitSync"]["enabled"] is False  # the DAGs are in the image (Dockerfile, target airflow)


def test_airflow_tasks_get_the_sources_file_at_sources_file() -> None:
    """`dlq_retry` retries dead letters, loading SOURCES_FILE for the collectors' letters."""
    sources_file = Path(find(CHART_DEFAULTS, "ConfigMap", "-settings")["data"]["SOURCES_FILE"])
    sources_map = find(CHART_DEFAULTS, "ConfigMap", "-sources")
    assert sources_file.name in sources_map["data"]

    workers = yaml.safe_load((ROOT / "helm" / "airflow-values.yaml").read_text(encoding="utf-8"))["workers"]
    (volume,) = [volume for volume in workers["extraVolumes"] if "configMap" in volume]
    (mount,) = [mount for mount in workers["extraVolumeMounts"] if mount["name"] == volume["name"]]
    assert volume["configMap"]["name"] == sources_map["metadata"]["name"]
    assert (mount["name"], Path(mount["mountPath"])) == (volume["name"], sources_file.parent)

    airflow = COMPOSE["services"]["airflow"]
    assert f"./helm/aegis-data-pipeline/files/sources.yaml:{sources_file}:ro" in airflow["volumes"]
    assert airflow["environment"]["SOURCES_FILE"] == str(sources_file)
    # Our DAG folder, mounted where Airflow reads DAGs
    assert f"./dags:{airflow['environment']['AIRFLOW__CORE__DAGS_FOLDER']}:ro" in airflow["volumes"]


# --- one enum of DP codes ------------------------------------------------------------------------------------


def test_dp_codes_are_written_only_in_the_error_enum() -> None:
    """Code names DP codes through `ErrorCode`, never as string literals (tests and common/errors.py aside)."""
    literal = re.compile(r"""["']DP_\d{4}["']""")
    offenders = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        is_the_enum = relative == Path("src/aegis_pipeline/common/errors.py")
        if relative.parts[0] in {".venv", "tests", ".aegis", "build"} or is_the_enum:
            continue
        offenders += [f"{relative}:{number}" for number, line in
                      enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if literal.search(line)]
    assert offenders == []
