"""The graph store: one small interface, two engines.

Production runs Neo4j (the `neo4j` driver, `neo4j://` or `bolt://` URI); the embedded stack runs Ladybug (the
maintained fork of Kuzu), an in-process engine whose database is a file. Both speak Cypher; the difference that
matters is schema: Ladybug needs node and relationship tables declared with typed properties, Neo4j wants
uniqueness constraints. `ensure_node_type` / `ensure_relationship_type` hide that, so the writes above them are
the same Cypher for both.

Ladybug also types each parameter by the Python values bound to it, and a None has no type: a field that is None in
the rows of a list parameter binds as STRING, which a property of another type refuses. A writer sends a typed value
for such a property and says apart whether it is one (`sync.targets.graph.UPSERT_POLICIES`, `quality_score`).

Ladybug lets one process write a database file at a time (others may read): an embedded store waits for the
lock, bounded by `lock_timeout_seconds`, instead of failing at once.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ladybug
import neo4j
from neo4j.exceptions import ServiceUnavailable, SessionExpired, TransientError
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from aegis_pipeline.common.errors import StoreUnavailableError
from aegis_pipeline.settings import NEO4J_TLS_SCHEMES, Settings

PropertyTypes = Mapping[str, str]  # property name -> Ladybug type: STRING, INT64, DOUBLE, BOOLEAN, DATE, TIMESTAMP


class GraphStore(abc.ABC):
    """A Cypher graph. Rows come back as dicts keyed by the RETURN clause's names."""

    @abc.abstractmethod
    def ensure_node_type(self, label: str, key: str, properties: PropertyTypes) -> None:
        """Declare nodes `label` identified by `key` (idempotent)."""

    @abc.abstractmethod
    def ensure_relationship_type(self, rel_type: str, from_label: str, to_label: str) -> None:
        """Declare relationships `rel_type` from `from_label` to `to_label` nodes (idempotent)."""

    @abc.abstractmethod
    def run(self, cypher: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one Cypher statement with bound parameters; never format values into `cypher`."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def ping(self) -> None:
        self.run("RETURN 1 AS ok")

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except (ServiceUnavailable, SessionExpired, TransientError, OSError, TimeoutError) as error:
        raise StoreUnavailableError(f"graph {operation} failed: {type(error).__name__}", store="graph") from error
    except RuntimeError as error:  # Ladybug reports I/O and lock failures as RuntimeError
        if "IO exception" in str(error) or "lock" in str(error).lower():
            raise StoreUnavailableError(f"graph {operation} failed: {error}", store="graph") from error
        raise


def neo4j_driver_arguments(settings: Settings) -> tuple[str, dict[str, Any]]:
    """(URI, options) of the Neo4j driver: the login, and TLS as GRAPH_URI's scheme says (neo4j+s://, bolt+s://:
    the server's certificate checked against the system's CAs, or against NEO4J_CA_FILE)."""
    uri = settings.graph_uri
    options: dict[str, Any] = {"auth": (settings.neo4j_user, settings.neo4j_password.get_secret_value())}
    if settings.neo4j_ca_file is not None and uri.startswith(NEO4J_TLS_SCHEMES):
        # The driver takes its own CAs only with the plain scheme plus `encrypted` (it refuses them beside +s):
        # the same TLS, checked against this CA instead of the system's.
        uri = uri.replace("+s://", "://", 1)
        options.update(encrypted=True, trusted_certificates=neo4j.TrustCustomCAs(str(settings.neo4j_ca_file)))
    return uri, options


class Neo4jGraphStore(GraphStore):
    def __init__(self, settings: Settings, *, database: str | None = None) -> None:
        uri, options = neo4j_driver_arguments(settings)
        self._driver = neo4j.GraphDatabase.driver(uri, **options)
        self._database = database

    def ensure_node_type(self, label: str, key: str, properties: PropertyTypes) -> None:
        self.run(f"CREATE CONSTRAINT {label.lower()}_{key}_unique IF NOT EXISTS "
                 f"FOR (n:{label}) REQUIRE n.{key} IS UNIQUE")

    def ensure_relationship_type(self, rel_type: str, from_label: str, to_label: str) -> None:
        pass  # Neo4j relationships need no declaration

    def run(self, cypher: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with translate_errors("query"):
            records, _, _ = self._driver.execute_query(cypher, dict(parameters or {}), database_=self._database)
            return [record.data() for record in records]

    def close(self) -> None:
        self._driver.close()


def _is_lock_contention(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and "Could not set lock" in str(error)


class LadybugGraphStore(GraphStore):
    def __init__(self, path: str | Path, *, read_only: bool = False, lock_timeout_seconds: float = 30.0) -> None:
        path = Path(path)
        if read_only and not path.exists():
            raise StoreUnavailableError(f"graph database {path} does not exist", store="graph")
        path.parent.mkdir(parents=True, exist_ok=True)
        retrying = Retrying(
            retry=retry_if_exception(_is_lock_contention),
            stop=stop_after_delay(lock_timeout_seconds),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        )
        with translate_errors("open"):
            self._database = retrying(ladybug.Database, str(path), read_only=read_only)
        self._connection = ladybug.Connection(self._database)

    def ensure_node_type(self, label: str, key: str, properties: PropertyTypes) -> None:
        columns = ", ".join(f"{name} {kind}" for name, kind in properties.items())
        self.run(f"CREATE NODE TABLE IF NOT EXISTS {label}({columns}, PRIMARY KEY({key}))")
        for name, kind in properties.items():  # a table made by an older version gets the properties added since
            self.run(f"ALTER TABLE {label} ADD IF NOT EXISTS {name} {kind}")

    def ensure_relationship_type(self, rel_type: str, from_label: str, to_label: str) -> None:
        self.run(f"CREATE REL TABLE IF NOT EXISTS {rel_type}(FROM {from_label} TO {to_label})")

    def run(self, cypher: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with translate_errors("query"):
            result = self._connection.execute(cypher, dict(parameters or {}))
            columns = result.get_column_names()
            rows = []
            while result.has_next():
                rows.append(dict(zip(columns, result.get_next(), strict=True)))
            return rows

    def close(self) -> None:
        self._connection.close()
        self._database.close()


def open_graph_store(settings: Settings, *, read_only: bool = False) -> GraphStore:
    """The graph store `settings.graph_uri` names: a Neo4j server, or an embedded database file."""
    if settings.graph_is_embedded:
        return LadybugGraphStore(settings.graph_uri, read_only=read_only)
    return Neo4jGraphStore(settings)

