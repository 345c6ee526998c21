"""Milvus (a server, or Milvus Lite's server in the embedded stack): client factory and error translation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from aegis_pipeline.common.errors import StoreUnavailableError
from aegis_pipeline.settings import Settings


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except (MilvusException, OSError, TimeoutError) as error:
        raise StoreUnavailableError(f"milvus {operation} failed: {type(error).__name__}", store="milvus") from error


def client_options(settings: Settings) -> dict[str, Any]:
    """MILVUS_URI and the security every Milvus client of the pipeline is built with: the token, and for an
    https:// server the CA that checks its certificate. Milvus Lite (a file path) takes neither."""
    options: dict[str, Any] = {"uri": settings.milvus_uri}
    if not settings.milvus_is_embedded and settings.milvus_token.get_secret_value():
        options["token"] = settings.milvus_token.get_secret_value()
    if settings.milvus_ca_file is not None and settings.milvus_uri.startswith("https://"):  # pymilvus: TLS
        options["server_pem_path"] = str(settings.milvus_ca_file)
    return options


def create_client(settings: Settings, *, timeout_seconds: float = 10.0) -> MilvusClient:
    """A client with a connection of its own, closed with the client.

    pymilvus otherwise shares one connection per URI in the process and, when reusing one idle for over 30 s,
    probes and "recovers" it; under load that recovery fails (seen here) although the server is fine. Our
    clients live for one task, so a dedicated connection is both simpler and never stale.
    """
    with translate_errors("connect"):
        for attempt in Retrying(retry=retry_if_exception_type(MilvusException), stop=stop_after_attempt(2),
                                wait=wait_fixed(0.5), reraise=True):
            with attempt:  # a connection the server just closed (GOAWAY) fails once; a new one works
                return MilvusClient(**client_options(settings), timeout=timeout_seconds, dedicated=True,
                                    grpc_options=GRPC_OPTIONS)
    raise AssertionError("unreachable: Retrying re-raises the last error")


# pymilvus's channel pings every 10 s even when idle; a server that allows fewer pings (Milvus Lite's gRPC
# default: one per 5 min without calls) answers GOAWAY "too_many_pings" and the next call on it fails (seen in a
# test run). gRPC also shares subchannels across channels of a process, so a "dedicated" client could inherit
# such a connection: a local pool keeps each client's connection its own.
GRPC_OPTIONS = {"grpc.keepalive_permit_without_calls": False, "grpc.use_local_subchannel_pool": 1}


def ping(settings: Settings) -> None:
    client = create_client(settings, timeout_seconds=5.0)
    try:
        with translate_errors("ping"):
            client.list_collections()
    finally:
        client.close()
