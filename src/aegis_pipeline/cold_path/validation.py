"""Full validation of a stored policy (the hot path only checked types and lengths): what makes a record
unusable (errors: it is rejected with DP_2001 whatever its score) and what makes it doubtful (warnings: they
lower its accuracy).

Pure: no I/O; `today` is passed in. Each finding has a stable `check` name (used by scoring and in tests) and a
message for people (it ends up in `status_reasons` and the event's `reasons`).

A body that only repeats the title is no body: it is unusable like an empty one. Text defects are found
precisely, since scoring weighs them heavily: markup is a real HTML tag or a real character reference left in
the text (``<p>``, ``&nbsp;``; not ``<KOTRA 공고>`` or ``R&D``); mojibake is a run of Latin-1 letters and symbols
where Hangul was meant (``ÇÁ·Î±×·¥``, ``ì\x9d´``) or several U+FFFD, not a row of middle dots (``····``); one
or two U+FFFD (a byte lost in decoding) are a minor defect of their own.
"""

from __future__ import annotations

import html.entities
import re
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from aegis_pipeline.cold_path.features import nfc
from aegis_pipeline.cold_path.records import PolicyRecord

MIN_TITLE_CHARACTERS = 4      # meaningful characters (letters, digits, Hangul) of a usable title
MIN_CONTENT_CHARACTERS = 20   # ... of a usable body
MAX_TITLE_CHARACTERS = 200    # longer: a body pasted into the title
EARLIEST_YEAR = 2000
YEARS_AHEAD = 5               # a date further in the future than this is a typo

_MEANINGFUL = re.compile(r"[0-9A-Za-z가-힣]")
_PLACEHOLDERS = frozenset({
    "제목없음", "무제", "untitled", "test", "테스트", "미정", "없음", "null", "none", "na", "tbd",
})
# Elements that appear in announcement HTML (Word's <o:p> included), and every named character reference.
_HTML_TAG_NAMES = (
    "a", "abbr", "area", "article", "b", "big", "blockquote", "body", "br", "button", "caption", "center", "code",
    "col", "colgroup", "dd", "del", "div", "dl", "dt", "em", "embed", "figcaption", "figure", "font", "footer",
    "form", "h[1-6]", "head", "header", "hr", "html", "i", "iframe", "img", "input", "ins", "label", "li", "link",
    "map", "meta", "nav", "noscript", "o:p", "object", "ol", "option", "p", "param", "pre", "s", "script",
    "section", "select", "small", "span", "strike", "strong", "style", "sub", "sup", "table", "tbody", "td",
    "textarea", "tfoot", "th", "thead", "title", "tr", "tt", "u", "ul",
)
_ENTITY_NAMES = sorted({name.rstrip(";") for name in html.entities.html5 if name.endswith(";")}, key=len,
                       reverse=True)
_HTML_LEFT = re.compile(
    r"<\s*/?\s*(?:" + "|".join(_HTML_TAG_NAMES) + r")(?=[\s/>])[^<>]{0,200}>"
    r"|<!--|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|" + "|".join(map(re.escape, _ENTITY_NAMES)) + ");",
    re.IGNORECASE,
)
# EUC-KR read as Latin-1: runs of Latin-1 letters and symbols ("ÇÁ·Î±×·¥"; at least three different ones, so a
# row of middle dots or degree signs is not one); UTF-8 read as Latin-1: a lead byte of Hangul ("ì"/"í"/"ë"/"ê")
# followed by a continuation byte.
_LATIN1_RUN = re.compile(r"[\xa1-\xff]{4,}")
_UTF8_AS_LATIN1 = re.compile(r"[ìíëê][\x80-\xbf]")
_REPLACEMENT = "\ufffd"
MAX_STRAY_REPLACEMENTS = 2    # more U+FFFD than this in one text: it was decoded with the wrong character set


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    message: str


@dataclass(frozen=True, slots=True)
class Validation:
    errors: tuple[Finding, ...]
    warnings: tuple[Finding, ...]

    @property
    def is_valid(self) -> bool:
        return not self.errors

    def failed(self, check: str) -> bool:
        return any(finding.check == check for finding in (*self.errors, *self.warnings))


