"""Character encodings: a fetched body (bytes) to text, distrusting wrong charset declarations
(`decode_body`). Korean sources declare EUC-KR and send cp949, or label UTF-8 bodies as latin-1. Pure; imports
only the standard library.
"""

from __future__ import annotations

import codecs
import re

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
