"""Text helpers every step of the policy's cleaning shares: what is never text, and one Unicode form.

- `without_control_characters`: C0 controls other than tab, line feed, vertical tab, form feed and carriage
  return, DEL, and lone surrogates removed. They are never text, PostgreSQL refuses NUL, and UTF-8 (the wire
  encoding) cannot carry lone surrogates. `RawPolicyData` applies it to every text field before checking it,
  the hot path's cleaning to every string (and key) of `raw_data`.
- `nfc`: Unicode NFC, the form everything stored is in (Korean syllables composed).
- `nfc_trimmed`: NFC, then leading and trailing whitespace removed.
- `without_whitespace`: every whitespace character removed (names compared regardless of spacing).

May import: the standard library only.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

__all__ = ["nfc", "nfc_trimmed", "without_control_characters", "without_whitespace"]

_NOT_TEXT = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff]")
_WHITESPACE = re.compile(r"\s+")


def without_control_characters(value: Any) -> Any:
    """A string without control characters and lone surrogates (see the module docstring); other values as given."""
    if isinstance(value, str) and _NOT_TEXT.search(value):
        return _NOT_TEXT.sub("", value)
    return value


def nfc(text: str) -> str:
    """`text` in Unicode NFC."""
    return unicodedata.normalize("NFC", text)


def nfc_trimmed(text: str) -> str:
    """`text` in Unicode NFC, without leading and trailing whitespace."""
    return unicodedata.normalize("NFC", text).strip()


def without_whitespace(text: str) -> str:
    """`text` with every whitespace character removed."""
    return _WHITESPACE.sub("", text)
