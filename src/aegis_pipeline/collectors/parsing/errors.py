"""The one error of the value parsers: a source value that cannot be parsed. The caller decides whether that
rejects the record. Imports only the standard library.
"""

from __future__ import annotations

_MAX_VALUE_IN_MESSAGE = 200


class ValueParseError(ValueError):
    """A source value that cannot be parsed; the message names the value.

    ``value`` holds the offending value, ``reason`` what was wrong with it.
    """

    def __init__(self, reason: str, value: object) -> None:
        shown = repr(value)
        if len(shown) > _MAX_VALUE_IN_MESSAGE:
            shown = shown[:_MAX_VALUE_IN_MESSAGE] + "..."
        super().__init__(f"{reason}: {shown}")
        self.reason = reason
        self.value = value

