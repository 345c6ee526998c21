"""The collectors' egress policy and deadlines (issue 26) on the real HTTP client: local HTTP servers stand in for
the remote sources, `SourceHttpClient` fetches through the shared client `egress.new_http_client` builds
(`EgressTransport`), and names that must resolve elsewhere (a partner host, a private or metadata address) go
through a resolver injected into the policy. Most tests need no engine (a no-op rate limiter stands in for the
Redis one); the last ones (`integration`) run whole source runs on the real stack: PostgreSQL for checkpoints and
hashes, Kafka for the raw topic, Redis for the rate limit."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from aegis_pipeline.collectors import egress
from aegis_pipeline.collectors.definitions import SourceDefinition
from aegis_pipeline.collectors.extract import RefusedResponseError
from aegis_pipeline.collectors.http import SourceHttpClient, new_breaker
from aegis_pipeline.collectors.run import collect_source, open_context
from aegis_pipeline.common.errors import EgressRefusedError, ErrorCode, SourceDeadlineError, SourceUnavailableError
from aegis_pipeline.settings import Settings

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class LocalSite:
    """A local HTTP/1.1 server (keep-alive) answering each path with its handler; `hits` lists the paths asked
    for and `headers` the request headers, in order."""

    routes: dict[str, Handler]
    hits: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def site() -> Iterator[Callable[[dict[str, Handler]], LocalSite]]:
    started: list[ThreadingHTTPServer] = []

    def start(routes: dict[str, Handler]) -> LocalSite:
        local = LocalSite(routes)

        class Answer(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                local.hits.append(path)
                local.headers.append(dict(self.headers.items()))
                local.routes.get(path, not_found)(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        local.server = server
        started.append(server)
        return local

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def send(handler: BaseHTTPRequestHandler, body: bytes | str, *, status: int = 200, **headers: str) -> None:
    data = body.encode("utf-8") if isinstance(body, str) else body
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(data)


def not_found(handler: BaseHTTPRequestHandler) -> None:
    send(handler, "not found", status=404)


def redirect_to(location: str) -> Handler:
    return lambda handler: send(handler, "", status=302, Location=location)


def trickle(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then one byte every 0.2 s of a body that never completes (until the client hangs up)."""
    handler.send_response(200)
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    try:
        for _ in range(500):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.2)
    except OSError:
        pass


class NoRateLimit:
    async def acquire(self, source: str, requests_per_second: float) -> None:
        return None


def source_at(url: str, **keys: Any) -> SourceDefinition:
    return SourceDefinition.model_validate({
        "name": "egress_test", "kind": "json_api", "url": url, "records_path": "items", "id_field": "id",
        "fields": {"title": {"path": "t"}, "content": {"path": "c"}, "issuing_organization": {"path": "o"}},
        "max_retries": 0, **keys,
    })


def resolver(names: dict[str, list[str]]) -> egress.Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host in names:
            return names[host]
        return await egress.system_resolver(host, port)
    return resolve


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a socket is opened to by httpcore's AnyIO backend (the one EgressTransport connects with)."""
    opened: list[str] = []
    original = httpcore.AnyIOBackend.connect_tcp

    async def spy(self: httpcore.AnyIOBackend, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        opened.append(host)
        return await original(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", spy)
    return opened


async def fetch(source: SourceDefinition, url: str | None = None, *, names: dict[str, list[str]] | None = None,
                max_response_bytes: int = 10_000_000, deadline_at: float | None = None,
                http: Any = None) -> str:
    policy = egress.policy_for(source, resolver=resolver(names or {}))
    breaker = new_breaker(source.name, failure_threshold=100, recovery_seconds=1)
    client_http = http or egress.new_http_client(user_agent="egress-test", max_connections=4)
    try:
        client = SourceHttpClient(source, client_http, NoRateLimit(), breaker,  # type: ignore[arg-type]
                                  max_response_bytes=max_response_bytes, policy=policy, deadline_at=deadline_at)
        # A guard against a broken deadline hanging the test on the trickling server (it trickles for 100 s).
        return await asyncio.wait_for(client.fetch_text(url or source.url, {}), timeout=5)
    finally:
        if http is None:
            await client_http.aclose()


# --- the policy, as a table -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "kind"), [
    ("8.8.8.8", "public"), ("2001:4860:4860::8888", "public"),
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("100.64.0.1", "private"), ("fd12::1", "private"),
    ("169.254.10.10", "link_local"), ("fe80::1", "link_local"), ("224.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("240.0.0.1", "reserved"), ("192.0.2.1", "reserved"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"), ("100.100.100.200", "metadata"),
    ("::ffff:169.254.169.254", "metadata"), ("::ffff:10.0.0.1", "private"), ("64:ff9b::a9fe:a9fe", "metadata"),
], ids=str)
def test_address_kinds(address: str, kind: str) -> None:
    assert egress.address_kind(address) == kind


