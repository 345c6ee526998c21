"""Pure value parsers for source fields: dates and date ranges, @-joined lists, HTML text,
character encodings. No I/O; imports only the standard library, bs4, charset handling and `common.redaction`.

Sources name these parsers in the YAML sources file through ``VALUE_PARSERS``:

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
whether that rejects the record.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning

from aegis_pipeline.common.redaction import redact, secret_spellings

# Korea has kept UTC+9 without daylight saving since 1988, so a fixed offset is exact and
# needs no tz database.
KST = timezone(timedelta(hours=9), "KST")

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


@dataclass(frozen=True)
class DateRange:
    """A period such as an application window.

    ``note`` keeps the original text when the source gives no fixed date (``"상시 접수"``) or
    gives one side as words (``"2026-03-01 ~ 예산 소진시까지"``); it is ``None`` otherwise.
    """

    start: date | None
    end: date | None
    note: str | None = None


# --- dates -------------------------------------------------------------------------------

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


# --- lists -------------------------------------------------------------------------------


def split_list(text: str | None, separator: str = "@") -> list[str]:
    """Split ``"서울@부산@@ 대구 @서울"`` into ``["서울", "부산", "대구"]``.

    Items are trimmed, empty items dropped and repeats removed, keeping the first occurrence's
    position. ``None`` and blank give ``[]``. ``separator`` defaults to ``"@"`` and must not be
    empty.
    """
    if not separator:
        raise ValueError("separator must not be empty")
    if text is None:
        return []
    items = (item.strip() for item in text.split(separator))
    return list(dict.fromkeys(item for item in items if item))


# --- HTML text ---------------------------------------------------------------------------

_DROPPED_ELEMENTS = ["script", "style", "template"]
_BLOCK_ELEMENTS = [
    "p", "div", "li", "tr", "table", "ul", "ol", "dl", "dt", "dd", "blockquote", "pre",
    "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer",
]  # fmt: skip
_CELL_ELEMENTS = ["td", "th"]
_MARKUP_AFTER_DECODING = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]*>|&(?:[a-zA-Z][a-zA-Z0-9]*|#[0-9]+|#[xX][0-9a-fA-F]+);")
_SCRIPT_OPENER = re.compile(r"<\s*/?\s*(?:script|style)", re.IGNORECASE)
# Surrogates cannot be encoded (bs4 and Kafka both fail on them); C0 controls other than
# tab/newline/CR are never meaningful text and PostgreSQL rejects NUL.
_UNENCODABLE_OR_CONTROL = re.compile(r"[\ud800-\udfff\x00-\x08\x0e-\x1f\x7f]")
_INVISIBLE = re.compile(r"[\u200b-\u200d\u2060\ufeff\u00ad]")
_LINE_BREAK = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n[\n ]*")


def clean_text(value: str | None) -> str:
    """Turn an HTML fragment or entity-laden text into plain text.

    - Tags are removed; ``<script>``, ``<style>`` and ``<template>`` lose their contents too.
    - Entities are decoded, named and numeric (``&#40;`` -> ``(``, ``&nbsp;`` -> space).
    - Escaped HTML is decoded a second time: sources such as bizinfo escape their markup, so
      ``&lt;p&gt;지원&lt;/p&gt;`` gives ``지원`` and ``&amp;lt;`` gives ``<``. If text still
      looks like a tag or entity after the first pass it is parsed once more; a third layer of
      escaping is left as it is. Literal ``a < b`` survives.
    - ``<br>`` and the end of block elements (``p``, ``div``, ``li``, ``tr``, headings ...)
      become line breaks; table cells are separated by a space.
    - ``\\r\\n`` and ``\\r`` become ``\\n``; runs of spaces, tabs, ``&nbsp;`` and the
      ideographic space become one space; spaces around line breaks and blank lines are
      removed; zero-width characters and control characters are dropped; the result is trimmed.
    - Korean text is left as it is (no Unicode normalisation).

    Never raises for a string; ``None`` gives ``""``. The output never contains ``<script``
    or ``<style`` in any letter case.
    """
    if value is None:
        return ""
    text = _html_to_text(value)
    if _MARKUP_AFTER_DECODING.search(text):
        text = _html_to_text(text)
    while _SCRIPT_OPENER.search(text):
        # Only text that was escaped three times or left unclosed gets here; removing the
        # opener keeps downstream HTML renderers from ever seeing a script tag.
        text = _SCRIPT_OPENER.sub("", text)
    return _normalise_whitespace(text)


def _html_to_text(markup: str) -> str:
    markup = _UNENCODABLE_OR_CONTROL.sub("", markup)
    with warnings.catch_warnings():
        # Short values that look like a URL or an XML declaration are still just text to us.
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(markup, "lxml")
    for element in soup.find_all(_DROPPED_ELEMENTS):
        element.decompose()
    for line_break in soup.find_all("br"):
        line_break.replace_with("\n")
    for block in soup.find_all(_BLOCK_ELEMENTS):
        block.append("\n")
    for cell in soup.find_all(_CELL_ELEMENTS):
        cell.append(" ")
    return soup.get_text()


def _normalise_whitespace(text: str) -> str:
    text = _UNENCODABLE_OR_CONTROL.sub("", text)
    text = _INVISIBLE.sub("", text)
    text = _LINE_BREAK.sub("\n", text)
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    return text.strip()


# --- character encodings -----------------------------------------------------------------

_DECLARATION_WINDOW_BYTES = 2048
_DECLARED_CHARSET = re.compile(
    rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([a-zA-Z0-9._:-]+)"
    rb"|<\?xml[^>]*?encoding\s*=\s*[\"']([a-zA-Z0-9._:-]+)",
    re.IGNORECASE,
)
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
# Every EUC-KR declaration is read as cp949 (UHC), its superset: boards declare EUC-KR and
# still send the 8,822 extra syllables such as '똠'. Names Python does not know are listed here.
_CP949_ALIASES = {"euc_kr", "cp949", "x-windows-949", "windows-949", "x-uhc"}
# Latin-1 decodes every byte string without error, so trusting it would never fall back.
# Korean servers send it as a servlet-container default, not as a statement about the body.
_DECODES_ANYTHING = {"iso8859-1", "cp1252"}


def decode_body(body: bytes, header_charset: str | None = None, override: str | None = None) -> str:
    """Decode a fetched body to text, distrusting wrong charset declarations.

    Order: ``override`` (from the source's configuration) wins and decodes with replacement
    characters for broken bytes; else a byte-order mark (UTF-8, UTF-16, UTF-32); else the
    first of these that decodes the body strictly: a ``<meta charset>`` / ``http-equiv``
    declaration or an ``<?xml encoding?>`` declaration in the first 2 KB, the HTTP header
    charset, UTF-8, cp949. EUC-KR and ``ks_c_5601-1987`` mean cp949. A latin-1 or
    windows-1252 declaration is tried last, after cp949, because it never fails. Unknown
    declared names are skipped; an unknown ``override`` raises ``LookupError``. When nothing
    decodes strictly, the candidate with the fewest replacement characters wins (earlier wins
    a tie).
    """
    if override:
        codec = _codec_name(override)
        if codec is None:
            raise LookupError(f"unknown charset override: {override!r}")
        return body.decode(codec, errors="replace")
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, errors="replace")
    candidates = _candidate_codecs(_declared_charset(body), header_charset)
    for codec in candidates:
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            continue
    decodings = [body.decode(codec, errors="replace") for codec in candidates]
    return min(decodings, key=lambda decoded: decoded.count("\ufffd"))


def _candidate_codecs(declared: str | None, header_charset: str | None) -> list[str]:
    trusted: list[str] = []
    last_resort: list[str] = []
    for name in [declared, header_charset, "utf-8", "cp949"]:
        codec = _codec_name(name)
        if codec is None:
            continue
        (last_resort if codec in _DECODES_ANYTHING else trusted).append(codec)
    return list(dict.fromkeys(trusted + last_resort))


def _declared_charset(body: bytes) -> str | None:
    match = _DECLARED_CHARSET.search(body[:_DECLARATION_WINDOW_BYTES])
    if not match:
        return None
    declared = (match[1] or match[2]).decode("ascii")
    # A declaration readable as ASCII cannot be in UTF-16/32; such pages are really ASCII-based.
    if declared.lower().startswith(("utf-16", "utf-32")):
        return "utf-8"
    return declared


def _codec_name(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    if name in _CP949_ALIASES:
        return "cp949"
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    if not _is_text_codec(codec):
        return None
    return "cp949" if codec in _CP949_ALIASES else codec


def _is_text_codec(codec: str) -> bool:
    # codecs.lookup also knows bytes-to-bytes codecs ("hex", "base64", "zlib") that bytes.decode
    # refuses; an empty probe would not tell them apart because decode skips empty input.
    try:
        b"a".decode(codec)
    except LookupError:
        return False
    except UnicodeDecodeError:
        pass  # a text codec that cannot decode one byte on its own (UTF-16, UTF-32)
    return True


# --- URLs --------------------------------------------------------------------------------


def join_url(base: str, link: str) -> str:
    """Resolve ``link`` (absolute, ``/path?query``, ``../path`` or ``//host/path``) against ``base``.

    Surrounding whitespace is trimmed; nothing is percent-encoded. Raises ``ValueParseError``
    when ``link`` is blank (rather than silently pointing at the list page) or when the result
    is not an http(s) URL, e.g. the ``javascript:goView('123')`` links of web boards.
    """
    if not link or not link.strip():
        raise ValueParseError("empty link", link)
    try:
        joined = urljoin(base.strip(), link.strip())
        parts = urlsplit(joined)
    except ValueError as error:  # urllib's own complaints, e.g. "Invalid IPv6 URL" for "//[x"
        raise ValueParseError(f"link is not a URL ({error})", link) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueParseError("link does not resolve to an http(s) URL", link)
    return joined


# --- whole records ---------------------------------------------------------------------

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
        return redact(_UNENCODABLE_OR_CONTROL.sub("", value), spellings)
    if isinstance(value, dict):
        return {_sanitise(key, spellings): _sanitise(item, spellings) for key, item in value.items()}
    if isinstance(value, list):
        return [_sanitise(item, spellings) for item in value]
    return value


# --- registry ----------------------------------------------------------------------------


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
