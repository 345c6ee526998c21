"""Elasticsearch: client factory and error translation. Standard API only, so it runs on any 8.x/9.x cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import Elasticsearch

from aegis_pipeline.common.errors import StoreUnavailableError


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except (TransportConnectionError, ConnectionTimeout, OSError) as error:
        raise StoreUnavailableError(
            f"elasticsearch {operation} failed: {type(error).__name__}", store="elasticsearch"
        ) from error


def create_client(url: str, *, timeout_seconds: float = 10.0) -> Elasticsearch:
    return Elasticsearch(url, request_timeout=timeout_seconds, retry_on_timeout=False, max_retries=0)


def ping(url: str) -> None:
    client = create_client(url, timeout_seconds=5.0)
    try:
        with translate_errors("ping"):
            client.info()
    finally:
        client.close()
