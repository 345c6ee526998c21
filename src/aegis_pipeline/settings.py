"""All configuration of the pipeline, read once from the environment and `.env`.

Only this module reads the environment; everything else receives a `Settings` (or plain values).
Variable names follow the design (§11), matched case-insensitively: `POSTGRES_HOST`, `KAFKA_BOOTSTRAP_SERVERS`,
`COLD_PATH_BATCH_SIZE`, ... Units are part of the names.

Where a connection value is not given explicitly, it is read from the embedded stack's state file
(`<AEGIS_DATA_DIR>/stack.json`, written by `aegis-pipeline dev up`), so tests, DAGs and a user's shell all reach
the same stack. Priority: explicit arguments > environment > `.env` > embedded stack > defaults.

May import: the standard library, pydantic and python-dotenv only.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlencode

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

STACK_STATE_FILE = "stack.json"

# Which connection fields belong to which engine (names as in `dev status --json`).
# Security settings belong to their engine too: setting one (say KAFKA_SECURITY_PROTOCOL) configures the engine
# explicitly, so it takes nothing from the embedded stack and `dev up` starts none (the embedded engines have no
# TLS or credentials). NEO4J_USER and NEO4J_PASSWORD are the exception: the embedded graph is a file that ignores
# them, and a Neo4j server is named by GRAPH_URI anyway.
ENGINE_FIELDS: dict[str, tuple[str, ...]] = {
    "postgres": ("postgres_host", "postgres_port", "postgres_user", "postgres_password", "postgres_db",
                 "postgres_sslmode", "postgres_ssl_root_cert"),
    "kafka": ("kafka_bootstrap_servers", "kafka_enable_idempotence", "kafka_security_protocol", "kafka_sasl_mechanism",
              "kafka_sasl_username", "kafka_sasl_password", "kafka_ca_file", "kafka_client_cert_file",
              "kafka_client_key_file"),
    "redis": ("redis_url", "redis_username", "redis_password", "redis_ca_file"),
    "milvus": ("milvus_uri", "milvus_token", "milvus_ca_file"),
    "graph": ("graph_uri",),
    "search": ("elasticsearch_url", "elasticsearch_api_key", "elasticsearch_username", "elasticsearch_password",
               "elasticsearch_ca_file"),
    # Monitoring: where batch work pushes its metrics, and where operators (and `dev demo`) read alerts.
    "pushgateway": ("prometheus_pushgateway_url",),
    "alertmanager": ("alertmanager_url",),
    "prometheus": ("prometheus_url", "prometheus_file_sd_dir"),
}


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


class PostgresSslMode(StrEnum):
    """libpq's `sslmode`, which asyncpg takes too: from no TLS at all to TLS with the server's certificate checked
    against the root certificate and its host name against POSTGRES_HOST."""

    DISABLE = "disable"
    ALLOW = "allow"  # TLS only if the server insists
    PREFER = "prefer"  # TLS if the server offers it, certificate not checked (libpq's default)
    REQUIRE = "require"  # TLS; the certificate is checked only when POSTGRES_SSL_ROOT_CERT is given (as libpq)
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class KafkaSecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class KafkaSaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


# Engines whose connection production checks: the keys of ENGINE_FIELDS that ALLOW_INSECURE_CONNECTIONS may name.
SECURED_ENGINES = ("postgres", "kafka", "redis", "milvus", "graph", "search")
NEO4J_TLS_SCHEMES = ("neo4j+s://", "bolt+s://")
# Passwords that are never a real secret.
WEAK_PASSWORDS = frozenset({"", "postgres", "password", "neo4j", "changeme"})
# IDENTIFIER_HASH_KEY: the embedded stack's public default (the value of domain.identifiers.DEVELOPMENT_KEY), which
# production refuses, as any key shorter than IDENTIFIER_HASH_KEY_MIN_CHARS.
DEVELOPMENT_IDENTIFIER_HASH_KEY = "aegis-development-identifier-hash-key-not-secret"
IDENTIFIER_HASH_KEY_MIN_CHARS = 32


class CoreSettings(BaseSettings):
    """Everything that has a sensible default: service identity, topics, knobs of the design (§11).

    Enough to start the embedded stack (`dev up`), which is why connections live in `Settings` below.
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    service_name: str = "data-pipeline"
    service_version: str = "1.0.0"
    environment: Environment = Environment.DEVELOPMENT
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_json: bool = True

    aegis_data_dir: Path = Field(default=Path(".aegis"), description="Embedded stack data and state file")

    # Topics. The raw topic carries collected records; policy-events carries the design's events (§7.1).
    kafka_topic_raw_policies: str = "policy-raw"
    kafka_topic_policy_events: str = "policy-events"
    kafka_topic_dlq: str = "data-pipeline-dlq"
    # The catalogue for late consumers (docs/events.md, "The catalogue topic"): the latest state of each active
    # policy, keyed by its id, a tombstone when it leaves; created compacted (cleanup.policy=compact).
    kafka_topic_policy_state: str = "policy-state"
    kafka_topic_partitions: int = Field(default=3, ge=1, le=256)
    # The hot path's consumer group: every replica of one deployment shares it.
    kafka_consumer_group: str = Field(default="aegis-hot-path", min_length=1)

    # Collection (§11): APIs every 6 h, web boards daily (cron at 00:00).
    collection_interval_hours: int = Field(default=6, ge=1)
    scraping_interval_hours: int = Field(default=24, ge=1)
    max_concurrent_collections: int = Field(default=5, ge=1)

    # Processing (§11).
    hot_path_timeout_seconds: float = Field(default=1.0, gt=0)
    cold_path_batch_size: int = Field(default=100, ge=1)
    # Background rescoring (cold_path/scoring_rules.py): once nothing waits for a score, each worker of a cold-path run
    # scores again records scored under older rules (weights, threshold or duplicate guards changed), oldest rules
    # first, taking batches for at most this long; the next hourly run goes on. 0: not in the background (only
    # `cold-path run --rescore-all` rescores).
    cold_path_rescore_seconds: float = Field(default=600.0, ge=0)
    quality_score_threshold: float = Field(default=0.7, ge=0, le=1)

    metrics_port: int = Field(default=9090, ge=0, le=65535)  # 0: any free port (tests)
    # Where the operations server (/health, /health/ready, /metrics on METRICS_PORT) listens: loopback unless a
    # deployment says otherwise (compose: every interface of the container; the chart: the pod's IP). HEALTH_HOST,
    # when set to another address, is listened on too (e.g. a probe network apart from the metrics one).
    metrics_host: str = Field(default="127.0.0.1", min_length=1)
    health_host: str | None = None
    # Hot path: records per consumer batch, and how long a stored policy stays in the Redis cache (design §6.3).
    hot_path_batch_size: int = Field(default=500, ge=1, le=10_000)
    # ... and bytes per batch (the messages' values): a batch stops growing at this size, so large records come in
    # small batches (the store's one JSON parameter, encoded on the event loop, stays small, and far below
    # PostgreSQL's 256 MB limit of one jsonb value). A batch holds at least one fetch whatever its size.
    hot_path_batch_max_bytes: int = Field(default=16_000_000, ge=1, le=128_000_000)
    policy_cache_ttl_seconds: int = Field(default=3600, ge=1)

    # Collectors: the sources file (docs/sources.md), how the scraper introduces itself, the circuit breaker
    # per source (design §6.2.1: 5 failures open it, half-open after 60 s).
    sources_file: Path = Path("sources.yaml")
    collector_user_agent: str = Field(default="AegisPolicyCollector/1.0 (+https://aegis.example/bot)", min_length=1)
    collector_circuit_failure_threshold: int = Field(default=5, ge=1)
    collector_circuit_recovery_seconds: float = Field(default=60.0, gt=0)

    # Cold path (issue 5): scoring weights, duplicate detection.
    # The quality score is the weighted sum of its four dimensions (each 0..1); the weights must add up to 1.
    quality_weight_completeness: float = Field(default=0.3, ge=0, le=1)
    quality_weight_accuracy: float = Field(default=0.3, ge=0, le=1)
    quality_weight_consistency: float = Field(default=0.2, ge=0, le=1)
    quality_weight_timeliness: float = Field(default=0.2, ge=0, le=1)
    # Two records of one program score at least this (0..1, cold_path/duplicates.py); lower: more merges.
    duplicate_similarity_threshold: float = Field(default=0.55, gt=0, le=1)
    # Lifecycle (docs/lifecycle.md): the hourly cold path archives a programme whose application period ended more
    # than this many days ago (Korean dates; a deadline extended within the grace keeps it in the catalogue).
    archive_after_days: int = Field(default=7, ge=0, le=3650)

    @model_validator(mode="after")
    def _quality_weights_add_up_to_one(self) -> Self:
        total = (self.quality_weight_completeness + self.quality_weight_accuracy
                 + self.quality_weight_consistency + self.quality_weight_timeliness)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"QUALITY_WEIGHT_COMPLETENESS, _ACCURACY, _CONSISTENCY and _TIMELINESS add up to "
                             f"{total:g}; they must add up to 1")
        return self

    # Sync (issue 6): embedding model, targets, consistency.
    # A model whose weights ship in a Python package (sync/embeddings.py `MODELS`, loaded offline); its dimension
    # is the model's. Changing it takes `aegis-pipeline sync rebuild --target vectors` (a new collection).
    embedding_model: str = Field(default="use-multilingual-v3", min_length=1)
    embedding_batch_size: int = Field(default=32, ge=1, le=4096)  # texts per encode call
    sync_batch_size: int = Field(default=1000, ge=1, le=50_000)  # records read and written per batch
    # A sync, rebuild or repair of a target waits this long for another one of the same target (a long encode)
    # before it reports the target `busy` (not a failure: its watermark stays, the next run catches up).
    sync_lock_wait_seconds: float = Field(default=1800.0, ge=0)
    # Texts encoded per sync run at most (about 45/s on 2 cores): the rest waits for the next run.
    sync_max_encode_per_run: int = Field(default=2000, ge=0)
    milvus_collection: str = Field(default="aegis_policies", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
    elasticsearch_index: str = Field(default="aegis-policies", pattern=r"^[a-z0-9][a-z0-9_-]{0,200}$")
    # Analyzer of the text fields: `nori` on real clusters (analysis-nori plugin); `korean_bigram` (defined by the
    # index, two-character pieces) wherever nori is missing, as in the embedded engine. Takes a `sync rebuild`.
    elasticsearch_analyzer: str = Field(default="korean_bigram", min_length=1)

    # Input limits (issue 8): sizes beyond which input is refused with a DP code.
    # A fetched response (API page, feed, web page) larger than this is refused (DP_1004) and not read further.
    max_response_bytes: int = Field(default=10_000_000, ge=1_000)
    # One raw record as JSON (a Kafka message on the raw topic): larger is refused, DP_1004 by the collector and
    # DP_2001 by the hot path. Below Kafka's default message.max.bytes (1,048,588), so a record never fails to send.
    max_record_bytes: int = Field(default=1_000_000, ge=1_000, le=1_048_000)

    # Reliability (issue 8, parts 1 and 4): recovering from a broker that lost what it had acknowledged.
    # A record published this long ago whose version is still not in PostgreSQL is published again by the next run.
    collector_republish_grace_seconds: float = Field(default=900.0, ge=0)
    # How often the hot path checks that the broker still has its data (a sentinel topic); after a loss it
    # re-creates the topics and announces again, through the outbox, what was stored within the horizon: every
    # policy changed (policy.validated), scored (data.quality_updated), every sync run (data.sync_completed).
    kafka_broker_check_seconds: float = Field(default=30.0, gt=0)
    event_reannounce_horizon_hours: float = Field(default=168.0, ge=0)

    # Operations (issue 7): batch commands (cold-path, sync, consistency, collect, dlq) push their metrics here
    # when they finish (a Prometheus Pushgateway URL, e.g. http://pushgateway:9091); empty: they do not push.
    prometheus_pushgateway_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    # The Prometheus that scrapes the pipeline and evaluates its alert rules, and the Alertmanager it sends alerts
    # to: read by `dev demo`'s alert summary; empty: not known to this process.
    prometheus_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    alertmanager_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    # Where a long-running command (hot path, scheduler) announces its /metrics address for Prometheus's file-based
    # discovery: the embedded stack sets it. Compose and Kubernetes discover the pods themselves; empty: none.
    prometheus_file_sd_dir: Path | None = None
    # Long work (sync, consistency, collect --once, cold path) off a terminal (Airflow, CI) logs a `progress` line
    # at most this often (common/progress.py; on a terminal it draws a live bar instead).
    progress_log_seconds: float = Field(default=5.0, gt=0)

    # Retention (issue 25, cold_path/retention.py, run daily by the `policy_retention` DAG and `aegis-pipeline
    # retention`): rows older than this many days are deleted, except what must stay (a policy's latest score and
    # status change, open dead letters, the latest report per target, the latest run of each kind); 0: kept forever.
    # Deleted in batches of RETENTION_BATCH_SIZE rows examined, each its own short transaction.
    retention_days_audit_logs: int = Field(default=365, ge=0)
    retention_days_processing_history: int = Field(default=90, ge=0)
    retention_days_quality_metrics: int = Field(default=90, ge=0)
    retention_days_consistency_reports: int = Field(default=30, ge=0)
    retention_days_dead_letters: int = Field(default=30, ge=0)  # resolved letters only: open ones always stay
    retention_days_pipeline_metadata: int = Field(default=90, ge=0)  # never under EVENT_REANNOUNCE_HORIZON_HOURS
    retention_batch_size: int = Field(default=5000, ge=1, le=100_000)

    @property
    def stack_state_path(self) -> Path:
        return self.aegis_data_dir / STACK_STATE_FILE


class Settings(CoreSettings):
    """`CoreSettings` plus the connection to every engine; what the pipeline's commands run with."""

    postgres_host: str = Field(min_length=1)
    postgres_port: int = Field(default=5432, ge=1, le=65535)
    postgres_user: str = Field(min_length=1)
    postgres_password: SecretStr = SecretStr("")
    postgres_db: str = Field(min_length=1)
    postgres_pool_max_size: int = Field(default=10, ge=1)
    postgres_sslmode: PostgresSslMode = PostgresSslMode.PREFER
    # The CA that signed the server's certificate (libpq's sslrootcert); verify-ca and verify-full need one.
    postgres_ssl_root_cert: Path | None = None

    kafka_bootstrap_servers: str = Field(pattern=r"^[^\s,:]+:\d+(,[^\s,:]+:\d+)*$")
    # The embedded broker (Tansu) cannot InitProducerId, so the stack turns this off; real Kafka keeps it on.
    kafka_enable_idempotence: bool = True
    kafka_security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    # SASL_SSL and SASL_PLAINTEXT log in with these.
    kafka_sasl_mechanism: KafkaSaslMechanism = KafkaSaslMechanism.PLAIN
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # SSL and SASL_SSL: the CA of the brokers' certificates (empty: the system's CAs), and for SSL the client's own
    # certificate and key, by which the broker knows the client (mutual TLS). Each engine's CA file is read only by
    # a TLS connection (so one CA bundle can be given to every engine, whichever of them use TLS).
    kafka_ca_file: Path | None = None
    kafka_client_cert_file: Path | None = None
    kafka_client_key_file: Path | None = None

    redis_url: str = Field(pattern=r"^(redis|rediss|unix)://")
    # An ACL user (empty: Redis's `default` user) and its password; rediss:// URLs check the server against the CA.
    redis_username: str = ""
    redis_password: SecretStr = SecretStr("")
    redis_ca_file: Path | None = None
    # http(s)://host:19530 for a Milvus server, or a file path for Milvus Lite (which takes no token).
    milvus_uri: str = Field(min_length=1)
    milvus_token: SecretStr = SecretStr("")  # `user:password`, or an API key
    milvus_ca_file: Path | None = None  # https:// only; empty: the system's CAs
    # neo4j://host:7687 or bolt://host:7687 for a Neo4j server (neo4j+s://, bolt+s://: TLS), or a filesystem path
    # for the embedded engine.
    graph_uri: str = Field(min_length=1)
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr = SecretStr("")
    neo4j_ca_file: Path | None = None  # neo4j+s:// and bolt+s:// only; empty: the system's CAs
    elasticsearch_url: str = Field(pattern=r"^https?://")
    # One of the two: an API key (base64 `id:key`, as Elasticsearch returns it) or basic auth.
    elasticsearch_api_key: SecretStr = SecretStr("")
    elasticsearch_username: str = ""
    elasticsearch_password: SecretStr = SecretStr("")
    elasticsearch_ca_file: Path | None = None  # https:// only; empty: the system's CAs

    # The key of the hash that replaces personal data found in a record's id or a field name (domain/identifiers.py:
    # `pii-` + HMAC-SHA256). Keep it for the life of the data: another key gives every hashed id another hash (new
    # records). Production refuses the default (public) and wants at least IDENTIFIER_HASH_KEY_MIN_CHARS characters.
    identifier_hash_key: SecretStr = SecretStr(DEVELOPMENT_IDENTIFIER_HASH_KEY)

    # Engines (of SECURED_ENGINES) that production may reach without TLS or credentials, comma-separated: e.g.
    # `redis` for a cache on the pod's own network. Empty: production refuses every insecure connection.
    allow_insecure_connections: Annotated[frozenset[str], NoDecode] = frozenset()

    @field_validator("postgres_ssl_root_cert", "kafka_ca_file", "kafka_client_cert_file", "kafka_client_key_file",
                     "redis_ca_file", "milvus_ca_file", "neo4j_ca_file", "elasticsearch_ca_file", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        return None if value == "" else value  # `KAFKA_CA_FILE=` in .env: no file (not the current directory)

    @field_validator("allow_insecure_connections", mode="before")
    @classmethod
    def _split_engine_names(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("allow_insecure_connections")
    @classmethod
    def _known_engines(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(value - set(SECURED_ENGINES))
        if unknown:
            raise ValueError(f"unknown engine(s) {', '.join(unknown)}; names are {', '.join(SECURED_ENGINES)}")
        return value

    @field_validator("graph_uri")
    @classmethod
    def _graph_uri_is_server_or_path(cls, value: str) -> str:
        if "://" in value and not value.startswith(("neo4j://", "bolt://", *NEO4J_TLS_SCHEMES)):
            raise ValueError("must be a neo4j:// or bolt:// URI, or a filesystem path for the embedded engine")
        return value

    @model_validator(mode="after")
    def _security_settings_fit_together(self) -> Self:
        """Security settings that cannot work as given, in any environment."""
        problems = []
        if self.kafka_security_protocol.startswith("SASL_") and not (
                self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            problems.append(f"KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol}: "
                            "set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if self.kafka_client_key_file and not self.kafka_client_cert_file:
            problems.append("KAFKA_CLIENT_KEY_FILE is set without KAFKA_CLIENT_CERT_FILE")
        if self.elasticsearch_api_key.get_secret_value() and self.elasticsearch_password.get_secret_value():
            problems.append("ELASTICSEARCH_API_KEY and ELASTICSEARCH_PASSWORD are both set: give one of them")
        if self.elasticsearch_password.get_secret_value() and not self.elasticsearch_username:
            problems.append("ELASTICSEARCH_PASSWORD is set without ELASTICSEARCH_USERNAME")
        # Without one, asyncpg would look for ~/.postgresql/root.crt (it never reads the system's CAs).
        if self.postgres_sslmode in {PostgresSslMode.VERIFY_CA, PostgresSslMode.VERIFY_FULL} and \
                self.postgres_ssl_root_cert is None:
            problems.append(f"POSTGRES_SSLMODE is {self.postgres_sslmode}: set POSTGRES_SSL_ROOT_CERT, the CA the "
                            "server's certificate is checked against")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _production_connections_are_secure(self) -> Self:
        """Production starts only with real passwords, and with TLS and credentials for every engine that is not
        listed in ALLOW_INSECURE_CONNECTIONS: every command stops here, before it connects to anything."""
        if self.environment is not Environment.PRODUCTION:
            return self
        weak = ["postgres_password"] + ([] if self.graph_is_embedded else ["neo4j_password"])
        problems = [f"{name.upper()} must be set to a real secret in production" for name in weak
                    if getattr(self, name).get_secret_value() in WEAK_PASSWORDS]
        identifier_key = self.identifier_hash_key.get_secret_value()
        if identifier_key == DEVELOPMENT_IDENTIFIER_HASH_KEY or len(identifier_key) < IDENTIFIER_HASH_KEY_MIN_CHARS:
            problems.append(f"IDENTIFIER_HASH_KEY must be set to a real secret of at least "
                            f"{IDENTIFIER_HASH_KEY_MIN_CHARS} characters in production (e.g. `openssl rand -hex 32`)")
        problems += [f"{problem}, or list {engine} in ALLOW_INSECURE_CONNECTIONS"
                     for engine, problem in self.insecure_connections()
                     if engine not in self.allow_insecure_connections]
        if problems:  # one line each, so that the operator sees every one at once
            raise ValueError("production refuses these settings:\n    " + "\n    ".join(problems))
        return self

    def insecure_connections(self) -> list[tuple[str, str]]:
        """(engine, problem) for each connection that is plaintext or sends no credentials; production refuses
        these. An embedded Milvus Lite file or graph file is no connection, so it has none."""
        scheme = {engine: url.split("://")[0] for engine, url in (
            ("redis", self.redis_url), ("milvus", self.milvus_uri), ("graph", self.graph_uri),
            ("search", self.elasticsearch_url))}
        checks: list[tuple[str, object, str]] = [  # (engine, secure when true, problem)
            ("postgres", self.postgres_sslmode in {PostgresSslMode.REQUIRE, PostgresSslMode.VERIFY_CA,
                                                   PostgresSslMode.VERIFY_FULL},
             f"POSTGRES_SSLMODE is {self.postgres_sslmode}: production needs require, verify-ca or verify-full"),
            ("kafka", self.kafka_uses_tls,
             f"KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol}: production needs SSL or SASL_SSL"),
            # SSL alone encrypts, but the broker knows the client only by a client certificate.
            ("kafka", self.kafka_security_protocol is not KafkaSecurityProtocol.SSL or self.kafka_client_cert_file,
             "KAFKA_SECURITY_PROTOCOL is SSL without KAFKA_CLIENT_CERT_FILE: production needs a client certificate "
             "or SASL_SSL"),
            ("redis", scheme["redis"] == "rediss", f"REDIS_URL is {scheme['redis']}://: production needs rediss://"),
            ("redis", self.redis_password.get_secret_value(), "REDIS_PASSWORD is empty: production needs one"),
            ("milvus", self.milvus_is_embedded or scheme["milvus"] == "https",
             f"MILVUS_URI is {scheme['milvus']}://: production needs https://"),
            ("milvus", self.milvus_is_embedded or self.milvus_token.get_secret_value(),
             "MILVUS_TOKEN is empty: production needs one"),
            ("graph", self.graph_is_embedded or self.graph_uri.startswith(NEO4J_TLS_SCHEMES),
             f"GRAPH_URI is {scheme['graph']}://: production needs neo4j+s:// or bolt+s://"),
            ("search", scheme["search"] == "https",
             f"ELASTICSEARCH_URL is {scheme['search']}://: production needs https://"),
            ("search", self.elasticsearch_api_key.get_secret_value() or self.elasticsearch_password.get_secret_value(),
             "ELASTICSEARCH_API_KEY and ELASTICSEARCH_PASSWORD are empty: production needs an API key or basic auth"),
        ]
        return [(engine, problem) for engine, secure, problem in checks if not secure]

    @property
    def kafka_uses_tls(self) -> bool:
        return self.kafka_security_protocol in {KafkaSecurityProtocol.SSL, KafkaSecurityProtocol.SASL_SSL}

    @property
    def milvus_is_embedded(self) -> bool:
        """A Milvus Lite database file, opened in-process (the embedded stack runs Milvus Lite's server instead)."""
        return "://" not in self.milvus_uri

    @property
    def graph_is_embedded(self) -> bool:
        return "://" not in self.graph_uri

    def engine_url(self, engine: str) -> str:
        """The address of `engine` (a key of ENGINE_FIELDS) as its own clients take it."""
        urls = {
            "postgres": self.postgres_dsn(with_password=False),
            "kafka": self.kafka_bootstrap_servers,
            "redis": self.redis_url,
            "milvus": self.milvus_uri,
            "graph": self.graph_uri,
            "search": self.elasticsearch_url,
            "pushgateway": self.prometheus_pushgateway_url,
            "alertmanager": self.alertmanager_url,
            "prometheus": self.prometheus_url,
        }
        return urls[engine]

    def postgres_dsn(self, *, with_password: bool = True, database: str | None = None) -> str:
        """The connection URL, to POSTGRES_DB unless another `database` (e.g. the maintenance `postgres`).

        It carries the TLS settings as libpq's `sslmode` and `sslrootcert` parameters, which asyncpg reads the same
        way: every connection of the pipeline is made from this URL, so each gets them.
        """
        password = self.postgres_password.get_secret_value()
        credentials = f"{self.postgres_user}:{password}" if password and with_password else self.postgres_user
        tls = {"sslmode": self.postgres_sslmode.value}
        if self.postgres_ssl_root_cert is not None:
            tls["sslrootcert"] = str(self.postgres_ssl_root_cert)
        return (f"postgresql://{credentials}@{self.postgres_host}:{self.postgres_port}/"
                f"{database or self.postgres_db}?{urlencode(tls)}")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            file_secret_settings,
            EmbeddedStackSource(settings_cls, init_settings, env_settings, dotenv_settings),
        )


class EmbeddedStackSource(PydanticBaseSettingsSource):
    """Connection values of the running embedded stack, read from its state file (lowest priority)."""

    def __init__(self, settings_cls: type[BaseSettings], *higher: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._higher = higher

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        explicit: dict[str, Any] = {}
        for source in reversed(self._higher):
            explicit.update({key.lower(): value for key, value in source().items()})
        data_dir = Path(explicit.get("aegis_data_dir") or ".aegis")
        state_path = data_dir / STACK_STATE_FILE
        if not state_path.is_file():
            return {}
        state = json.loads(state_path.read_text(encoding="utf-8"))
        values: dict[str, Any] = {}
        # Values are grouped per engine: an engine given explicitly (even one of its values, ENGINE_FIELDS) takes
        # nothing from the stack, so an explicit host is never paired with an embedded port, nor TLS settings with
        # an embedded engine that has no TLS.
        for engine, engine_values in state.get("settings", {}).items():
            if not explicit.keys() & (engine_values.keys() | set(ENGINE_FIELDS.get(engine, ()))):
                values.update(engine_values)
        return values


def explicit_values() -> dict[str, Any]:
    """The settings the environment or `.env` gives, by field name (not validated yet)."""
    explicit: dict[str, Any] = {}
    explicit.update(DotEnvSettingsSource(Settings)())
    explicit.update(EnvSettingsSource(Settings)())
    return explicit


def explicitly_configured_engines() -> set[str]:
    """Engines the environment or `.env` configures (even partly): the embedded stack leaves those alone."""
    explicit = explicit_values()
    return {engine for engine, fields in ENGINE_FIELDS.items() if explicit.keys() & set(fields)}


def environment_values() -> dict[str, str]:
    """The environment and `.env` as plain strings, for `${VAR}` references in the sources file."""
    values = dict(dotenv_values(".env")) if Path(".env").is_file() else {}
    values.update(os.environ)
    return {name: value for name, value in values.items() if value is not None}


def _env_name(location: tuple[int | str, ...]) -> str:
    return str(location[0]).upper() if location else "(settings)"


class SettingsError(SystemExit):
    """Raised at start when a setting is missing or wrong; the message names each variable."""


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        name = _env_name(problem["loc"])
        if problem["type"] == "missing":
            lines.append(f"  {name}: missing (set it in the environment or .env, or run `aegis-pipeline dev up`)")
        else:
            lines.append(f"  {name}: {problem['msg']}")
    return "invalid settings:\n" + "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read the full settings; on a missing or wrong value, stop with a message naming each variable."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def load_core_settings(**overrides: Any) -> CoreSettings:
    """Read the settings that need no engine connection (used by `dev up` before the engines exist)."""
    try:
        return CoreSettings(**overrides)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