def meaningful_length(text: str) -> int:
    """Letters, digits and Hangul in `text`."""
    return len(_MEANINGFUL.findall(text))


def _is_placeholder(text: str) -> bool:
    return "".join(_MEANINGFUL.findall(nfc(text).lower())) in _PLACEHOLDERS


def _garbled(text: str) -> bool:
    return (text.count(_REPLACEMENT) > MAX_STRAY_REPLACEMENTS or _UTF8_AS_LATIN1.search(text) is not None
            or any(len(set(run)) >= 3 for run in _LATIN1_RUN.findall(text)))


def _only_repeats_title(content: str, title: str) -> bool:
    """The body says fewer than `MIN_CONTENT_CHARACTERS` meaningful characters besides the title."""
    body = "".join(_MEANINGFUL.findall(nfc(content).lower()))
    heading = "".join(_MEANINGFUL.findall(nfc(title).lower()))
    return bool(heading) and len(body.replace(heading, "", 1)) < MIN_CONTENT_CHARACTERS


def text_fit_to_show(validation: Validation) -> bool:
    """No broken characters and no markup left in the title or the body: the text can be shown as it is."""
    return not validation.failed("mojibake") and not validation.failed("markup_left")


def _plausible(day: date | None, today: date) -> bool:
    return day is None or EARLIEST_YEAR <= day.year <= today.year + YEARS_AHEAD


def validate(record: PolicyRecord, *, today: date) -> Validation:
    """Every check on one record; see the module docstring for errors versus warnings."""
    errors: list[Finding] = []
    warnings: list[Finding] = []

    if meaningful_length(record.title) < MIN_TITLE_CHARACTERS or _is_placeholder(record.title):
        errors.append(Finding("title_unusable", f"title {record.title[:40]!r} does not name a program"))
    if meaningful_length(record.content) < MIN_CONTENT_CHARACTERS or _is_placeholder(record.content):
        errors.append(Finding("content_unusable",
                              f"content has fewer than {MIN_CONTENT_CHARACTERS} meaningful characters"))
    elif _only_repeats_title(record.content, record.title):
        errors.append(Finding("content_unusable", "content only repeats the title"))
    if _is_placeholder(record.issuing_organization) or meaningful_length(record.issuing_organization) < 2:
        errors.append(Finding("organization_unusable",
                              f"issuing organization {record.issuing_organization[:40]!r} is not a name"))
    for name, day in (("application_start_date", record.application_start_date),
                      ("application_end_date", record.application_end_date)):
        if not _plausible(day, today):
            errors.append(Finding("date_implausible", f"{name} {day} is outside {EARLIEST_YEAR}.."
                                                      f"{today.year + YEARS_AHEAD}"))
    if record.original_url is not None:
        parts = urlsplit(record.original_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or "." not in parts.hostname:
            errors.append(Finding("url_invalid", f"original_url {record.original_url[:80]!r} has no host"))

    if len(record.title) > MAX_TITLE_CHARACTERS:
        warnings.append(Finding("title_too_long", f"title is {len(record.title)} characters long"))
    if _HTML_LEFT.search(record.title) or _HTML_LEFT.search(record.content):
        warnings.append(Finding("markup_left", "HTML tags or entities are left in the text"))
    if _garbled(record.title) or _garbled(record.content):
        warnings.append(Finding("mojibake", "text has broken characters (wrong character set)"))
    elif _REPLACEMENT in record.title or _REPLACEMENT in record.content:
        warnings.append(Finding("replacement_character", "a character was lost in decoding (U+FFFD)"))
    # The hot path turns every known region code into its name: digits left over are codes nobody knows.
    unknown = [region for region in record.target_region if region.isdigit()]
    if unknown:
        warnings.append(Finding("region_unrecognised", f"target region code {', '.join(unknown)[:60]} is unknown"))
    if record.original_url is not None and record.original_url.startswith("http://"):
        warnings.append(Finding("url_not_https", "original_url is not https"))
    return Validation(errors=tuple(errors), warnings=tuple(warnings))
