"""The operations server listens where the deployment says (METRICS_HOST, and HEALTH_HOST when it differs), never on
every interface by default: a real server on loopback addresses (127.0.0.0/8 is all loopback on Linux)."""

from __future__ import annotations

import httpx
import pytest

from aegis_pipeline.common.ops_server import OpsServer, ops_hosts
from aegis_pipeline.settings import Settings


def test_the_hosts_are_metrics_host_then_health_host_once_each(stack: Settings) -> None:
    def hosts(**values: str | None) -> tuple[str, ...]:
        return ops_hosts(stack.model_copy(update=values))

    assert Settings.model_fields["metrics_host"].default == "127.0.0.1"  # loopback unless a deployment says
    assert hosts(metrics_host="127.0.0.1", health_host=None) == ("127.0.0.1",)
    assert hosts(metrics_host="10.1.2.3", health_host="10.1.2.3") == ("10.1.2.3",)
    assert hosts(metrics_host="10.1.2.3", health_host="0.0.0.0") == ("10.1.2.3", "0.0.0.0")


@pytest.mark.parametrize(("hosts", "answering", "refusing"), [
    (("127.0.0.1",), ["127.0.0.1"], ["127.0.0.2"]),
    (("127.0.0.1", "127.0.0.2"), ["127.0.0.1", "127.0.0.2"], ["127.0.0.3"]),
])
async def test_the_server_answers_only_on_its_hosts(hosts: tuple[str, ...], answering: list[str],
                                                    refusing: list[str]) -> None:
    server = OpsServer(0, lambda: None, hosts=hosts)
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for host in answering:
                assert (await client.get(f"http://{host}:{server.port}/health")).json() == {"status": "alive"}
            for host in refusing:
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"http://{host}:{server.port}/health")
    finally:
        await server.stop()
