"""The named value parsers a source's YAML can use for a field (``VALUE_PARSERS``, read by
``collectors.definitions`` and ``collectors.mapping``):

``date``
    ``parse_date``: a ``date``; ``None`` when the value is missing or blank, is free text with no digits
    ("예산 소진 시까지": no fixed date), as for one side of a range, or is a sentinel that means "no date"
    (``99991231``, ``29991231``, ``00000000``: see ``is_no_date_sentinel``).
``date_range_start`` / ``date_range_end``
    ``parse_date_range(value).start`` / ``.end``: one side of a ``start ~ end`` period;
    ``None`` when the source gives no fixed date (``"상시 접수"``, ``"상시신청"``, a sentinel);
    ``"2026.12.31까지"`` ("until") is an end date.
``list``
    ``split_list(value, "@")``: ``"서울@부산"`` -> ``["서울", "부산"]``; ``[]`` when missing.
``comma_list``
    ``split_list(value, ",")``: comma-joined values such as bizinfo ``hashtags``.
``text``
    ``clean_text``: HTML and entities to plain text; ``None`` when nothing is left.
``strip``
    The value trimmed; ``None`` when missing or blank.

Registry parsers take the raw JSON/XML value: ``None``, a string, or an integer (APIs send
``20260301`` as a number); ``list`` and ``comma_list`` also take a list of strings. Any other
type raises ``ValueParseError``, as does a value that cannot be parsed; the caller decides
whether that rejects the record. Pure; imports the standard library and the other ``parsing`` modules.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from aegis_pipeline.collectors.parsing.dates import parse_date, parse_date_range
from aegis_pipeline.collectors.parsing.errors import ValueParseError
from aegis_pipeline.collectors.parsing.text import clean_text, split_list


def _as_text(value: Any) -> str | None:
    # bool is an int, but True is never a meaningful field value.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueParseError(f"expected text, got {type(value).__name__}", value)


def _as_list(value: Any, separator: str) -> list[str]:
    if not isinstance(value, list):
        return split_list(_as_text(value), separator)
    if not all(isinstance(item, str) for item in value):
        raise ValueParseError("expected a list of strings", value)
    return list(dict.fromkeys(item.strip() for item in value if item.strip()))


def _date_range_start(value: Any) -> date | None:
    return parse_date_range(_as_text(value)).start


def _date_range_end(value: Any) -> date | None:
    return parse_date_range(_as_text(value)).end


def _date_or_no_fixed_date(value: Any) -> date | None:
    # The same rule as a side of a range: words without digits ("예산 소진 시까지", "추후 공지") say there is
    # no fixed date; anything with digits must be a real date.
    text = _as_text(value)
    if text is not None and text.strip() and not any(character.isdigit() for character in text):
        return None
    return parse_date(text)


def _text_or_none(value: Any) -> str | None:
    return clean_text(_as_text(value)) or None


def _strip_or_none(value: Any) -> str | None:
    text = _as_text(value)
    if text is None:
        return None
    return text.strip() or None


VALUE_PARSERS: dict[str, Callable[[Any], Any]] = {
    "date": _date_or_no_fixed_date,
    "date_range_start": _date_range_start,
    "date_range_end": _date_range_end,
    "list": lambda value: _as_list(value, "@"),
    "comma_list": lambda value: _as_list(value, ","),
    "text": _text_or_none,
    "strip": _strip_or_none,
}
"""Parsers a source's YAML can name, described in the module docstring."""
