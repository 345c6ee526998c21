"""Milvus (a server, or Milvus Lite's server in the embedded stack): client factory and error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from common.errors import StoreUnavailableError


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except (MilvusException, OSError, TimeoutError) as error:
        raise StoreUnavailableError(f"milvus {operation} failed: {type(error).__name__}", store="milvus") from error


def create_client(uri: str, *, timeout_seconds: float = 10.0) -> MilvusClient:
    """A client with a connection of its own, closed with the client.

    pymilvus otherwise shares one connection per URI in the process and, when reusing one idle for over 30 s,
    probes and "recovers" it; under load that recovery fails (seen here) although the server is fine. Our
    clients live for one task, so a dedicated connection is both simpler and never stale.
    """
    with translate_errors("connect"):
        return MilvusClient(uri=uri, timeout=timeout_seconds, dedicated=True)


def ping(uri: str) -> None:
    client = create_client(uri, timeout_seconds=5.0)
    try:
        with translate_errors("ping"):
            client.list_collections()
    finally:
        client.close()