@pytest.mark.parametrize(("url", "reason"), [
    ("https://api.example.kr/list?page=2", None),
    ("https://API.example.kr:443/other", None),
    ("https://api.example.kr:8443/list", "origin"),
    ("https://www.example.kr/list", "origin"),
    ("http://api.example.kr/list", "scheme"),  # no step down from https
    ("ftp://api.example.kr/list", "scheme"),
    ("https://partner.example.kr/anything", None),
    ("https://cdn.example.kr:8443/file", None),
    ("https://cdn.example.kr/file", "origin"),  # listed with a port: that port only
    ("https://169.254.169.254/latest/meta-data/", "metadata"),
    ("https://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("https://[fd00:ec2::254]/latest/", "metadata"),
], ids=str)
def test_origin_rule(url: str, reason: str | None) -> None:
    source = source_at("https://api.example.kr/list",
                       allowed_redirect_hosts=["partner.example.kr", "cdn.example.kr:8443"])
    if reason is None:
        egress.check_url(source, url)
        return
    with pytest.raises(EgressRefusedError) as refused:
        egress.check_url(source, url)
    assert refused.value.reason == reason and refused.value.code is ErrorCode.DATA_SOURCE_UNAVAILABLE


def test_allowed_redirect_hosts_are_validated() -> None:
    with pytest.raises(ValueError, match="allowed_redirect_hosts"):
        source_at("https://api.example.kr/", allowed_redirect_hosts=["https://partner.example.kr/"])


async def test_a_public_source_may_not_reach_a_private_name_and_a_private_one_may() -> None:
    names = {"public.example": ["93.184.216.34"], "internal.example": ["10.0.0.5"],
             "intranet.example": ["10.0.0.9"], "mixed.example": ["93.184.216.35", "192.168.0.3"]}
    public = egress.policy_for(source_at("http://public.example/"), resolver=resolver(names))
    for host in ("internal.example", "mixed.example", "127.0.0.1"):
        with pytest.raises(EgressRefusedError) as refused:
            await public.resolve(host, 80)
        assert refused.value.reason == "address"
    private = egress.policy_for(source_at("http://intranet.example/"), resolver=resolver(names))
    assert await private.resolve("internal.example", 80) == ["10.0.0.5"]
    with pytest.raises(EgressRefusedError, match="loopback"):
        await private.resolve("127.0.0.1", 80)  # private is not loopback


# --- redirects, on the real client -----------------------------------------------------------------------------


async def test_a_redirect_to_another_port_is_refused(site: Callable[..., LocalSite]) -> None:
    other = site({"/secret": lambda handler: send(handler, '{"items": []}')})
    source_site = site({"/list": redirect_to(f"{other.url}/secret")})
    with pytest.raises(EgressRefusedError) as refused:
        await fetch(source_at(f"{source_site.url}/list"))
    assert refused.value.reason == "origin" and str(other.port) in str(refused.value)
    assert other.hits == []


async def test_a_redirect_to_the_metadata_service_is_refused_without_connecting(
    site: Callable[..., LocalSite], connects: list[str]
) -> None:
    by_address = site({"/list": redirect_to("http://169.254.169.254/latest/meta-data/iam/security-credentials/")})
    with pytest.raises(EgressRefusedError) as refused:
        await fetch(source_at(f"{by_address.url}/list"))
    assert refused.value.reason == "metadata"
    # By a name the source even allows, which resolves to the metadata address: refused when resolving.
    by_name = site({"/list": redirect_to("http://imds.example/latest/meta-data/")})
    with pytest.raises(EgressRefusedError) as refused:
        await fetch(source_at(f"{by_name.url}/list", allowed_redirect_hosts=["imds.example"]),
                    names={"imds.example": ["169.254.169.254"]})
    assert refused.value.reason == "metadata"
    assert connects == ["127.0.0.1", "127.0.0.1"]  # the two sources; never 169.254.169.254


async def test_a_redirect_to_an_allowed_host_is_followed_without_the_credentials(
    site: Callable[..., LocalSite],
) -> None:
    partner = site({"/page": lambda handler: send(handler, '{"items": [{"id": "1"}]}')})
    source_site = site({"/list": redirect_to(f"http://partner.example:{partner.port}/page")})
    source = source_at(f"{source_site.url}/list", allowed_redirect_hosts=["partner.example"],
                       headers={"Authorization": "Infuser secret-key", "Accept": "application/json"})
    text = await fetch(source, names={"partner.example": ["127.0.0.1"]})
    assert text == '{"items": [{"id": "1"}]}'
    assert source_site.headers[0]["Authorization"] == "Infuser secret-key"
    assert "Authorization" not in partner.headers[0] and partner.headers[0]["Accept"] == "application/json"
    assert partner.headers[0]["Host"] == f"partner.example:{partner.port}"


async def test_redirects_stop_at_max_redirects(site: Callable[..., LocalSite]) -> None:
    loop = site({})
    loop.routes["/list"] = redirect_to("/list")
    with pytest.raises(EgressRefusedError) as refused:
        await fetch(source_at(f"{loop.url}/list", max_redirects=2))
    assert refused.value.reason == "redirects" and loop.hits == ["/list"] * 3


async def test_a_private_name_is_refused_for_a_public_source_without_connecting(connects: list[str]) -> None:
    source = source_at("http://public.example/list", allowed_redirect_hosts=["internal.example"])
    with pytest.raises(EgressRefusedError) as refused:
        await fetch(source, "http://internal.example/list?page=2",
                    names={"public.example": ["93.184.216.34"], "internal.example": ["10.0.0.5"]})
    assert refused.value.reason == "address" and "private" in str(refused.value)
    assert connects == []


async def test_a_pooled_connection_is_checked_again_for_another_source(
    site: Callable[..., LocalSite], connects: list[str]
) -> None:
    shared = site({"/list": lambda handler: send(handler, '{"items": []}')})
    names = {"shared.example": ["127.0.0.1"], "public.example": ["93.184.216.34"]}
    http = egress.new_http_client(user_agent="egress-test", max_connections=4)
    try:
        # A source of its own on that host opens the connection, which the pool keeps alive ...
        assert await fetch(source_at(f"http://shared.example:{shared.port}/list"), names=names, http=http)
        # ... and a public source listing the host may not read a loopback address through it.
        public = source_at("http://public.example/", allowed_redirect_hosts=["shared.example"])
        with pytest.raises(EgressRefusedError) as refused:
            await fetch(public, f"http://shared.example:{shared.port}/list", names=names, http=http)
    finally:
        await http.aclose()
    assert refused.value.reason == "address"
    assert connects == ["127.0.0.1"]  # one connection: the refusal came from the peer check


# --- deadlines and size ------------------------------------------------------------------------------------------


async def test_a_trickling_server_is_cut_at_the_request_deadline(site: Callable[..., LocalSite]) -> None:
    slow = site({"/list": trickle})
    source = source_at(f"{slow.url}/list", timeout_seconds=5, request_deadline_seconds=1)
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match="request deadline of 1 s"):
        await fetch(source)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.5, elapsed  # each read came well within the 5 s read timeout


