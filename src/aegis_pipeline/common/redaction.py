"""The one way secrets are blanked out of text: logs (`common.logging`), and records, dead letters and errors
from the collectors (`collectors.parsing`, `collectors.run`).

May import: the standard library only.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4  # shorter values are not taken for secrets: they would redact ordinary words and numbers


def secret_spellings(secrets: Iterable[str]) -> list[str]:
    """Each secret as written and percent-encoded (echoed URLs carry ``serviceKey=abc%2B...``), longest first,
    so a secret is replaced whole before a shorter one inside it could be."""
    spellings = {
        spelling
        for secret in secrets
        if len(secret) >= MIN_SECRET_LENGTH
        for spelling in (secret, quote(secret, safe=""), quote_plus(secret))
    }
    return sorted(spellings, key=len, reverse=True)


def redact(text: str, spellings: Collection[str]) -> str:
    """``text`` with every one of ``spellings`` (from ``secret_spellings``) replaced by ``[REDACTED]``."""
    for spelling in spellings:
        if spelling in text:
            text = text.replace(spelling, REDACTED)
    return text
