"""Where a collector may connect for a source: the egress policy (issue 26).

Two rules, both raising `EgressRefusedError` (DP_1001, not retriable, `reason` one of `REFUSAL_REASONS`):

1. **Origin** (`EgressPolicy.check_url`, by name, before anything is sent): a URL fetched for a source (its own, a
   next-page link, every redirect hop) must be on the source's own scheme, host and port, or on a host its
   `allowed_redirect_hosts` lists (`host`: any port, `host:port`: that port). Only http and https, and never from
   https down to http. A cloud metadata name (`metadata.google.internal`, ...) or address is refused whatever the
   lists say.
2. **Address** (`EgressPolicy.resolve`, when connecting): the host is resolved once and every address it resolves
   to is classified (`address_kind`). A `public` address is allowed; `metadata` never is; any other kind
   (`loopback`, `private`, `link_local`, `multicast`, `reserved`, `unspecified`) only when the source's own URL
   resolves into that same kind (the local stand-ins and the tests run on 127.0.0.1). A name resolving to several
   addresses is refused when any of them is (a name half inside the private network is a mistake or an attack).

No DNS-rebinding gap: the address checked is the address connected to. `EgressTransport`, an
`httpx.AsyncHTTPTransport` whose connection pool connects through a network backend that resolves the host with
the active policy (`policy.resolve`), refuses before any socket is opened, and connects to the checked addresses
only (TLS still verifies the certificate against the host *name*, as httpcore passes the name as SNI). The
policy in force is the one `applying(policy)` set around the request (a context variable: httpcore connects in
the requesting task); without one only public addresses are allowed. Why a network backend rather than an event
hook on the response: a hook runs after the connection was made and the request sent, so a metadata service
would already have been asked; resolving ourselves and substituting the IP in the URL would break TLS pooling
(httpcore pools by origin: one TLS session would serve every name on an IP). A connection kept alive by the pool
may be reused by another source's request to the same host and port; `check_peer` checks the address the
response actually came from, so the source's own rule holds for a reused connection too.

For boards (Scrapy/aiohttp): `await policy.resolve(host, port)` is the resolver to plug in (an aiohttp
`AbstractResolver` returning exactly those addresses), and `policy.check_url(url)` the check for each request
and redirect. Redirects are followed by the caller (`collectors.http`), each hop checked, at most
`max_redirects`.

Pure policy except `system_resolver` (the event loop's getaddrinfo) and the transport; a resolver can be injected
(`Resolver`: host, port -> IP address strings) for tests. Imports: httpx, httpcore, `collectors.definitions`,
`common.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from aegis_pipeline.collectors.definitions import SourceDefinition
from aegis_pipeline.common.errors import EgressRefusedError

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The `reason` of an EgressRefusedError (and the metric label): a fixed set.
REFUSAL_REASONS = ("origin", "scheme", "address", "metadata", "redirects")
DEFAULT_PORTS = {"http": 80, "https": 443}

# Cloud instance metadata and similar host-local control endpoints (AWS IMDS and ECS/EKS agents, GCP, Azure,
# Alibaba, Oracle): refused whatever the source's own address is.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(address) for address in (
    "169.254.169.254", "169.254.170.2", "169.254.170.23", "fd00:ec2::254", "fd00:ec2::23",
    "100.100.100.200", "168.63.129.16", "192.0.0.192",
))
METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
    "metadata.azure.internal",
})
_PRIVATE_NETWORKS = tuple(ipaddress.ip_network(network) for network in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7",
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_kind(address: str | IPAddress) -> str:
    """`public`, `metadata`, `unspecified`, `loopback`, `link_local`, `multicast`, `reserved` or `private`. An IPv4
    address inside IPv6 (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4) is classified as that IPv4 address.
    `reserved` is every other range not globally routable (documentation, benchmarking, 240/4, broadcast)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and ip not in METADATA_ADDRESSES:
            return address_kind(embedded)
    if ip in METADATA_ADDRESSES:
        return "metadata"
    for kind, matches in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                          ("link_local", ip.is_link_local), ("multicast", ip.is_multicast),
                          ("reserved", ip.is_reserved)):
        if matches:
            return kind
    if any(ip.version == network.version and ip in network for network in _PRIVATE_NETWORKS):
        return "private"
    return "public" if ip.is_global else "reserved"


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the event loop's getaddrinfo, TCP), in the order it gives them."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 zone id (fe80::1%eth0) is not part of the address
        if address not in addresses:
            addresses.append(address)
    return addresses


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _parse_allowed(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` -> (host, port or None)."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    host, colon, port = entry.partition(":")
    return host, int(port) if colon else None


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str | httpx.URL) -> Origin:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        scheme = parsed.scheme.lower()
        return cls(scheme, parsed.host.lower().rstrip("."), parsed.port or DEFAULT_PORTS.get(scheme, 0))

    def __str__(self) -> str:  # safe to log: no path, no query (a key may be in the query)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass
class EgressPolicy:
    """What one source may reach. Make it with `policy_for(source)`; one per source run (it caches the kinds of
    address the source's own host resolves to)."""

    source: str
    origin: Origin
    allowed_hosts: tuple[tuple[str, int | None], ...] = ()
    max_redirects: int = 5
    resolver: Resolver = system_resolver
    _own_kinds: set[str] | None = field(default=None, repr=False)

    def refuse(self, message: str, reason: str, target: Origin | str) -> EgressRefusedError:
        return EgressRefusedError(f"{self.source}: {message}", reason=reason, source=self.source, target=str(target))

    def check_url(self, url: str | httpx.URL) -> None:
        """Raise `EgressRefusedError` unless `url` may be fetched for this source by the origin rule (own scheme,
        host and port, or an allowed host; http(s) only, no downgrade to http; no metadata name or address).
        Addresses are checked when connecting (`resolve`)."""
        try:
            target = Origin.of(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise self.refuse("URL refused: it cannot be parsed", "origin", "(unparsable)") from None
        literal = _literal(target.host)
        if target.host in METADATA_NAMES or (literal is not None and address_kind(literal) == "metadata"):
            raise self.refuse(f"{target} refused: a cloud metadata endpoint", "metadata", target)
        if target.scheme not in DEFAULT_PORTS or not target.host:
            raise self.refuse(f"{target} refused: only http and https URLs are fetched", "scheme", target)
        if self.origin.scheme == "https" and target.scheme == "http":
            raise self.refuse(f"{target} refused: the source is https, no step down to http", "scheme", target)
        if (target.host, target.port) == (self.origin.host, self.origin.port):
            return
        for host, port in self.allowed_hosts:
            if host == target.host and port in (None, target.port):
                return
        raise self.refuse(f"{target} refused: not the source's own host and port ({self.origin}) nor in its "
                          "allowed_redirect_hosts", "origin", target)

    async def own_kinds(self) -> set[str]:
        """The kinds of address the source's own host resolves to (resolved once; {"public"} when it does not
        resolve: then nothing but public addresses is allowed)."""
        if self._own_kinds is None:
            literal = _literal(self.origin.host)
            addresses: list[str] = []
            try:
                if literal is not None:
                    addresses = [str(literal)]
                elif self.origin.host:
                    addresses = await self.resolver(self.origin.host, self.origin.port)
            except OSError:
                addresses = []
            self._own_kinds = {address_kind(address) for address in addresses} or {"public"}
        return self._own_kinds

    async def check_address(self, address: str, target: Origin | str = "") -> None:
        """Raise `EgressRefusedError` unless this source may connect to `address` (an IP address string)."""
        kind = address_kind(address)
        if kind == "public":
            return
        where = target or address
        if kind == "metadata":
            raise self.refuse(f"{where} refused: resolves to a cloud metadata address", "metadata", where)
        if kind not in await self.own_kinds():
            raise self.refuse(f"{where} refused: resolves to a {kind.replace('_', '-')} address and the source's "
                              f"own host does not", "address", where)

    async def resolve(self, host: str, port: int) -> list[str]:
        """Resolve `host` once and return its addresses, every one allowed for this source; raise
        `EgressRefusedError` when any is not, `OSError` (socket.gaierror) when it does not resolve. Connect to
        these addresses and to nothing else."""
        host = host.lower().rstrip(".")
        target = Origin(self.origin.scheme, host, port)
        if host in METADATA_NAMES:
            raise self.refuse(f"{target} refused: a cloud metadata endpoint", "metadata", target)
        literal = _literal(host)
        addresses = [str(literal)] if literal is not None else await self.resolver(host, port)
        if not addresses:
            raise socket.gaierror(f"{host} resolves to no address")
        for address in addresses:
            await self.check_address(address, target)
        return addresses

    async def check_peer(self, response: httpx.Response) -> None:
        """Check the address `response` came from (a pooled connection may have been opened for another source);
        a response without a network stream (a mock transport) is not checked."""
        stream = response.extensions.get("network_stream")
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        if peer:
            await self.check_address(str(peer[0]).split("%", 1)[0], Origin.of(response.url))


def policy_for(source: SourceDefinition, *, resolver: Resolver | None = None) -> EgressPolicy:
    """The egress policy of `source` (its URL, `allowed_redirect_hosts`, `max_redirects`); `resolver` defaults to
    `system_resolver`."""
    return EgressPolicy(
        source=source.name, origin=Origin.of(source.url),
        allowed_hosts=tuple(_parse_allowed(entry) for entry in source.allowed_redirect_hosts),
        max_redirects=source.max_redirects, resolver=resolver or system_resolver,
    )


def check_url(source: SourceDefinition, url: str | httpx.URL) -> None:
    """`policy_for(source).check_url(url)`: the origin rule alone (no resolution)."""
    policy_for(source).check_url(url)


def same_origin(first: str | httpx.URL, second: str | httpx.URL) -> bool:
    return Origin.of(first) == Origin.of(second)


# --- the transport: connect only to addresses the active policy resolved and allowed -------------------------

_ACTIVE_POLICY: contextvars.ContextVar[EgressPolicy | None] = contextvars.ContextVar("egress_policy", default=None)
_PUBLIC_ONLY = EgressPolicy(source="(no source)", origin=Origin("https", "", 0))


@contextlib.contextmanager
def applying(policy: EgressPolicy) -> Iterator[None]:
    """Requests made through an `EgressTransport` inside this block connect under `policy`."""
    token = _ACTIVE_POLICY.set(policy)
    try:
        yield
    finally:
        _ACTIVE_POLICY.reset(token)


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's AnyIO backend, connecting only to the addresses the active policy resolved and allowed."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 (httpcore's)
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        policy = _ACTIVE_POLICY.get() or _PUBLIC_ONLY
        try:
            async with asyncio.timeout(timeout):
                addresses = await policy.resolve(host, port)
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from error
        except OSError as error:
            raise httpcore.ConnectError(f"{host} does not resolve: {error}") from error
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                      socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("collectors do not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class EgressTransport(httpx.AsyncHTTPTransport):
    """`httpx.AsyncHTTPTransport` (no proxy: one from the environment would be connected to under the policy
    too, and is not supported) whose connections go through the policy that `applying` set."""

    def __init__(self, *, limits: httpx.Limits | None = None, verify: bool = True) -> None:
        limits = limits or httpx.Limits()
        super().__init__(limits=limits, verify=verify, trust_env=False)
        # httpx builds its pool without a network backend argument; the pinned httpx 0.28 keeps it in `_pool`
        # (tests/collectors/test_egress.py fails if that ever changes: a metadata redirect would connect).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedBackend(),
        )


def new_http_client(*, user_agent: str, max_connections: int) -> httpx.AsyncClient:
    """The collectors' shared HTTP client: no redirects followed by httpx (`collectors.http` follows them, each hop
    checked), connections through `EgressTransport`."""
    return httpx.AsyncClient(
        headers={"User-Agent": user_agent}, follow_redirects=False, trust_env=False,
        transport=EgressTransport(limits=httpx.Limits(max_connections=max_connections)),
    )
