"""Structured logging: one JSON object per line (or a readable console line), via structlog.

Log an event name plus key=value fields: `log.info("batch_processed", records=100, elapsed_ms=12)`.
Context bound with `bind_context(run_id=..., policy_id=...)` is added to every line of the current task.

Every line, ours and the libraries' (standard `logging`), passes `redact` last before it is rendered:

- secrets: values of fields named like a secret (`password`, `service_key`, `token`, ...), `name=value` and
  `"name": "value"` pairs with such names inside any text (a URL's `?serviceKey=...`, an exception message),
  a password in a URL (`postgresql://user:secret@host`), and the exact values registered with
  `register_secrets` (the settings' `SecretStr` values) become `[REDACTED]`;
- personal contact data: every text is passed through `domain.masking.mask_text` (phone numbers, e-mail
  addresses and registration numbers become tokens), always: nothing has to remember to ask for it.

May import the standard library, structlog, `common.redaction` and `domain` (the floor below `common`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from aegis_pipeline.common.redaction import MIN_SECRET_LENGTH, REDACTED, secret_spellings
from aegis_pipeline.common.redaction import redact as redact_secrets
from aegis_pipeline.domain.masking import mask_text

bind_context = structlog.contextvars.bind_contextvars
clear_context = structlog.contextvars.clear_contextvars

# crtfcKey: the key parameter of 기업마당 (bizinfo) and other Korean public APIs ("certification key").
_SECRET_WORD = (r"(?:password|passwd|secret|token|credential|authorization"
                r"|(?:api|service|access|auth|crtfc|cert)[_-]?key)")
_SECRET_NAME = rf"(?:[A-Za-z0-9_]*{_SECRET_WORD}[A-Za-z0-9_]*)"
_SECRET_FIELD = re.compile(rf"^{_SECRET_NAME}$", re.IGNORECASE)
# name=value (query strings, keyword dumps) and "name": "value" / 'name': 'value' (JSON and dict reprs)
_SECRET_PAIR = re.compile(
    rf"(?P<name>\b{_SECRET_NAME})(?P<sep>=|[\"']?\s*:\s*[\"'])(?!{re.escape(REDACTED)})"
    rf"(?P<value>[^&\s\"',;)}}\]]{{{MIN_SECRET_LENGTH},}})",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://[^:/@\s]+:)(?P<password>[^@/\s]+)(?=@)", re.IGNORECASE)


class _Redactor:
    """The state behind `redact`: registered secret values."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.spellings: list[str] = []  # of `secrets`, as `secret_spellings` gives them

    def text(self, value: str) -> str:
        value = redact_secrets(value, self.spellings)
        if "=" in value or ":" in value:
            value = _SECRET_PAIR.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", value)
            value = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{REDACTED}", value)
        return mask_text(value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {key: self.field(str(key), item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(item) for item in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.text(str(value))  # exceptions, paths, SecretStr ('**********'), anything rendered as text

    def field(self, name: str, value: Any) -> Any:
        if value and _SECRET_FIELD.match(name):
            return REDACTED
        return self.value(value)


_redactor = _Redactor()


def register_secrets(values: Iterable[str]) -> None:
    """Values that must never appear in a log line (e.g. the settings' passwords), also as a URL carries them
    (percent-encoded); empty or tiny ones are ignored."""
    _redactor.secrets.update(values)
    _redactor.spellings = secret_spellings(_redactor.secrets)


def redact(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: secrets out, contact data masked, in every field (see the module docstring)."""
    return {key: _redactor.field(key, value) for key, value in event_dict.items()}


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Route structlog and the standard library's logging to stderr, as JSON lines by default; every line is
    redacted and masked (see the module docstring)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if json_lines else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks are formatted before `redact`, so the exception's text is redacted too.
    finish: list[structlog.typing.Processor] = [structlog.processors.format_exc_info, redact, renderer]
    structlog.configure(
        processors=[*shared, *finish],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries (aiokafka, elastic_transport, ...) chatter at INFO: they speak at WARNING unless DEBUG is asked.
    root.setLevel(logging.DEBUG if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level)))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
