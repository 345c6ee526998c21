"""Whole source records (a JSON value, or XML read as nested dicts): a value found by a dotted path (`dig`), and a
record made safe to publish and store (`sanitise_record`). Pure; imports the standard library, `parsing.text` and
`common.redaction`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aegis_pipeline.collectors.parsing.text import UNENCODABLE_OR_CONTROL
from aegis_pipeline.common.redaction import redact, secret_spellings


def dig(document: Any, path: str | None) -> Any:
    """`dig(doc, "response.body.items.item")`; None when any step is missing."""
    current = document
    for key in (path or "").split(".") if path else []:
        if isinstance(current, dict) and key in current:
            current = current[key]
        else:
            return None
    return current


def sanitise_record(value: Any, secrets: Collection[str] = ()) -> Any:
    """A parsed source record (JSON or XML dict) made safe to publish and store, at any depth, keys included.

    - Lone surrogates (``"\\ud800"`` in JSON) are removed: no encoder can write them, so one such record would
      otherwise fail the whole publication of its source.
    - C0 control characters other than tab, line feed and carriage return, and DEL, are removed: they are never
      meaningful text and PostgreSQL refuses NUL.
    - Each of ``secrets`` (the source's credentials, e.g. a data.go.kr ``serviceKey`` a source echoes in a link)
      is replaced by ``[REDACTED]``, as written and percent-encoded.

    Numbers, booleans and ``None`` are kept; the structure is kept. Never raises for JSON-like values.
    """
    return _sanitise(value, secret_spellings(secrets))


def _sanitise(value: Any, spellings: list[str]) -> Any:
    if isinstance(value, str):
        return redact(UNENCODABLE_OR_CONTROL.sub("", value), spellings)
    if isinstance(value, dict):
        return {_sanitise(key, spellings): _sanitise(item, spellings) for key, item in value.items()}
    if isinstance(value, list):
        return [_sanitise(item, spellings) for item in value]
    return value

