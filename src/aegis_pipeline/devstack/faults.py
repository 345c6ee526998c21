"""Faults on the embedded stack, for the reliability tests and `bench/faults.py`: stop one engine by the pid its
`up` recorded, and bring it back with `up` (which restarts only what is not running, on the same port, so the
processes already configured with that port reconnect by themselves).

What an engine keeps across a stop is the engine's own: PostgreSQL restarts with its data (same data directory);
the Tansu broker and Redis restart empty (memory only, like a lost broker or cache).

May import: `devstack`, `settings`.
"""

from __future__ import annotations

import signal

from aegis_pipeline.devstack import monitoring, stack
from aegis_pipeline.devstack.engines import ENGINE_TYPES, is_running, stop_process
from aegis_pipeline.settings import CoreSettings, Settings

ENGINES_BY_NAME = {engine.name: engine for engine in ENGINE_TYPES}


def stop_engine(core: CoreSettings, name: str, *, kill: bool = False) -> int:
    """Stop engine `name` of the stack in `core.aegis_data_dir` (SIGKILL with `kill`, else its clean stop signal);
    returns the pid that was stopped. Raises `LookupError` when the engine is not running under this stack."""
    state = stack.StackState.load(core.stack_state_path)
    record = state.engines.get(name) if state else None
    process = record.process if record else None
    if process is None or not is_running(process):
        raise LookupError(f"engine {name!r} is not running under {core.aegis_data_dir}")
    stop_signal = signal.SIGKILL if kill else ENGINES_BY_NAME[name].stop_signal
    stop_process(process, stop_signal=stop_signal)
    return process.pid


def start_engines(core: CoreSettings) -> Settings:
    """Start what is not running (`devstack.stack.up`), each engine on its former port; returns the settings."""
    return stack.up(core)


def engine_port(core: CoreSettings, name: str) -> int:
    state = stack.StackState.load(core.stack_state_path)
    if state is None or name not in state.engines:
        raise LookupError(f"no engine {name!r} under {core.aegis_data_dir}")
    return state.engines[name].port


def shorten_alerting(core: CoreSettings, settings: Settings, *, interval: str = "1s", for_divisor: int = 60) -> None:
    """For alert tests that cannot wait a quarter of an hour: the stack's Prometheus scrapes and evaluates every
    `interval`, with a copy of the chart's rules whose `for:` durations are divided by `for_divisor` (15m: 15 s).
    Expressions and thresholds stay the chart's. Prometheus reloads at once; `up` writes the real files again."""
    home = ENGINES_BY_NAME["prometheus"](core.aegis_data_dir).home
    monitoring.write_prometheus_files(
        home,
        services=monitoring.embedded_services(settings.prometheus_pushgateway_url, settings.alertmanager_url),
        scrape_interval=interval,
        rules=monitoring.alert_rules(interval=interval, for_divisor=for_divisor),
    )
    monitoring.reload_prometheus(settings.prometheus_url)
