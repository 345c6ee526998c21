"""Structured logging: one JSON object per line (or a readable console line), via structlog.

Log an event name plus key=value fields: `log.info("batch_processed", records=100, elapsed_ms=12)`.
Context bound with `bind_context(run_id=..., policy_id=...)` is added to every line of the current task.
"""

from __future__ import annotations

import logging
import sys

import structlog

bind_context = structlog.contextvars.bind_contextvars
clear_context = structlog.contextvars.clear_contextvars


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Route structlog and the standard library's logging to stderr, as JSON lines by default."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if json_lines else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processors=[*shared, renderer], foreign_pre_chain=shared)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries (aiokafka, elastic_transport, ...) chatter at INFO: they speak at WARNING unless DEBUG is asked.
    root.setLevel(logging.DEBUG if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level)))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
