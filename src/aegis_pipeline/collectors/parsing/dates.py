"""Dates as the sources write them: one calendar date in any of their forms (`parse_date`), a period written as
`start ~ end` (`parse_date_range`, giving a `DateRange`), an RFC 822 date-time (RSS `pubDate`:
`parse_rfc822_datetime`), and the sentinels source systems write for "no date" (`is_no_date_sentinel`).
Pure; imports only the standard library and `parsing.errors`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo

from aegis_pipeline.collectors.parsing.errors import ValueParseError
from aegis_pipeline.domain.korean_time import KST


@dataclass(frozen=True)
class DateRange:
    """A period such as an application window.

    ``note`` keeps the original text when the source gives no fixed date (``"상시 접수"``) or
    gives one side as words (``"2026-03-01 ~ 예산 소진시까지"``); it is ``None`` otherwise.
    """

    start: date | None
    end: date | None
    note: str | None = None


_WEEKDAY_SUFFIX = r"(?:\s*\(\s*[월화수목금토일](?:요일)?\s*\))?"
_TIME_SUFFIX = (
    r"(?:(?:T|\s+)(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})"
    r"(?::(?P<second>[0-9]{2})(?:\.[0-9]{1,9})?)?"
    r"\s*(?:Z|[+-](?P<offset_hours>[0-9]{2}):?(?P<offset_minutes>[0-9]{2}))?)?"
)
_DATE_FORMS = [
    re.compile(r"(?P<year>[0-9]{4})(?P<month>[0-9]{2})(?P<day>[0-9]{2})" + _TIME_SUFFIX),
    re.compile(
        r"(?P<year>[0-9]{4})\s*(?P<sep>[-./])\s*(?P<month>[0-9]{1,2})\s*(?P=sep)\s*"
        r"(?P<day>[0-9]{1,2})\.?" + _WEEKDAY_SUFFIX + _TIME_SUFFIX
    ),
    re.compile(
        r"(?P<year>[0-9]{4})\s*년\s*(?P<month>[0-9]{1,2})\s*월\s*(?P<day>[0-9]{1,2})\s*일"
        + _WEEKDAY_SUFFIX
        + _TIME_SUFFIX
    ),
]
# Only text shaped like "[Mon,] 02 Mar 2026 ..." is handed to the RFC 822 parser.
_RFC822_SHAPE = re.compile(r"(?:[A-Za-z]+,?\s*)?[0-9]{1,2}\s+[A-Za-z]{3}")
# "2026.12.31까지" (정부24 신청기한): "until" that date.
_UNTIL_SUFFIX = re.compile(r"\s*까지\s*$")

# Source systems fill a date field they have no date for with a sentinel instead of leaving it empty: the far
# future for "no deadline" (K-Startup pbanc_rcpt_end_dt 99991231 / 29991231, 2099-12-31 in many Korean systems)
# and zeros or a far-past default for "not announced" (00000000, 0000-00-00, 1900-01-01, 0001-01-01). Read as
# dates they would be a wrong deadline or an invalid record; they mean "no date". Thresholds: no application
# period starts or ends in 2099 or later (real ones are at most a few years ahead: 2027-12-31 stays a date), nor
# in 1900 or earlier. A year in between that no programme can have (2062 for 2026) is a typo, not a sentinel:
# it stays a date and the cold path rejects it as implausible (DP_2001) rather than calling it "no deadline".
SENTINEL_YEAR_FROM = 2099
SENTINEL_YEAR_UNTIL = 1900


def is_no_date_sentinel(year: int, month: int, day: int) -> bool:
    """True when a written year, month and day are a source's way of saying "no date": a year from
    ``SENTINEL_YEAR_FROM`` on or up to ``SENTINEL_YEAR_UNTIL`` (``9999-12-31``, ``2999-12-31``, ``2099-12-31``,
    ``1900-01-01``, ``0000-00-00``), or a month or day of ``00`` ("not announced": ``2026-00-00``)."""
    return year >= SENTINEL_YEAR_FROM or year <= SENTINEL_YEAR_UNTIL or month == 0 or day == 0


def parse_date(text: str | None) -> date | None:
    """Parse one calendar date in any form the sources use.

    Accepted: ``20260301``, ``2026-03-01``, ``2026.03.01``, ``2026. 3. 1.``, ``2026/03/01``,
    ``2026년 3월 1일``, each optionally followed by a Korean weekday in parentheses
    (``2026.03.02(월)``) and a time (``2026-03-01T09:00:00``, ``2026-03-01 09:00``,
    ``20260301 09:00:00.0``, with or without an offset); and RFC 822 (RSS ``pubDate``,
    ``Mon, 02 Mar 2026 09:00:00 +0900``). Full-width digits and punctuation are accepted.

    A trailing ``까지`` ("until": ``2026.12.31까지``) is accepted.

    The date is the one written in the text: a time or offset is checked but never moves the
    date to another day, and ``24:00`` (a common deadline) keeps its own day.

    Returns ``None`` for ``None``, ``""`` and whitespace, and for a sentinel that means "no date"
    (``99991231``, ``2999-12-31``, ``00000000``, ``1900-01-01``: ``is_no_date_sentinel``).
    Raises ``ValueParseError`` for anything else that is not one of these forms or names an
    impossible date (``2026-13-45``, ``20260230``).
    """
    if text is None or not text.strip():
        return None
    normalised = _UNTIL_SUFFIX.sub("", unicodedata.normalize("NFKC", text).strip())
    for form in _DATE_FORMS:
        match = form.fullmatch(normalised)
        if match:
            _check_time(match, text)
            if is_no_date_sentinel(int(match["year"]), int(match["month"]), int(match["day"])):
                return None
            return _build_date(match["year"], match["month"], match["day"], text)
    if _RFC822_SHAPE.match(normalised):
        day = parse_rfc822_datetime(normalised).date()
        return None if is_no_date_sentinel(day.year, day.month, day.day) else day
    raise ValueParseError("unrecognised date", text)


def _build_date(year: str, month: str, day: str, original: str) -> date:
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise ValueParseError("impossible date", original) from None


def _check_time(match: re.Match[str], original: str) -> None:
    if match["hour"] is None:
        return
    hour, minute = int(match["hour"]), int(match["minute"])
    second = int(match["second"] or 0)
    is_end_of_day = (hour, minute, second) == (24, 0, 0)
    if not is_end_of_day and (hour > 23 or minute > 59 or second > 59):
        raise ValueParseError("impossible time", original)
    if match["offset_hours"] and (int(match["offset_hours"]) > 23 or int(match["offset_minutes"]) > 59):
        raise ValueParseError("impossible time zone offset", original)


# Sources write the range separator as ASCII, full-width (NFKC folds it), wave dash or tilde operator.
_RANGE_SEPARATOR = re.compile(r"[~\u301c\u223c]")
_ASCII_DIGIT = re.compile(r"[0-9]")


def parse_date_range(text: str | None) -> DateRange:
    """Parse a period written as ``start ~ end``.

    - ``"2021-12-06 ~ 2021-12-17"``, ``"2026.03.01~2026.03.31"``, ``"20260301 ~ 20260331"``:
      both dates; each side takes every form ``parse_date`` accepts.
    - one date alone, or ``"2026-03-01 ~"``: start only; ``"~ 2026-03-31"``: end only; one date
      "until" (``"2026.12.31까지"``, 정부24 신청기한): end only.
    - a side without any digit is words, not a broken date: ``"추후 공지"``, ``"상시 접수"``,
      ``"예산 소진시까지"``, ``"별도 공지"``, ``"수시"`` give ``DateRange(None, None, note=text)``;
      ``"2026-03-01 ~ 예산 소진시까지"`` gives the start and the note.
    - a side that is a "no date" sentinel (``99991231``, ``00000000``: see ``parse_date``) is no
      date too, with the note: ``"20260301 ~ 99991231"`` gives the start only.
    - ``None``, blank or a lone ``"~"``: ``DateRange(None, None)``.

    Raises ``ValueParseError`` when a side has digits but is not a valid date (this keeps
    ``"2026-03-1x"`` from being filed as a note), when there is more than one separator, and
    when the end is before the start.
    """
    if text is None or not text.strip():
        return DateRange(None, None)
    normalised = unicodedata.normalize("NFKC", text)
    sides = _RANGE_SEPARATOR.split(normalised)
    if len(sides) > 2:
        raise ValueParseError("more than one range separator", text)
    parsed: list[date | None] = []
    has_words = False
    for side in sides:
        side = side.strip()
        if not side:
            parsed.append(None)
        elif not _ASCII_DIGIT.search(side):
            has_words = True
            parsed.append(None)
        else:
            day = _parse_range_side(side, text)
            has_words = has_words or day is None  # a sentinel: the source gives no fixed date
            parsed.append(day)
    if len(parsed) == 2:
        start, end = parsed
    elif _UNTIL_SUFFIX.search(sides[0]):
        start, end = None, parsed[0]
    else:
        start, end = parsed[0], None
    if start and end and end < start:
        raise ValueParseError("range ends before it starts", text)
    return DateRange(start, end, note=text.strip() if has_words else None)


def _parse_range_side(side: str, original: str) -> date | None:
    try:
        return parse_date(side)
    except ValueParseError as error:
        raise ValueParseError(f"{error.reason} in range", original) from None


_MONTHS = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_RFC822 = re.compile(
    r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s*)?"
    r"(?P<day>[0-9]{1,2})\s+(?P<month>[a-z]{3})[a-z]*\.?\s+(?P<year>[0-9]{4}|[0-9]{2})"
    r"(?:\s+(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2}))?)?"
    r"(?:\s*(?P<zone>[+-][0-9]{2}:?[0-9]{2}|[a-z]{1,5}))?",
    re.IGNORECASE,
)
# email.utils silently reads an unknown zone such as "KST" as UTC, nine hours off for Korean
# feeds, so zones are resolved here and an unknown one is an error.
_ZONE_OFFSETS_HOURS = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0, "kst": 9,
    "est": -5, "edt": -4, "cst": -6, "cdt": -5, "mst": -7, "mdt": -6, "pst": -8, "pdt": -7,
}  # fmt: skip


def parse_rfc822_datetime(text: str, assume_tz: tzinfo = KST) -> datetime:
    """Parse an RFC 822 / RFC 2822 date-time (RSS ``pubDate``) into an aware ``datetime``.

    ``"Mon, 02 Mar 2026 09:00:00 +0900"`` -> ``2026-03-02 09:00+09:00``. The weekday is
    optional and not checked against the date (feeds get it wrong); seconds and the time are
    optional (midnight). Zones: ``±HHMM``, ``±HH:MM``, ``GMT``/``UT``/``UTC``/``Z``, ``KST``
    and the US zones of RFC 822; ``-0000`` is UTC. With no zone the time is read in
    ``assume_tz`` (default KST, since the sources are Korean). Two-digit years follow RFC 2822:
    00-49 is 20xx, 50-99 is 19xx.

    Raises ``ValueParseError`` for any other text, an unknown zone name or an impossible value.
    """
    match = _RFC822.fullmatch(text.strip())
    if not match or match["month"].lower() not in _MONTHS:
        raise ValueParseError("unrecognised RFC 822 date-time", text)
    year = int(match["year"])
    if len(match["year"]) == 2:
        year += 2000 if year < 50 else 1900
    zone = _rfc822_zone(match["zone"], text) or assume_tz
    try:
        return datetime(
            year,
            _MONTHS[match["month"].lower()],
            int(match["day"]),
            int(match["hour"] or 0),
            int(match["minute"] or 0),
            int(match["second"] or 0),
            tzinfo=zone,
        )
    except ValueError:
        raise ValueParseError("impossible RFC 822 date-time", text) from None


def _rfc822_zone(zone: str | None, original: str) -> tzinfo | None:
    if zone is None:
        return None
    if zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if offset >= timedelta(hours=24) or int(digits[2:]) > 59:
            raise ValueParseError("impossible time zone offset", original)
        return timezone(-offset if zone[0] == "-" else offset)
    hours = _ZONE_OFFSETS_HOURS.get(zone.lower())
    if hours is None:
        raise ValueParseError("unknown time zone", original)
    return timezone(timedelta(hours=hours))
