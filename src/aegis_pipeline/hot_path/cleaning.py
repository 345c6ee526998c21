"""The hot path's pure cleaning step: personal contact data masked, text normalised, regions made canonical.

What lives here:

- ``mask_personal_data(text) -> (masked_text, MaskCounts)`` and ``mask_text(text)``: phone and fax numbers,
  e-mail addresses and resident / foreign registration numbers in free Korean text replaced by fixed tokens.
- ``canonical_region(value)``: one name per 시·도 for the many ways sources write it (names and codes).
- ``normalize_record(record) -> CleanPolicy``: a validated ``RawPolicyData`` turned into what the hot path
  stores, caches and announces, with its ``content_hash`` and how much was masked.

No I/O, no clock, no logging: the same input always gives the same output. May import the standard library,
pydantic, orjson, ``schemas`` and ``collectors.parsing`` only (today it needs only the standard library,
orjson and ``schemas``: collectors already turned HTML into plain text with ``collectors.parsing.clean_text``,
which is far too slow for the hot path and has nothing left to do here).

Masking rules
-------------
Text is scanned with precompiled patterns, usually once (again only when a new token may have freed a
neighbour, see ``_mask``). Full-width digits and punctuation (``０１０－…``), Unicode dashes and no-break
spaces are read as their ASCII forms; the text that is not masked keeps its own characters.
A digit shape counts only when it is not glued to other digits: no digit directly before or after it, no
``digit-``/``digit.`` before it (so ``2026.02.123.4567`` and ``0.0212345678`` are numbers, not phones), no
``_`` before it (ids such as ``PBLN_0212345678``).

Phone and fax numbers (token ``[전화번호]``), recognised by shape, whatever word precedes them
(``☎``, ``Tel.``, ``FAX``, ``팩스``, ``담당자`` ...; the word itself is kept):

- domestic: an area or carrier prefix (``02``, ``031``-``033``, ``041``-``044``, ``051``-``055``,
  ``061``-``064``, mobile ``010``/``011``/``016``-``019``, ``070``, ``080``, ``060``, ``0502``-``0508``),
  then 3-4 digits, then 4 digits; groups joined by ``-`` or ``.`` (spaces allowed around them), by one
  space, or not at all (``01012345678``, ``0212345678``); the prefix may be in parentheses
  (``(02)123-4567``, ``02)123-4567``). Only ``0`` + a real prefix starts a phone, so dates (``2026-03-01``,
  ``20260301``), money, years and postal codes (``03154``) never do.
- international: ``+82`` or ``(+82)`` and the same number without its leading ``0``, with or without
  ``(0)`` (``+82-10-1234-5678``, ``+82 2 123 4567``).
- representative numbers ``15xx``/``16xx``/``18xx`` + 4 digits, joined by ``-`` or ``.`` only
  (``1588-1234``): two bare 4-digit numbers side by side in a table are not a phone. Directly followed by
  a unit (``1500-2000만원``, ``1600-1800명``, ``1800-1900년``) the shape is a range, not a phone; a bare
  ``1500-2000`` without a unit is masked (a lost range costs less than a leaked number).

E-mail addresses (token ``[이메일]``), found from each ``@`` (or ``＠``, ``(at)``, ``[at]``): the run of
ASCII local-part characters right before it (``chulsoo.kim+x``; its last 64 at most), and a dotted ASCII
domain ending in letters right after it (``kim@sd.go.kr``; ``[dot]`` accepted). Searching from the ``@``
keeps the cost independent of how much ASCII (HTML, base64) a text holds. ``서울@부산`` (joined values)
and ``@handle`` have no local part and are kept. E-mails are masked before numbers, so the digits of
``kim42@...`` belong to the address.

Not recognised, on purpose: ``82-10-...`` without ``+``; 4-digit public service numbers (``1357``,
``1350``, ``120``), which are not personal; numbers broken over two lines; addresses with a Korean
(IDN) local part or domain; names of 담당자 (no reliable shape).

Resident and foreign registration numbers (tokens ``[주민등록번호]``, ``[외국인등록번호]``): a real birth
date ``YYMMDD`` (month 01-12, day 01-31), then ``-`` (spaces allowed), one space or nothing, then 7 digits
whose first is 1-4 (residents) or 5-8 (foreigners); also the half-masked form sources publish
(``900101-1******``), since birth date and sex still identify. The check digit is not verified: numbers
issued since October 2020 have none. Corporate registration numbers (법인등록번호) of the same shape and a
valid-looking date are masked too.

Inside a URL (``http(s)://`` or ``www.``) only e-mails and numbers written with a separator (``-``,
``.``, space or parentheses) are masked: unseparated digit runs in a URL are ids (``?nttNo=0212345678``).
A bare string value that is exactly phone-shaped (``"0212345678"`` in raw_data) is masked: it cannot be
told apart from a phone number.

Tokens, not partial masks
-------------------------
Design §6.5 sketches ``mask_value`` keeping the first 2 and last 2 characters. That is not done here: the
last digits of a phone number are its most identifying part, and next to the 담당자 name and department
printed on the same line they single out one person; ``ki***kr`` still spells half a name. A fixed token
keeps the sentence readable (``☎ [전화번호]``), says what was there, can never be mistaken for data by search
or embeddings, and makes masking idempotent (a token contains no digit, ``@`` or shape of its own). Counts
per kind (``MaskCounts``) let the hot path report how much was masked without logging any of it.
Masking runs until nothing more matches, so ``mask_text(mask_text(x)) == mask_text(x)`` always holds.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from aegis_pipeline.schemas.records import RawPolicyData, without_control_characters

__all__ = [
    "EMAIL_TOKEN",
    "FOREIGNER_REGISTRATION_TOKEN",
    "NATIONWIDE",
    "PHONE_TOKEN",
    "RESIDENT_REGISTRATION_TOKEN",
    "CleanPolicy",
    "MaskCounts",
    "canonical_region",
    "mask_personal_data",
    "mask_text",
    "normalize_record",
]

PHONE_TOKEN = "[전화번호]"
EMAIL_TOKEN = "[이메일]"
RESIDENT_REGISTRATION_TOKEN = "[주민등록번호]"
FOREIGNER_REGISTRATION_TOKEN = "[외국인등록번호]"


@dataclass(frozen=True, slots=True)
class MaskCounts:
    """How many values of each kind were masked (never the values themselves). Adding two counts sums them."""

    phone_numbers: int = 0
    email_addresses: int = 0
    registration_numbers: int = 0  # resident and foreign registration numbers together

    @property
    def total(self) -> int:
        return self.phone_numbers + self.email_addresses + self.registration_numbers

    def __add__(self, other: MaskCounts) -> MaskCounts:
        return MaskCounts(
            self.phone_numbers + other.phone_numbers,
            self.email_addresses + other.email_addresses,
            self.registration_numbers + other.registration_numbers,
        )


# --- the patterns ----------------------------------------------------------------------------------------

# Full-width ASCII (U+FF01-FF5E), Unicode dashes and odd spaces are read as their ASCII forms. Every mapping is
# one character to one character, so a match's span in the folded view is its span in the original text.
_FOLD_TO_ASCII = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_FOLD_TO_ASCII.update({code: ord("-") for code in (*range(0x2010, 0x2016), 0x2212, 0xFE63)})
_FOLD_TO_ASCII.update({code: ord(" ") for code in (0x00A0, 0x2007, 0x2009, 0x202F, 0x3000)})
_NEEDS_FOLDING = re.compile("[" + "".join(re.escape(chr(code)) for code in sorted(_FOLD_TO_ASCII)) + "]")

# E-mail addresses are found from their "@" (or "(at)"), not by trying a local part at every letter: the
# cost then depends on the number of "@", not on how much ASCII (HTML, base64, URLs) the text holds.
_EMAIL_ANCHOR = re.compile(r"[@\[(](?:(?<=@)|(?<=[\[(]) ?(?i:at) ?[\])] ?)")
_AT_SIGN = re.compile("@")  # the same when the text has no "at" in any letter case: a literal is found faster
_LOCAL_PART_LENGTH = 64
_LOCAL_PART_AT_END = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+\-]*+\Z")  # searched with endpos = the anchor
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_DOT = r"(?:\.| ?[\[(] ?(?i:dot) ?[\])] ?)"
_DOMAIN = re.compile(rf"{_DOMAIN_LABEL}(?:{_DOT}{_DOMAIN_LABEL})*{_DOT}[A-Za-z]{{2,63}}")

# Python's regex engine jumps in C to the next character of a leading character class, but tries the whole
# pattern at every position otherwise (several times slower on Korean text). So each scanner consumes the
# first character of any candidate ("the lead", a class) and every alternative continues after it, checking
# the lead with a one-character lookbehind such as (?<=0). Read each alternative as: lead, then the rest.
_NOT_GLUED = r"(?<![0-9_].)(?<![0-9][-.].)"  # the lead does not continue a longer number or an id
_NOT_GLUED_AFTER = r"(?![0-9])"
_SEPARATOR = r"(?: ?[-.] ?| )"
_PREFIX_AFTER_ZERO = r"(?:2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|1[016-9]|70|80|60|50[2-8])"  # 02, 031, 010, 0505 ...
_SUBSCRIBER = rf"[0-9]{{3,4}}{_SEPARATOR}?[0-9]{{4}}"
_AFTER_PREFIX = rf"(?: ?\) ?|{_SEPARATOR})?{_SUBSCRIBER}"
_AFTER_COUNTRY_CODE = rf"{_SEPARATOR}?(?:\(0\) ?|0)?{_PREFIX_AFTER_ZERO}{_AFTER_PREFIX}"
_UNIT_AFTER_RANGE = r"(?:[원만억천백명개년월일건회세분초평곳배%㎡]|cc|km|kg|cm|mm|m(?![A-Za-z]))"
_REPRESENTATIVE = rf"(?<=1)[568][0-9]{{2}} ?[-.] ?[0-9]{{4}}(?![0-9])(?!{_UNIT_AFTER_RANGE})"  # 1588-1234

_PHONE_AFTER_LEAD = (
    rf"(?<=0){_PREFIX_AFTER_ZERO}{_AFTER_PREFIX}"                           # 02-123-4567, 01012345678
    rf"|(?<=\()(?: ?0{_PREFIX_AFTER_ZERO} ?\) ?{_SUBSCRIBER}"               # (02)123-4567
    rf"| ?\+ ?82\){_AFTER_COUNTRY_CODE})"                                   # (+82) 10-1234-5678
    rf"|(?<=\+) ?82{_AFTER_COUNTRY_CODE}"                                   # +82-10-1234-5678
    rf"|{_REPRESENTATIVE}"
)
# In a URL a domestic number needs a separator: bare digit runs there are ids.
_SEPARATED_PHONE_AFTER_LEAD = (
    rf"(?<=0){_PREFIX_AFTER_ZERO}(?:(?: ?\) ?|{_SEPARATOR}){_SUBSCRIBER}|[0-9]{{3,4}}{_SEPARATOR}[0-9]{{4}})"
    rf"|(?<=\()(?: ?0{_PREFIX_AFTER_ZERO} ?\) ?{_SUBSCRIBER}| ?\+ ?82\){_AFTER_COUNTRY_CODE})"
    rf"|(?<=\+) ?82{_AFTER_COUNTRY_CODE}"
    rf"|{_REPRESENTATIVE}"
)
_REGISTRATION_TAIL = r"(?P<holder>[1-8])(?:[0-9]{6}|[*xX●]{6})"
_BIRTH_DATE_AFTER_LEAD = r"(?<=[0-9])[0-9](?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"  # YYMMDD, lead = Y
_REGISTRATION_AFTER_LEAD = rf"{_BIRTH_DATE_AFTER_LEAD}(?: ?- ?| )?{_REGISTRATION_TAIL}"
_SEPARATED_REGISTRATION_AFTER_LEAD = rf"{_BIRTH_DATE_AFTER_LEAD}(?: ?- ?| ){_REGISTRATION_TAIL}"
_URL_AFTER_LEAD = r"(?:(?<=h)ttps?://|(?<=w)ww\.)[A-Za-z0-9\-._~:/?#@!$&*+;=%]+"

# Alternatives are tried in this order at each position: a URL is claimed before its digits are read as
# phones, a registration number before a phone.
_IN_TEXT = re.compile(
    rf"[hw0-9+(](?:(?P<url>{_URL_AFTER_LEAD})"
    rf"|{_NOT_GLUED}(?:(?P<registration>{_REGISTRATION_AFTER_LEAD})"
    rf"|(?P<phone>{_PHONE_AFTER_LEAD})){_NOT_GLUED_AFTER})"
)
_IN_URL = re.compile(
    rf"[0-9+(]{_NOT_GLUED}(?:(?P<registration>{_SEPARATED_REGISTRATION_AFTER_LEAD})"
    rf"|(?P<phone>{_SEPARATED_PHONE_AFTER_LEAD})){_NOT_GLUED_AFTER}"
)
# Text without any of these characters (most names, regions, industries) holds nothing to mask.
_ANY_CANDIDATE = re.compile(r"[0-9+(@\[\uff01-\uff5e]")

# After a number becomes a token, a number right behind it ("0212345678-1588-1234") or right before it is no
# longer glued to it and may match on a second scan.
_MAY_UNBLOCK_FOLLOWING = re.compile(r"[-.]?[0-9+(]")
_ASCII_DIGITS = frozenset("0123456789")
_FOREIGNER_HOLDER_DIGITS = frozenset("5678")

# Index of each kind in the running tally (a plain list is the cheapest counter to bump per match).
_PHONE, _EMAIL, _REGISTRATION = 0, 1, 2


def _new_tally() -> list[int]:
    return [0, 0, 0]


def _mask_emails(text: str, view: str, tally: list[int], anchors: re.Pattern[str]) -> tuple[str, str]:
    """Mask every e-mail address; returns the new text and its folded view."""
    pieces: list[str] = []
    kept_from = 0
    for anchor in anchors.finditer(view):
        local_end = anchor.start()
        if local_end < kept_from:
            continue  # inside the address just masked
        if view[local_end] != "@" and view[local_end - 1 : local_end] == " ":
            local_end -= 1  # "kim (at) mss.go.kr"
        local_part = _LOCAL_PART_AT_END.search(view, max(kept_from, local_end - _LOCAL_PART_LENGTH), local_end)
        domain = _DOMAIN.match(view, anchor.end())
        if local_part is None or domain is None:
            continue
        tally[_EMAIL] += 1
        pieces += (text[kept_from : local_part.start()], EMAIL_TOKEN)
        kept_from = domain.end()
    if not pieces:
        return text, view
    masked = "".join(pieces) + text[kept_from:]
    if view is text:
        return masked, masked
    return masked, masked.translate(_FOLD_TO_ASCII)


def _mask_pass(text: str, tally: list[int], *, in_url: bool = False) -> tuple[str, bool]:
    """One scan of `text`; returns the new text and whether another scan could find more.

    E-mails first: an address claims the digits of its local part before they can be read as a phone.
    """
    view = text.translate(_FOLD_TO_ASCII) if _NEEDS_FOLDING.search(text) else text
    spelled_at = "at" in view or "AT" in view or "At" in view or "aT" in view
    if spelled_at or "@" in view:
        text, view = _mask_emails(text, view, tally, _EMAIL_ANCHOR if spelled_at else _AT_SIGN)
    pieces: list[str] = []
    kept_from = 0
    scan_again = False
    for match in (_IN_URL if in_url else _IN_TEXT).finditer(view):
        kind = match.lastgroup
        start, end = match.span()
        if kind == "url":
            url = text[start:end]
            replacement, _ = _mask_pass(url, tally, in_url=True)
            if replacement == url:
                continue
            scan_again = True  # rare enough to simply look at everything again
        elif kind == "registration":
            tally[_REGISTRATION] += 1
            is_foreigner = match["holder"] in _FOREIGNER_HOLDER_DIGITS
            replacement = FOREIGNER_REGISTRATION_TOKEN if is_foreigner else RESIDENT_REGISTRATION_TOKEN
        else:
            tally[_PHONE] += 1
            replacement = PHONE_TOKEN
        if not scan_again:
            scan_again = _MAY_UNBLOCK_FOLLOWING.match(view, end) is not None or (
                start > 0 and view[start - 1] in _ASCII_DIGITS
            )
        pieces += (text[kept_from:start], replacement)
        kept_from = end
    if not pieces:
        return text, False
    pieces.append(text[kept_from:])
    return "".join(pieces), scan_again


def _mask(text: str, tally: list[int]) -> str:
    # Scanning again while a token may have freed a neighbour makes masking idempotent: the result holds
    # nothing any scan would mask. Each scan that masks replaces ASCII letters or digits by a token that has
    # none, so this ends; almost every text takes one scan.
    if _ANY_CANDIDATE.search(text) is None:
        return text
    scan_again = True
    while scan_again:
        text, scan_again = _mask_pass(text, tally)
    return text


def _counts(tally: list[int]) -> MaskCounts:
    return MaskCounts(
        phone_numbers=tally[_PHONE], email_addresses=tally[_EMAIL], registration_numbers=tally[_REGISTRATION]
    )


def mask_personal_data(text: str) -> tuple[str, MaskCounts]:
    """Replace phone/fax numbers, e-mail addresses and registration numbers in `text` by tokens.

    Returns the masked text and how many values of each kind were replaced. The rest of the text is kept
    character for character (no trimming, no Unicode normalisation). Never raises for a string; idempotent.
    The rules are in the module docstring.
    """
    tally = _new_tally()
    masked = _mask(text, tally)
    return masked, _counts(tally)


def mask_text(text: str) -> str:
    """`mask_personal_data` without the counts."""
    return _mask(text, _new_tally())


# --- regions ---------------------------------------------------------------------------------------------

# One row per 시·도: canonical name, administrative codes (행정표준코드 / 법정동코드, first two digits; the
# old codes of 강원 and 전북 before they became 특별자치도 too), and the other names sources use.
# Deliberately absent: "광주시" (also 경기도 광주시) and "제주시" (a city inside 제주특별자치도), which are kept
# as written; 통계청 statistical codes (21 부산, 26 울산 ...), which collide with the administrative ones.
_PROVINCES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("서울특별시", ("11",), ("서울", "서울시")),
    ("부산광역시", ("26",), ("부산", "부산시")),
    ("대구광역시", ("27",), ("대구", "대구시")),
    ("인천광역시", ("28",), ("인천", "인천시")),
    ("광주광역시", ("29",), ("광주",)),
    ("대전광역시", ("30",), ("대전", "대전시")),
    ("울산광역시", ("31",), ("울산", "울산시")),
    ("세종특별자치시", ("36",), ("세종", "세종시", "세종특별시")),
    ("경기도", ("41",), ("경기",)),
    ("강원특별자치도", ("51", "42"), ("강원", "강원도")),
    ("충청북도", ("43",), ("충북", "충북도")),
    ("충청남도", ("44",), ("충남", "충남도")),
    ("전북특별자치도", ("52", "45"), ("전북", "전북도", "전라북도")),
    ("전라남도", ("46",), ("전남", "전남도")),
    ("경상북도", ("47",), ("경북", "경북도")),
    ("경상남도", ("48",), ("경남", "경남도")),
    ("제주특별자치도", ("50",), ("제주", "제주도")),
)
NATIONWIDE = "전국"
PROVINCES = tuple(canonical for canonical, _, _ in _PROVINCES)  # the 17 시·도 by their canonical names


def _region_lookup() -> dict[str, str]:
    lookup = {NATIONWIDE: NATIONWIDE}
    for canonical, codes, other_names in _PROVINCES:
        for name in (canonical, *other_names):
            lookup[name] = canonical
        for code in codes:
            lookup[code] = canonical
            lookup[code + "00000000"] = canonical  # the 10-digit 법정동코드 of the 시·도 itself
    return lookup


_REGION_BY_NAME_OR_CODE = _region_lookup()
_WHITESPACE = re.compile(r"\s+")


def canonical_region(value: str) -> str:
    """The canonical name of a 시·도 (``서울`` / ``서울시`` / ``서울 특별시`` / ``11`` -> ``서울특별시``).

    Names are compared without whitespace; ``전국`` stays ``전국``; anything else (a 시·군·구, an unknown code,
    an ambiguous ``광주시``) is returned unchanged.
    """
    written_as_in_table = _REGION_BY_NAME_OR_CODE.get(value)
    if written_as_in_table is not None:
        return written_as_in_table
    key = _WHITESPACE.sub("", unicodedata.normalize("NFC", value))
    return _REGION_BY_NAME_OR_CODE.get(key, value)


# --- the clean record ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CleanPolicy:
    """A policy as the hot path stores it: every text masked, NFC-normalised and trimmed; regions canonical.

    ``raw_data`` is the source record, masked the same way (keys as they were); it is the only place the
    source's own fields survive. ``masked`` counts what was masked across all fields. ``content_hash`` is
    the SHA-256 of what is stored (see ``normalize_record``). The lists and ``raw_data`` are not to be mutated.
    """

    source_system: str
    external_id: str
    title: str
    content: str
    issuing_organization: str
    target_region: list[str]
    target_industry: list[str]
    funding_type: str | None
    application_start_date: date | None
    application_end_date: date | None
    original_url: str | None
    raw_data: dict[str, Any]
    collected_at: datetime
    collector_version: str
    content_hash: str
    masked: MaskCounts

    @property
    def record_key(self) -> str:
        return f"{self.source_system}:{self.external_id}"

    def as_document(self) -> dict[str, Any]:
        """The policy as a JSON-ready dict (dates and times as ISO 8601 text), for the cache.

        ``raw_data`` is left out: it can be as large as the content again and readers of the cache want the
        policy, not the source record (PostgreSQL keeps it). ``masked`` is left out: it is about this run.
        """
        return {
            "source_system": self.source_system,
            "external_id": self.external_id,
            "title": self.title,
            "content": self.content,
            "issuing_organization": self.issuing_organization,
            "target_region": list(self.target_region),
            "target_industry": list(self.target_industry),
            "funding_type": self.funding_type,
            "application_start_date": _iso(self.application_start_date),
            "application_end_date": _iso(self.application_end_date),
            "original_url": self.original_url,
            "content_hash": self.content_hash,
            "collected_at": self.collected_at.isoformat(),
            "collector_version": self.collector_version,
        }


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _clean_text(value: str, tally: list[int]) -> str:
    return _mask(unicodedata.normalize("NFC", value), tally).strip()


def _clean_items(values: list[str], tally: list[int]) -> list[str]:
    return list(dict.fromkeys(cleaned for cleaned in (_clean_text(value, tally) for value in values) if cleaned))


def _clean_regions(values: list[str], tally: list[int]) -> list[str]:
    # A value written exactly as in the region table (the usual case) has nothing to mask or normalise.
    regions = (
        _REGION_BY_NAME_OR_CODE.get(value) or canonical_region(_clean_text(value, tally)) for value in values
    )
    return list(dict.fromkeys(region for region in regions if region))


def _clean_raw(value: Any, tally: list[int]) -> Any:
    # Strings are masked and NFC-normalised but not trimmed: raw_data stays the source's record as delivered.
    # Control characters are removed from strings and keys (PostgreSQL refuses NUL even inside jsonb); keys are
    # otherwise kept; numbers, booleans and null cannot hold a separated phone number or an e-mail.
    if isinstance(value, str):
        return _mask(unicodedata.normalize("NFC", without_control_characters(value)), tally)
    if isinstance(value, dict):
        return {without_control_characters(key): _clean_raw(item, tally) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_raw(item, tally) for item in value]
    if isinstance(value, int) and not _JSON_INT_MIN <= value <= _JSON_INT_MAX:
        return str(value)  # JSON allows any integer; the store's encoder (orjson) takes 64 bits, so keep it as text
    return value


_JSON_INT_MIN, _JSON_INT_MAX = -(2**63), 2**64 - 1


def _clean_url(value: str | None, tally: list[int]) -> str | None:
    # The link must keep working, so only what would be masked inside a URL in text is masked (e-mails,
    # separated numbers); ids made of digits stay.
    if value is None:
        return None
    url = unicodedata.normalize("NFC", value).strip()
    scan_again = _ANY_CANDIDATE.search(url) is not None
    while scan_again:
        url, scan_again = _mask_pass(url, tally, in_url=True)
    return url


HASH_SCHEME = "clean-policy/1"  # part of the hashed text: a change of what is hashed changes every hash once


def _content_hash(
    source_system: str,
    external_id: str,
    title: str,
    content: str,
    issuing_organization: str,
    target_region: list[str],
    target_industry: list[str],
    funding_type: str | None,
    application_start_date: date | None,
    application_end_date: date | None,
    original_url: str | None,
) -> str:
    # A JSON array in a fixed order: unambiguous (strings are quoted and escaped), no key sorting needed,
    # and cheaper than dumping a dict. orjson writes the same bytes as json.dumps(ensure_ascii=False,
    # separators=(",", ":")) for strings, lists and null (tests/unit/test_cleaning.py holds it to that) in a
    # fifth of the time.
    canonical = orjson.dumps([
        HASH_SCHEME, source_system, external_id, title, content, issuing_organization, target_region,
        target_industry, funding_type, _iso(application_start_date), _iso(application_end_date), original_url,
    ])
    return hashlib.sha256(canonical).hexdigest()


def normalize_record(record: RawPolicyData) -> CleanPolicy:
    """Turn a validated record into the `CleanPolicy` to store.

    - title, content, issuing_organization, funding_type and every target_region / target_industry item:
      Unicode NFC, personal data masked, trimmed. A blank funding_type becomes ``None``; blank list items are
      dropped and repeats removed (first position kept).
    - target_region: each item through `canonical_region` (before de-duplication, so ``서울`` and
      ``서울특별시`` become one).
    - raw_data: every string at any depth NFC-normalised and masked, control characters removed (from keys
      too); keys, structure and other values kept.
    - original_url: masked as a URL (e-mails and separated numbers only), so the link keeps working.
    - source_system, external_id, collected_at, collector_version: from ``collection_metadata``, unchanged.

    ``content_hash`` is the SHA-256 (hex) of the stored, meaningful fields: source, external id, title, content,
    organisation, regions, industries, funding type, dates and URL. Not hashed: collected_at and
    collector_version (when or how it was collected is not news) and raw_data (like
    `RawPolicyData.content_hash`: unmapped source fields changing is not a new version). It differs from
    `RawPolicyData.content_hash` because it hashes what is stored, after masking and normalisation: two
    records the store cannot tell apart get the same hash.
    """
    tally = _new_tally()
    metadata = record.collection_metadata
    title = _clean_text(record.title, tally)
    content = _clean_text(record.content, tally)
    issuing_organization = _clean_text(record.issuing_organization, tally)
    target_region = _clean_regions(record.target_region, tally)
    target_industry = _clean_items(record.target_industry, tally)
    funding_type = (_clean_text(record.funding_type, tally) or None) if record.funding_type is not None else None
    original_url = _clean_url(record.original_url, tally)
    raw_data = _clean_raw(record.raw_data, tally)
    return CleanPolicy(
        source_system=metadata.source,
        external_id=metadata.external_id,
        title=title,
        content=content,
        issuing_organization=issuing_organization,
        target_region=target_region,
        target_industry=target_industry,
        funding_type=funding_type,
        application_start_date=record.application_start_date,
        application_end_date=record.application_end_date,
        original_url=original_url,
        raw_data=raw_data,
        collected_at=metadata.collected_at,
        collector_version=metadata.collector_version,
        content_hash=_content_hash(
            metadata.source, metadata.external_id, title, content, issuing_organization, target_region,
            target_industry, funding_type, record.application_start_date, record.application_end_date,
            original_url,
        ),
        masked=_counts(tally),
    )
