"""Settings: good values load, a missing or wrong one stops start-up with a message naming the variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegis_pipeline.settings import (
    DEVELOPMENT_IDENTIFIER_HASH_KEY,
    SettingsError,
    explicitly_configured_engines,
    load_core_settings,
    load_settings,
)

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


# A production configuration every engine of which is reached over TLS with credentials.
SECURE = {
    "ENVIRONMENT": "production",
    "POSTGRES_SSLMODE": "verify-full",
    "POSTGRES_SSL_ROOT_CERT": "/etc/aegis-tls/ca.crt",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "aegis",
    "KAFKA_SASL_PASSWORD": "k4fka-Secret",
    "REDIS_URL": "rediss://cache:6380/0",
    "REDIS_PASSWORD": "r3dis-Secret",
    "MILVUS_URI": "https://milvus:19530",
    "MILVUS_TOKEN": "aegis:m1lvus-Secret",
    "GRAPH_URI": "neo4j+s://neo4j:7687",
    "NEO4J_PASSWORD": "n30j-Real-Secret",
    "ELASTICSEARCH_URL": "https://es:9200",
    "ELASTICSEARCH_API_KEY": "ZWxhc3RpYzpzZWNyZXQ=",
    "IDENTIFIER_HASH_KEY": "1dent-Hash-Key-5f0c2a9e41b7d3c8e6",
}


@pytest.fixture
def production(environment: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in SECURE.items():
        environment.setenv(name, value)
    return environment


def test_production_starts_with_real_passwords_and_secure_connections(production: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.insecure_connections() == []
    shown = repr(settings)
    assert not [secret for secret in ("s3cret-Value", "k4fka-Secret", "r3dis-Secret", "m1lvus-Secret",
                                      "n30j-Real-Secret", "ZWxhc3RpYzpzZWNyZXQ=", "1dent-Hash-Key-5f0c2a9e41b7d3c8e6")
                if secret in shown]


@pytest.mark.parametrize("value", ["", "short-key", DEVELOPMENT_IDENTIFIER_HASH_KEY], ids=["empty", "short", "default"])
def test_production_refuses_a_default_or_short_identifier_hash_key(production: pytest.MonkeyPatch, value: str) -> None:
    production.setenv("IDENTIFIER_HASH_KEY", value)
    with pytest.raises(SettingsError, match="IDENTIFIER_HASH_KEY must be set to a real secret of at least 32") as \
            raised:
        load_settings()
    assert "production needs" not in str(raised.value)  # the connections are fine: only the key is named
    production.setenv("ENVIRONMENT", "development")  # the embedded stack's default is fine there
    assert load_settings().identifier_hash_key.get_secret_value() == value


@pytest.mark.parametrize(
    ("engine", "variable", "value", "message"),
    [
        ("postgres", "POSTGRES_SSLMODE", "prefer",
         "POSTGRES_SSLMODE is prefer: production needs require, verify-ca or verify-full"),
        ("kafka", "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
         "KAFKA_SECURITY_PROTOCOL is PLAINTEXT: production needs SSL or SASL_SSL"),
        ("kafka", "KAFKA_SECURITY_PROTOCOL", "SSL",
         "KAFKA_SECURITY_PROTOCOL is SSL without KAFKA_CLIENT_CERT_FILE: production needs a client certificate "
         "or SASL_SSL"),
        ("redis", "REDIS_URL", "redis://cache:6379/0", "REDIS_URL is redis://: production needs rediss://"),
        ("redis", "REDIS_PASSWORD", "", "REDIS_PASSWORD is empty: production needs one"),
        ("milvus", "MILVUS_URI", "http://milvus:19530", "MILVUS_URI is http://: production needs https://"),
        ("milvus", "MILVUS_TOKEN", "", "MILVUS_TOKEN is empty: production needs one"),
        ("graph", "GRAPH_URI", "bolt://neo4j:7687", "GRAPH_URI is bolt://: production needs neo4j+s:// or bolt+s://"),
        ("search", "ELASTICSEARCH_URL", "http://es:9200",
         "ELASTICSEARCH_URL is http://: production needs https://"),
        ("search", "ELASTICSEARCH_API_KEY", "",
         "ELASTICSEARCH_API_KEY and ELASTICSEARCH_PASSWORD are empty: production needs an API key or basic auth"),
    ],
    ids=["postgres-sslmode", "kafka-plaintext", "kafka-ssl-no-client-cert", "redis-scheme", "redis-password",
         "milvus-scheme", "milvus-token", "graph-scheme", "search-scheme", "search-credentials"],
)
def test_production_refuses_an_insecure_connection_unless_allowed(
    production: pytest.MonkeyPatch, engine: str, variable: str, value: str, message: str
) -> None:
    production.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert f"{message}, or list {engine} in ALLOW_INSECURE_CONNECTIONS" in str(raised.value)
    assert str(raised.value).count("production needs") == 1  # only the engine changed is named
    production.setenv("ALLOW_INSECURE_CONNECTIONS", f"{engine},redis")  # an explicit allowance starts it
    assert load_settings().allow_insecure_connections == {engine, "redis"}


def test_production_names_every_insecure_connection_at_once(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ENVIRONMENT", "production")
    environment.setenv("NEO4J_PASSWORD", "n30j-Real-Secret")
    with pytest.raises(SettingsError) as raised:  # VALID: plaintext, unauthenticated engines
        load_settings()
    named = {engine for engine in ("postgres", "kafka", "redis", "milvus", "graph", "search")
             if f"list {engine} in ALLOW_INSECURE_CONNECTIONS" in str(raised.value)}
    assert named == {"postgres", "kafka", "redis", "milvus", "graph", "search"}


def test_embedded_files_need_no_credentials_in_production(production: pytest.MonkeyPatch) -> None:
    production.setenv("MILVUS_URI", "/var/lib/aegis/milvus.db")  # Milvus Lite: a file, no server
    production.setenv("MILVUS_TOKEN", "")
    production.setenv("GRAPH_URI", "/var/lib/aegis/graph.lbug")
    production.setenv("NEO4J_PASSWORD", "")  # the embedded graph takes none
    assert load_settings().insecure_connections() == []


def test_allow_insecure_connections_takes_only_engine_names(production: pytest.MonkeyPatch) -> None:
    production.setenv("ALLOW_INSECURE_CONNECTIONS", "kafka, elasticsearch")
    with pytest.raises(SettingsError, match=r"ALLOW_INSECURE_CONNECTIONS: .*unknown engine.*elasticsearch"):
        load_settings()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        ({"POSTGRES_SSLMODE": "verify-ca"}, "POSTGRES_SSLMODE is verify-ca: set POSTGRES_SSL_ROOT_CERT"),
        ({"ELASTICSEARCH_API_KEY": "a2V5", "ELASTICSEARCH_USERNAME": "aegis", "ELASTICSEARCH_PASSWORD": "pw"},
         "ELASTICSEARCH_API_KEY and ELASTICSEARCH_PASSWORD are both set"),
        ({"ELASTICSEARCH_PASSWORD": "pw"}, "ELASTICSEARCH_PASSWORD is set without ELASTICSEARCH_USERNAME"),
    ],
    ids=["sasl-without-login", "verify-without-root-cert", "es-two-logins", "es-password-alone"],
)
def test_security_settings_that_cannot_work_are_refused_everywhere(
    environment: pytest.MonkeyPatch, values: dict[str, str], message: str
) -> None:
    for name, value in values.items():
        environment.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert message in str(raised.value)


def test_postgres_tls_settings_travel_in_the_connection_url(environment: pytest.MonkeyPatch) -> None:
    assert load_settings().postgres_dsn().endswith("/aegis?sslmode=prefer")  # libpq's default, said explicitly
    environment.setenv("POSTGRES_SSLMODE", "verify-full")
    environment.setenv("POSTGRES_SSL_ROOT_CERT", "/etc/aegis tls/ca.crt")
    assert load_settings().postgres_dsn() == (
        "postgresql://aegis:s3cret-Value@db.internal:5432/aegis?sslmode=verify-full&sslrootcert=%2Fetc%2Faegis+tls%2Fca.crt")


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


@pytest.fixture
def embedded_stack_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An embedded stack's state file as the only source of connections: no .env, none in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in VALID:
        monkeypatch.delenv(name, raising=False)
    _write_stack_state(tmp_path / "stack-dir")
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "stack-dir"))


@pytest.mark.usefixtures("embedded_stack_state")
def test_connections_come_from_the_embedded_stack_when_not_given() -> None:
    settings = load_settings()
    assert settings.postgres_port == 45432
    assert settings.kafka_bootstrap_servers == "127.0.0.1:49092"
    assert settings.kafka_enable_idempotence is False  # the embedded broker cannot do idempotence
    assert settings.graph_is_embedded is True


@pytest.mark.usefixtures("embedded_stack_state")
def test_an_explicit_engine_takes_nothing_from_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
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


@pytest.mark.usefixtures("embedded_stack_state")
def test_a_security_setting_configures_its_engine_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS or a login is never paired with an embedded engine (which has neither): setting one takes the engine
    off the stack, and `dev up` leaves it alone."""
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("REDIS_PASSWORD", "r3dis-Secret")
    assert explicitly_configured_engines() == {"kafka", "redis"}
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "KAFKA_BOOTSTRAP_SERVERS: missing" in str(raised.value) and "REDIS_URL: missing" in str(raised.value)
    assert "POSTGRES_HOST" not in str(raised.value)  # the other engines still come from the stack


def test_core_settings_need_no_connections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in VALID:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "6")
    assert load_core_settings().kafka_topic_partitions == 6
