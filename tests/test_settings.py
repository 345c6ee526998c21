"""Settings: good values load, a missing or wrong one stops start-up with a message naming the variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegis_pipeline.settings import SettingsError, load_core_settings, load_settings

VALID = {
    "POSTGRES_HOST": "db.internal",
    "POSTGRES_USER": "aegis",
    "POSTGRES_PASSWORD": "s3cret-Value",
    "POSTGRES_DB": "aegis",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka-0:9092,kafka-1:9092",
    "REDIS_URL": "redis://cache:6379/0",
    "MILVUS_URI": "http://milvus:19530",
    "GRAPH_URI": "neo4j://neo4j:7687",
    "ELASTICSEARCH_URL": "http://es:9200",
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment with every valid connection set and an empty data dir (no stack state)."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "no-stack"))
    for name, value in VALID.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_valid_environment_loads_with_design_defaults(environment: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.postgres_host == "db.internal"
    assert settings.postgres_password.get_secret_value() == "s3cret-Value"
    assert "s3cret" not in repr(settings)
    assert settings.kafka_enable_idempotence is True
    assert settings.graph_is_embedded is False
    # the design's knobs (§11) and the defaults
    assert settings.collection_interval_hours == 6
    assert settings.scraping_interval_hours == 24
    assert settings.max_concurrent_collections == 5
    assert settings.hot_path_timeout_seconds == 1.0
    assert settings.cold_path_batch_size == 100
    assert settings.quality_score_threshold == 0.7
    assert settings.kafka_topic_policy_events == "policy-events"
    assert settings.kafka_topic_dlq == "data-pipeline-dlq"


def test_embedded_graph_path_is_accepted(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("GRAPH_URI", "/var/lib/aegis/graph.lbug")
    assert load_settings().graph_is_embedded is True


@pytest.mark.parametrize(
    ("variable", "value", "expected_message"),
    [
        ("POSTGRES_PORT", "not-a-port", "POSTGRES_PORT"),
        ("POSTGRES_PORT", "70000", "POSTGRES_PORT"),
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka-without-port", "KAFKA_BOOTSTRAP_SERVERS"),
        ("REDIS_URL", "http://cache:6379", "REDIS_URL"),
        ("ELASTICSEARCH_URL", "es:9200", "ELASTICSEARCH_URL"),
        ("GRAPH_URI", "http://neo4j:7474", "GRAPH_URI"),
        ("QUALITY_SCORE_THRESHOLD", "1.5", "QUALITY_SCORE_THRESHOLD"),
        ("COLD_PATH_BATCH_SIZE", "0", "COLD_PATH_BATCH_SIZE"),
        ("KAFKA_ENABLE_IDEMPOTENCE", "maybe", "KAFKA_ENABLE_IDEMPOTENCE"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("ENVIRONMENT", "moon", "ENVIRONMENT"),
    ],
    ids=["port-text", "port-range", "kafka-no-port", "redis-scheme", "es-scheme", "graph-http",
         "threshold-above-1", "batch-zero", "bool-word", "log-level", "environment"],
)
def test_wrong_value_names_the_variable(
    environment: pytest.MonkeyPatch, variable: str, value: str, expected_message: str
) -> None:
    environment.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert expected_message in str(raised.value)
    assert "invalid settings" in str(raised.value)


def test_missing_values_are_each_named(environment: pytest.MonkeyPatch) -> None:
    environment.delenv("POSTGRES_HOST")
    environment.delenv("MILVUS_URI")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert "POSTGRES_HOST: missing" in message
    assert "MILVUS_URI: missing" in message
    assert "REDIS_URL" not in message


def test_dotenv_file_is_read(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    environment.delenv("REDIS_URL")
    (tmp_path / ".env").write_text("REDIS_URL=redis://from-dotenv:6379/1\n")
    assert load_settings().redis_url == "redis://from-dotenv:6379/1"


def test_production_refuses_default_passwords(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ENVIRONMENT", "production")
    environment.setenv("POSTGRES_PASSWORD", "postgres")
    with pytest.raises(SettingsError, match="POSTGRES_PASSWORD must be set to a real secret"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("POSTGRES_PASSWORD", ""), ("POSTGRES_PASSWORD", "changeme"), ("NEO4J_PASSWORD", ""),
     ("NEO4J_PASSWORD", "neo4j"), ("NEO4J_PASSWORD", "password")],
)
def test_production_refuses_each_default_password(
    environment: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    environment.setenv("ENVIRONMENT", "production")
    environment.setenv("NEO4J_PASSWORD", "n30j-Real-Secret")
    environment.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"{variable} must be set to a real secret") as raised:
        load_settings()
    assert "s3cret-Value" not in str(raised.value) and "n30j-Real-Secret" not in str(raised.value)


def test_production_starts_with_real_passwords(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ENVIRONMENT", "production")
    environment.setenv("NEO4J_PASSWORD", "n30j-Real-Secret")
    settings = load_settings()
    assert "n30j-Real-Secret" not in repr(settings) and "s3cret-Value" not in repr(settings)


def _write_stack_state(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    state = {
        "data_dir": str(data_dir),
        "engines": {},
        "settings": {
            "postgres": {"postgres_host": "127.0.0.1", "postgres_port": 45432, "postgres_user": "postgres",
                         "postgres_password": "", "postgres_db": "aegis"},
            "kafka": {"kafka_bootstrap_servers": "127.0.0.1:49092", "kafka_enable_idempotence": False},
            "redis": {"redis_url": "redis://127.0.0.1:46379/0"},
            "milvus": {"milvus_uri": "http://127.0.0.1:49530"},
            "graph": {"graph_uri": str(data_dir / "graph" / "policies.lbug")},
            "search": {"elasticsearch_url": "http://127.0.0.1:49200"},
        },
    }
    (data_dir / "stack.json").write_text(json.dumps(state))


def test_connections_come_from_the_embedded_stack_when_not_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in VALID:
        monkeypatch.delenv(name, raising=False)
    _write_stack_state(tmp_path / "stack-dir")
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "stack-dir"))
    settings = load_settings()
    assert settings.postgres_port == 45432
    assert settings.kafka_bootstrap_servers == "127.0.0.1:49092"
    assert settings.kafka_enable_idempotence is False  # the embedded broker cannot do idempotence
    assert settings.graph_is_embedded is True


def test_an_explicit_engine_takes_nothing_from_the_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in VALID:
        monkeypatch.delenv(name, raising=False)
    _write_stack_state(tmp_path / "stack-dir")
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "stack-dir"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.prod:9092")
    monkeypatch.setenv("POSTGRES_HOST", "pg.prod")
    with pytest.raises(SettingsError) as raised:  # half a postgres connection is not completed from the stack
        load_settings()
    assert "POSTGRES_USER: missing" in str(raised.value)
    monkeypatch.setenv("POSTGRES_USER", "aegis")
    monkeypatch.setenv("POSTGRES_DB", "aegis")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "kafka.prod:9092"
    assert settings.kafka_enable_idempotence is True  # not the stack's False: kafka is configured explicitly
    assert settings.postgres_host == "pg.prod"
    assert settings.postgres_port == 5432  # not the stack's port: never mix an explicit host with it
    assert settings.redis_url == "redis://127.0.0.1:46379/0"  # the other engines still come from the stack


def test_core_settings_need_no_connections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in VALID:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "6")
    assert load_core_settings().kafka_topic_partitions == 6
