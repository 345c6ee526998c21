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
from typing import Any, Self

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

STACK_STATE_FILE = "stack.json"

# Which connection fields belong to which engine (names as in `dev status --json`).
ENGINE_FIELDS: dict[str, tuple[str, ...]] = {
    "postgres": ("postgres_host", "postgres_port", "postgres_user", "postgres_password", "postgres_db"),
    "kafka": ("kafka_bootstrap_servers", "kafka_enable_idempotence"),
    "redis": ("redis_url",),
    "milvus": ("milvus_uri",),
    "graph": ("graph_uri",),
    "search": ("elasticsearch_url",),
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
    quality_score_threshold: float = Field(default=0.7, ge=0, le=1)

    metrics_port: int = Field(default=9090, ge=0, le=65535)  # 0: any free port (tests)
    # Hot path: records per consumer batch, and how long a stored policy stays in the Redis cache (design §6.3).
    hot_path_batch_size: int = Field(default=500, ge=1, le=10_000)
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
    # re-creates the topics and announces again, through the outbox, every policy changed within the horizon.
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

    kafka_bootstrap_servers: str = Field(pattern=r"^[^\s,:]+:\d+(,[^\s,:]+:\d+)*$")
    # The embedded broker (Tansu) cannot InitProducerId, so the stack turns this off; real Kafka keeps it on.
    kafka_enable_idempotence: bool = True

    redis_url: str = Field(pattern=r"^(redis|rediss|unix)://")
    milvus_uri: str = Field(min_length=1)
    # neo4j://host:7687 or bolt://host:7687 for a Neo4j server, or a filesystem path for the embedded engine.
    graph_uri: str = Field(min_length=1)
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr = SecretStr("")
    elasticsearch_url: str = Field(pattern=r"^https?://")

    @field_validator("graph_uri")
    @classmethod
    def _graph_uri_is_server_or_path(cls, value: str) -> str:
        if "://" in value and not value.startswith(("neo4j://", "neo4j+s://", "bolt://", "bolt+s://")):
            raise ValueError("must be a neo4j:// or bolt:// URI, or a filesystem path for the embedded engine")
        return value

    @model_validator(mode="after")
    def _no_default_passwords_in_production(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            weak = {"", "postgres", "password", "neo4j", "changeme"}
            for name in ("postgres_password", "neo4j_password"):
                if getattr(self, name).get_secret_value() in weak:
                    raise ValueError(f"{name.upper()} must be set to a real secret in production")
        return self

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
        """The connection URL, to POSTGRES_DB unless another `database` (e.g. the maintenance `postgres`)."""
        password = self.postgres_password.get_secret_value()
        credentials = f"{self.postgres_user}:{password}" if password and with_password else self.postgres_user
        return (f"postgresql://{credentials}@{self.postgres_host}:{self.postgres_port}/"
                f"{database or self.postgres_db}")

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
        # Values are grouped per engine: an engine given explicitly (even one of its values) takes nothing
        # from the stack, so an explicit host is never paired with an embedded port.
        for engine_values in state.get("settings", {}).values():
            if not explicit.keys() & engine_values.keys():
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