async def test_the_run_deadline_caps_requests_and_the_waits_between_retries(site: Callable[..., LocalSite]) -> None:
    slow = site({"/list": trickle})
    source = source_at(f"{slow.url}/list", timeout_seconds=5, request_deadline_seconds=60, max_retries=3)
    started = time.monotonic()
    with pytest.raises(SourceDeadlineError) as stopped:
        await fetch(source, deadline_at=started + 1.0)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.5, elapsed
    assert stopped.value.code is ErrorCode.DATA_SOURCE_UNAVAILABLE and slow.hits == ["/list"]


async def test_a_source_asking_to_wait_past_the_run_deadline_is_not_waited_for(
    site: Callable[..., LocalSite],
) -> None:
    busy = site({"/list": lambda handler: send(handler, "slow down", status=429, Retry_After="30")})
    started = time.monotonic()
    with pytest.raises(SourceDeadlineError):
        await fetch(source_at(f"{busy.url}/list", max_retries=3), deadline_at=started + 1.0)
    assert time.monotonic() - started < 1.5 and busy.hits == ["/list"]


async def test_a_response_over_the_sources_own_size_limit_is_refused(site: Callable[..., LocalSite]) -> None:
    big = site({"/list": lambda handler: send(handler, '{"items": "' + "x" * 5_000 + '"}')})
    with pytest.raises(RefusedResponseError) as refused:
        await fetch(source_at(f"{big.url}/list", max_response_bytes=1_000), max_response_bytes=10_000_000)
    assert refused.value.code is ErrorCode.INVALID_DATA_FORMAT and "1000 bytes" in str(refused.value)
    assert await fetch(source_at(f"{big.url}/list"), max_response_bytes=10_000_000)  # the global limit: read


def test_the_policy_module_connects_only_through_the_checked_backend() -> None:
    """EgressTransport swaps httpx's pool for one with the checking backend: it must really be the one used."""
    transport = egress.EgressTransport()
    assert isinstance(transport._pool._network_backend, egress._CheckedBackend)
    asyncio.run(transport.aclose())


# --- whole source runs, on the real stack ------------------------------------------------------------------------

