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
``free_text_range_start`` / ``free_text_range_end``
    The same for a period written as free text (정부24 ``신청기한``): a date or ``start ~ end`` gives its
    dates; any other text, with digits or without (``"사유발생일로부터 60일 이내"``, ``"매년 3월~4월"``), is no
    fixed date (``None``), not an invalid record. Use it only where the source's field is prose: a
    ``20261345`` there is also read as no date.
``list``
    ``split_list(value, "@")``: ``"서울@부산"`` -> ``["서울", "부산"]``; ``[]`` when missing.
``comma_list``
    ``split_list(value, ",")``: comma-joined values such as bizinfo ``hashtags``.
``regions_in_tags``
    The comma-joined tokens (or list items) that name a 시·도 or ``전국``, as written and in their order;
    the other tags are dropped: bizinfo ``"2026,경영,서울,중소벤처기업부"`` -> ``["서울"]``. A token counts when
    ``domain.regions`` knows the name (``서울``, ``서울시``, ``서울특별시``, ``서울 특별시``, ``전국``); digits alone
    (``2026``, a region code) are never a region here. ``[]`` when none is.
``region_of_organization``
    The 시·도 an organisation's name starts with, as a one-item list: ``"서울특별시 성동구"`` ->
    ``["서울특별시"]``, ``"경기도 수원시"`` -> ``["경기도"]``, ``"부산광역시교육청"`` -> ``["부산광역시"]``;
    ``[]`` for a central body (``"고용노동부"``) or a blank value. The name's first word counts when
    ``domain.regions`` knows it (``서울시 성동구`` -> ``["서울시"]``, as written); otherwise only a full
    canonical 시·도 name at its start (``경기도경제과학진흥원``), never a short one (``부산항만공사`` -> ``[]``).
``text``
    ``clean_text``: HTML and entities to plain text; ``None`` when nothing is left.
``strip``
    The value trimmed; ``None`` when missing or blank.

Registry parsers take the raw JSON/XML value: ``None``, a string, or an integer (APIs send
``20260301`` as a number); ``list``, ``comma_list`` and ``regions_in_tags`` also take a list of strings. Any other
type raises ``ValueParseError``, as does a value that cannot be parsed; the caller decides
whether that rejects the record. Pure; imports the standard library, the other ``parsing`` modules and
``domain.regions`` (which names are regions; the regions are kept as written: the hot path makes them
canonical).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from aegis_pipeline.collectors.parsing.dates import DateRange, parse_date, parse_date_range
from aegis_pipeline.collectors.parsing.errors import ValueParseError
from aegis_pipeline.collectors.parsing.text import clean_text, split_list
from aegis_pipeline.domain.regions import NATIONWIDE, PROVINCES, canonical_region


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


def _free_text_range(value: Any) -> DateRange:
    text = _as_text(value)  # a value that is not text at all is still an error
    try:
        return parse_date_range(text)
    except ValueParseError:
        return DateRange(None, None, note=text)  # prose with numbers in it ("사유발생일로부터 60일 이내")


def _free_text_range_start(value: Any) -> date | None:
    return _free_text_range(value).start


def _free_text_range_end(value: Any) -> date | None:
    return _free_text_range(value).end


def _is_region_name(token: str) -> bool:
    # Digits alone are a year or a code, not a region a tag or a name means.
    if not token or token.isdigit():
        return False
    region = canonical_region(token)
    return region == NATIONWIDE or region in PROVINCES


def _regions_in_tags(value: Any) -> list[str]:
    return [token for token in _as_list(value, ",") if _is_region_name(token)]


# Longest first, so that a name is matched by the whole 시·도 it starts with.
_PROVINCES_LONGEST_FIRST = sorted(PROVINCES, key=len, reverse=True)


def _region_of_organization(value: Any) -> list[str]:
    text = _as_text(value)
    if text is None or not text.strip():
        return []
    first_word = text.split()[0]
    if first_word != NATIONWIDE and _is_region_name(first_word):
        return [first_word]
    for province in _PROVINCES_LONGEST_FIRST:
        if text.strip().startswith(province):
            return [province]
    return []


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
    "free_text_range_start": _free_text_range_start,
    "free_text_range_end": _free_text_range_end,
    "list": lambda value: _as_list(value, "@"),
    "comma_list": lambda value: _as_list(value, ","),
    "regions_in_tags": _regions_in_tags,
    "region_of_organization": _region_of_organization,
    "text": _text_or_none,
    "strip": _strip_or_none,
}
"""Parsers a source's YAML can name, described in the module docstring."""
