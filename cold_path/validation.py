"""Full validation of a stored policy (the hot path only checked types and lengths): what makes a record
unusable (errors: it is rejected with DP_2001 whatever its score) and what makes it doubtful (warnings: they
lower its accuracy).

Pure: no I/O; `today` is passed in. Each finding has a stable `check` name (used by scoring and in tests) and a
message for people (it ends up in `status_reasons` and the event's `reasons`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from cold_path.features import nfc
from cold_path.records import PolicyRecord

MIN_TITLE_CHARACTERS = 4      # meaningful characters (letters, digits, Hangul) of a usable title
MIN_CONTENT_CHARACTERS = 20   # ... of a usable body
MAX_TITLE_CHARACTERS = 200    # longer: a body pasted into the title
EARLIEST_YEAR = 2000
YEARS_AHEAD = 5               # a date further in the future than this is a typo

_MEANINGFUL = re.compile(r"[0-9A-Za-z가-힣]")
_PLACEHOLDERS = frozenset({
    "제목없음", "무제", "untitled", "test", "테스트", "미정", "없음", "null", "none", "na", "tbd",
})
_HTML_LEFT = re.compile(r"<\s*/?\s*[a-zA-Z][^>]{0,100}>|&(?:[a-zA-Z]{2,8}|#[0-9]{2,5});")
# U+FFFD; EUC-KR read as Latin-1 (runs of Latin-1 symbols and letters: "ÇÁ·Î±×·¥"); UTF-8 read as Latin-1
# (a lead byte of Hangul, "ì"/"í"/"ë"/"ê", followed by a continuation byte).
_MOJIBAKE = re.compile(r"\ufffd|[\xa1-\xff]{4,}|[ìíëê][\x80-\xbf]")


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


def _meaningful_length(text: str) -> int:
    return len(_MEANINGFUL.findall(text))


def _is_placeholder(text: str) -> bool:
    return "".join(_MEANINGFUL.findall(nfc(text).lower())) in _PLACEHOLDERS


def _plausible(day: date | None, today: date) -> bool:
    return day is None or EARLIEST_YEAR <= day.year <= today.year + YEARS_AHEAD


def validate(record: PolicyRecord, *, today: date) -> Validation:
    """Every check on one record; see the module docstring for errors versus warnings."""
    errors: list[Finding] = []
    warnings: list[Finding] = []

    if _meaningful_length(record.title) < MIN_TITLE_CHARACTERS or _is_placeholder(record.title):
        errors.append(Finding("title_unusable", f"title {record.title[:40]!r} does not name a program"))
    if _meaningful_length(record.content) < MIN_CONTENT_CHARACTERS or _is_placeholder(record.content):
        errors.append(Finding("content_unusable",
                              f"content has fewer than {MIN_CONTENT_CHARACTERS} meaningful characters"))
    if _is_placeholder(record.issuing_organization) or _meaningful_length(record.issuing_organization) < 2:
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
    if _MOJIBAKE.search(record.title) or _MOJIBAKE.search(record.content):
        warnings.append(Finding("mojibake", "text has broken characters (wrong character set)"))
    if nfc(record.content).strip() == nfc(record.title).strip():
        warnings.append(Finding("content_is_title", "content only repeats the title"))
    # The hot path turns every known region code into its name: digits left over are codes nobody knows.
    unknown = [region for region in record.target_region if region.isdigit()]
    if unknown:
        warnings.append(Finding("region_unrecognised", f"target region code {', '.join(unknown)[:60]} is unknown"))
    if record.original_url is not None and record.original_url.startswith("http://"):
        warnings.append(Finding("url_not_https", "original_url is not https"))
    return Validation(errors=tuple(errors), warnings=tuple(warnings))