RECORDS = [
    {"id": f"egress-{number}", "t": f"2026년 창업 지원사업 공고 {number}",
     "c": "중소기업을 위한 지원사업 안내입니다. 신청 기간 내 접수 바랍니다.", "o": "중소벤처기업부"}
    for number in (1, 2)
]


def run_source_at(url: str, **keys: Any) -> SourceDefinition:
    """A source of its own name (its checkpoint and hashes are this test's) at `url`."""
    return source_at(url, name=f"egress_run_{uuid.uuid4().hex[:8]}", rate_limit={"requests_per_second": 50},
                     **keys)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def raw_messages(settings: Settings, expected: int) -> list[Any]:
    """The raw topic's messages: at least `expected` (waiting up to 10 s), and whatever else comes within 1 s."""
    consumer = AIOKafkaConsumer(settings.kafka_topic_raw_policies, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    messages: list[Any] = []
    try:
        give_up = time.monotonic() + 10
        while len(messages) < expected and time.monotonic() < give_up:
            batch = await consumer.getmany(timeout_ms=500)
            messages.extend(message for partition in batch.values() for message in partition)
        extra = await consumer.getmany(timeout_ms=1000)
        messages.extend(message for partition in extra.values() for message in partition)
    finally:
        await consumer.stop()
    return messages


@pytest.fixture
async def run_settings(own_topics: Callable[..., Awaitable[Settings]]) -> Settings:
    return await own_topics(partitions=1)


@pytest.mark.integration
async def test_a_redirect_off_the_source_is_a_source_failure_with_its_code_and_metric(
    site: Callable[..., LocalSite], run_settings: Settings
) -> None:
    elsewhere = site({"/items": lambda handler: send(handler, json.dumps({"items": RECORDS}))})
    origin = site({"/list": redirect_to(f"{elsewhere.url}/items")})
    source = run_source_at(f"{origin.url}/list")
    labels = {"source": source.name, "reason": "origin"}
    async with open_context(run_settings) as context:
        result = await collect_source(source, context)
    assert (result.status, result.error_code, result.published, result.failed) == ("failed", "DP_1001", 0, 1)
    assert "refused" in (result.error or "") and elsewhere.hits == []
    assert sample("collector_egress_refused_total", labels) == 1
    assert await raw_messages(run_settings, 0) == []


@pytest.mark.integration
async def test_a_run_past_its_deadline_stops_and_keeps_what_it_published(
    site: Callable[..., LocalSite], run_settings: Settings
) -> None:
    def pages(handler: BaseHTTPRequestHandler) -> None:
        if "pageNo=1" in handler.path:
            send(handler, json.dumps({"items": RECORDS}), Content_Type="application/json")
        else:
            trickle(handler)  # the second page never completes

    listing = site({"/list": pages})
    source = run_source_at(f"{listing.url}/list", pagination={"type": "page_number", "page_param": "pageNo",
                                                           "page_size": 2},
                       timeout_seconds=5, request_deadline_seconds=30, max_retries=3, run_deadline_seconds=2)
    started = time.monotonic()
    async with open_context(run_settings) as context:
        result = await asyncio.wait_for(collect_source(source, context), timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 1.0, elapsed  # the deadline, plus opening the context and the first page
    assert (result.status, result.error_code, result.published) == ("failed", ErrorCode.DATA_SOURCE_UNAVAILABLE, 2)
    assert "run deadline of 2 s" in (result.error or "")
    assert sample("collector_deadline_exceeded_total", {"source": source.name, "scope": "run"}) == 1
    published = await raw_messages(run_settings, 2)
    assert sorted(json.loads(message.value)["collection_metadata"]["external_id"] for message in published) == [
        "egress-1", "egress-2"]
    assert listing.hits == ["/list", "/list"]


@pytest.mark.integration
async def test_work_that_does_not_stop_by_itself_is_cancelled_a_grace_after_the_run_deadline(
    site: Callable[..., LocalSite], run_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aegis_pipeline.collectors import run

    monkeypatch.setattr(run, "RUN_DEADLINE_GRACE_SECONDS", 0.5)
    listing = site({"/list": lambda handler: send(handler, json.dumps({"items": RECORDS}))})
    source = run_source_at(f"{listing.url}/list", run_deadline_seconds=1)
    started = time.monotonic()
    async with open_context(run_settings) as context:
        async def stalled(*args: Any, **kwargs: Any) -> None:  # a store that never answers
            await asyncio.sleep(60)

        monkeypatch.setattr(context.state, "mark_listed", stalled)
        result = await asyncio.wait_for(collect_source(source, context), timeout=10)
    assert time.monotonic() - started < 1 + 0.5 + 1.0
    assert (result.status, result.error_code) == ("failed", ErrorCode.DATA_SOURCE_UNAVAILABLE)
    assert "run deadline of 1 s" in (result.error or "")
