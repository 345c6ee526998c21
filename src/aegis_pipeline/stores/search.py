"""Elasticsearch: client factory and error translation. Standard API only, so it runs on any 8.x/9.x cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import Elasticsearch

from aegis_pipeline.common.errors import StoreUnavailableError
from aegis_pipeline.settings import Settings


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except (TransportConnectionError, ConnectionTimeout, OSError) as error:
        raise StoreUnavailableError(
            f"elasticsearch {operation} failed: {type(error).__name__}", store="elasticsearch"
        ) from error


def client_options(settings: Settings) -> dict[str, Any]:
    """The credentials (an API key, or basic auth) and the CA of an https:// cluster: the security every
    Elasticsearch client of the pipeline is built with. Without a CA file, https:// checks against the system's
    CAs."""
    options: dict[str, Any] = {}
    if settings.elasticsearch_api_key.get_secret_value():
        options["api_key"] = settings.elasticsearch_api_key.get_secret_value()
    elif settings.elasticsearch_password.get_secret_value():
        options["basic_auth"] = (settings.elasticsearch_username, settings.elasticsearch_password.get_secret_value())
    if settings.elasticsearch_ca_file is not None and settings.elasticsearch_url.startswith("https://"):
        options["ca_certs"] = str(settings.elasticsearch_ca_file)
    return options


def create_client(settings: Settings, *, timeout_seconds: float = 10.0) -> Elasticsearch:
    return Elasticsearch(settings.elasticsearch_url, **client_options(settings), request_timeout=timeout_seconds,
                         retry_on_timeout=False, max_retries=0)


def ping(settings: Settings) -> None:
    client = create_client(settings, timeout_seconds=5.0)
    try:
        with translate_errors("ping"):
            client.info()
    finally:
        client.close()
