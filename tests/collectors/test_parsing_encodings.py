"""Unit tests of collectors/parsing/encodings.py: decoding fetched bodies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_pipeline.collectors.parsing.encodings import decode_body

# --- decode_body -------------------------------------------------------------------------

KOREAN = "지원사업 공고: 똠방각하"  # '똠' exists only in cp949, not in EUC-KR proper
KOREAN_EUC_KR_SAFE = "지원사업 공고"


def page(charset_meta: str, text: str) -> str:
    return f"<html><head>{charset_meta}</head><body>{text}</body></html>"


META_EUC_KR = '<meta charset="euc-kr">'
HTTP_EQUIV_EUC_KR = '<meta http-equiv="Content-Type" content="text/html; charset=EUC-KR">'

DECODINGS = [
    (page(META_EUC_KR, KOREAN_EUC_KR_SAFE).encode("euc-kr"), None, None, "meta-euc-kr"),
    (page(HTTP_EQUIV_EUC_KR, KOREAN_EUC_KR_SAFE).encode("euc-kr"), None, None, "http-equiv-euc-kr"),
    (page(META_EUC_KR, KOREAN_EUC_KR_SAFE).encode("euc-kr"), "utf-8", None, "meta-beats-wrong-header"),
    (page(META_EUC_KR, KOREAN).encode("cp949"), "utf-8", None, "cp949-only-syllable-under-euc-kr"),
    (page("", KOREAN).encode("cp949"), "utf-8", None, "wrong-header-no-meta-falls-back-to-cp949"),
    (page("", KOREAN).encode("cp949"), "ISO-8859-1", None, "latin1-header-tried-last"),
    (page("", KOREAN).encode("cp949"), "ks_c_5601-1987", None, "ks_c_5601-header"),
    (page("", KOREAN).encode("cp949"), "x-windows-949", None, "windows-949-header"),
    (page("", KOREAN).encode("cp949"), None, None, "no-declaration-cp949"),
    (page("", KOREAN).encode("utf-8"), None, None, "no-declaration-utf-8"),
    (page("", KOREAN).encode("utf-8"), "utf-8", None, "utf-8-header"),
    (page(META_EUC_KR, KOREAN).encode("utf-8"), None, None, "meta-wrong-body-utf-8"),
    (page("", KOREAN).encode("utf-8"), "no-such-charset", None, "unknown-header-skipped"),
    (page('<meta charset="hex">', KOREAN).encode("utf-8"), None, None, "bytes-codec-meta-skipped"),
    (b"\xef\xbb\xbf" + page("", KOREAN).encode("utf-8"), "euc-kr", None, "utf-8-bom"),
    (b"\xff\xfe" + page("", KOREAN).encode("utf-16-le"), None, None, "utf-16-bom"),
    (page('<meta charset="utf-8">', KOREAN).encode("cp949"), "utf-8", "euc-kr", "override-wins"),
    (
        f'<?xml version="1.0" encoding="EUC-KR"?><response><item>{KOREAN}</item></response>'.encode("cp949"),
        None,
        None,
        "xml-declaration",
    ),
]


@pytest.mark.parametrize(
    ("body", "header_charset", "override"), [c[:3] for c in DECODINGS], ids=[c[3] for c in DECODINGS]
)
def test_decode_body_finds_the_real_charset(body: bytes, header_charset: str | None, override: str | None) -> None:
    decoded = decode_body(body, header_charset=header_charset, override=override)
    assert KOREAN_EUC_KR_SAFE in decoded
    assert "\ufffd" not in decoded
    assert not decoded.startswith("\ufeff")


def test_decode_body_reads_declarations_only_in_the_first_2_kb() -> None:
    # "한글" in UTF-8 also decodes as KOI8-R, so the declaration decides what comes out.
    early = page('<meta charset="koi8-r">', "한글").encode("utf-8")
    late = ("<!--" + " " * 2100 + "-->" + page('<meta charset="koi8-r">', "한글")).encode("utf-8")
    assert "한글" not in decode_body(early)
    assert "한글" in decode_body(late)


def test_decode_body_replaces_broken_bytes_with_the_least_damaged_decoding() -> None:
    body = page(META_EUC_KR, KOREAN_EUC_KR_SAFE).encode("euc-kr") + b"\xff"
    decoded = decode_body(body, header_charset="utf-8")
    assert KOREAN_EUC_KR_SAFE in decoded
    assert decoded.count("\ufffd") == 1


def test_decode_body_override_replaces_broken_bytes() -> None:
    assert decode_body("한글".encode("cp949"), override="utf-8").count("\ufffd") >= 1


def test_decode_body_unknown_override_is_a_configuration_error() -> None:
    with pytest.raises(LookupError, match="no-such-charset"):
        decode_body(b"x", override="no-such-charset")


# --- properties --------------------------------------------------------------------------

@given(st.binary(), st.sampled_from([None, "utf-8", "euc-kr", "iso-8859-1", "bogus"]))
def test_decode_body_never_raises(body: bytes, header_charset: str | None) -> None:
    assert isinstance(decode_body(body, header_charset=header_charset), str)


@given(st.text().filter(lambda text: "<" not in text and not text.startswith("\ufeff")))
def test_decode_body_reads_undeclared_utf_8_back(text: str) -> None:
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be sent at all
        return
    assert decode_body(body) == text
