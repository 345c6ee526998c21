"""Masking of personal data: phone and fax numbers, e-mail addresses and resident / foreign registration numbers
in free Korean text replaced by fixed tokens.

What lives here:

- ``mask_personal_data(text) -> (masked_text, MaskCounts)`` and ``mask_text(text)``: the rules below, on any text.
- ``mask_url(url)``: the same inside a link that must keep working (e-mails and separated numbers only).
- The tokens (``PHONE_TOKEN`` ...) and ``MaskCounts`` (how many values of each kind were masked, never the
  values).
- For the policy's cleaning (``domain.cleaning``), which masks many fields and counts them together: a running
  ``Tally`` (``new_tally``), ``mask_counted(text, tally)``, ``mask_url_counted(url, tally)`` and
  ``counts_of(tally)``.

Every text that leaves the pipeline towards people or other services is masked with these rules: the stored
policy (the hot path's cleaning), every log line (``common.logging``) and every dead letter
(``stores.dead_letters``), which import ``mask_text`` from here directly, so masking cannot be forgotten.
Identifiers are not masked but hashed, whole, when these rules find personal data in them (a record id, a Kafka
key, a field name: a token would merge two records into one): ``domain.identifiers``.

No I/O, no clock, no logging: the same input always gives the same output. May import the standard library only.

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

import re
from dataclasses import dataclass

__all__ = [
    "EMAIL_TOKEN",
    "FOREIGNER_REGISTRATION_TOKEN",
    "PHONE_TOKEN",
    "RESIDENT_REGISTRATION_TOKEN",
    "MaskCounts",
    "Tally",
    "counts_of",
    "mask_counted",
    "mask_personal_data",
    "mask_text",
    "mask_url",
    "mask_url_counted",
    "new_tally",
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
Tally = list[int]  # counts per kind while masking, by the indexes above; `counts_of` reads it


def new_tally() -> Tally:
    """An empty running count, for `mask_counted` and `mask_url_counted`."""
    return [0, 0, 0]


def _mask_emails(text: str, view: str, tally: Tally, anchors: re.Pattern[str]) -> tuple[str, str]:
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


def _mask_pass(text: str, tally: Tally, *, in_url: bool = False) -> tuple[str, bool]:
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


def _mask(text: str, tally: Tally) -> str:
    # Scanning again while a token may have freed a neighbour makes masking idempotent: the result holds
    # nothing any scan would mask. Each scan that masks replaces ASCII letters or digits by a token that has
    # none, so this ends; almost every text takes one scan.
    if _ANY_CANDIDATE.search(text) is None:
        return text
    scan_again = True
    while scan_again:
        text, scan_again = _mask_pass(text, tally)
    return text


def counts_of(tally: Tally) -> MaskCounts:
    """What a running count holds, as `MaskCounts`."""
    return MaskCounts(
        phone_numbers=tally[_PHONE], email_addresses=tally[_EMAIL], registration_numbers=tally[_REGISTRATION]
    )


def mask_personal_data(text: str) -> tuple[str, MaskCounts]:
    """Replace phone/fax numbers, e-mail addresses and registration numbers in `text` by tokens.

    Returns the masked text and how many values of each kind were replaced. The rest of the text is kept
    character for character (no trimming, no Unicode normalisation). Never raises for a string; idempotent.
    The rules are in the module docstring.
    """
    tally = new_tally()
    masked = _mask(text, tally)
    return masked, counts_of(tally)


def mask_text(text: str) -> str:
    """`mask_personal_data` without the counts."""
    return _mask(text, new_tally())


def mask_counted(text: str, tally: Tally) -> str:
    """`mask_text`, adding what it masked to `tally`."""
    return _mask(text, tally)


def mask_url_counted(url: str, tally: Tally) -> str:
    """`mask_url`, adding what it masked to `tally`."""
    # The link must keep working, so only what would be masked inside a URL in text is masked (e-mails,
    # separated numbers); ids made of digits stay.
    scan_again = _ANY_CANDIDATE.search(url) is not None
    while scan_again:
        url, scan_again = _mask_pass(url, tally, in_url=True)
    return url


def mask_url(url: str) -> str:
    """A link with the personal data it carries masked as inside a URL in text (e-mails and numbers written with a
    separator; ids made of digits stay), so it keeps working. No trimming, no Unicode normalisation."""
    return mask_url_counted(url, new_tally())


