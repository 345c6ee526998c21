"""Unit tests of the pure value parsers in collectors/parsing.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_pipeline.collectors.parsing import (
    KST,
    VALUE_PARSERS,
    DateRange,
    ValueParseError,
    clean_text,
    decode_body,
    join_url,
    parse_date,
    parse_date_range,
    parse_rfc822_datetime,
    split_list,
)

MARCH_1 = date(2026, 3, 1)
MARCH_31 = date(2026, 3, 31)

# --- parse_date --------------------------------------------------------------------------

DATE_FORMS = [
    ("20260301", MARCH_1, "compact"),
    ("2026-03-01", MARCH_1, "iso"),
    ("2026.03.01", MARCH_1, "dotted"),
    ("2026. 3. 1.", MARCH_1, "dotted-spaced-korean-style"),
    ("2026.3.1", MARCH_1, "dotted-no-padding"),
    ("2026/03/01", MARCH_1, "slashed"),
    ("2026년 3월 1일", MARCH_1, "korean"),
    ("2026년03월01일", MARCH_1, "korean-no-spaces"),
    ("2026-03-01T09:00:00", MARCH_1, "iso-datetime"),
    ("2026-03-01T09:00:00+09:00", MARCH_1, "iso-datetime-offset"),
    ("2026-03-01T09:00:00Z", MARCH_1, "iso-datetime-utc"),
    ("2026-03-01 09:00", MARCH_1, "datetime-minutes"),
    ("20260301 09:00:00.0", MARCH_1, "compact-datetime-fraction"),
    ("2026.03.31 24:00", MARCH_31, "end-of-day-keeps-its-day"),
    ("2026.03.02(월)", date(2026, 3, 2), "korean-weekday"),
    ("2026. 3. 2.(월) 18:00", date(2026, 3, 2), "korean-weekday-and-time"),
    ("2026년 3월 2일 (월요일)", date(2026, 3, 2), "korean-long-weekday"),
    ("  2026-03-01\n", MARCH_1, "surrounding-whitespace"),
    ("２０２６－０３－０１", MARCH_1, "full-width"),
    ("Mon, 02 Mar 2026 09:00:00 +0900", date(2026, 3, 2), "rfc822"),
    ("Mon, 02 Mar 2026 23:30:00 GMT", date(2026, 3, 2), "rfc822-date-as-written-not-converted"),
    ("02 Mar 2026 09:00 KST", date(2026, 3, 2), "rfc822-no-weekday"),
]


@pytest.mark.parametrize(("text", "expected"), [c[:2] for c in DATE_FORMS], ids=[c[2] for c in DATE_FORMS])
def test_parse_date_accepts_every_source_form(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", [None, "", "   ", "\t\n"], ids=["none", "empty", "spaces", "tab-newline"])
def test_parse_date_missing_is_none(text: str | None) -> None:
    assert parse_date(text) is None


BAD_DATES = [
    ("2026-13-45", "impossible date", "month-13-day-45"),
    ("20260230", "impossible date", "february-30-compact"),
    ("2026.02.29", "impossible date", "february-29-non-leap-year"),
    ("2026년 4월 31일", "impossible date", "april-31-korean"),
    ("2026-03-01 25:00", "impossible time", "hour-25"),
    ("2026-03-01 24:30", "impossible time", "after-end-of-day"),
    ("2026-03-01T09:00+25:00", "impossible time zone offset", "offset-25-hours"),
    ("2026-03.01", "unrecognised date", "mixed-separators"),
    ("2026-3", "unrecognised date", "no-day"),
    ("03/01/2026", "unrecognised date", "us-order"),
    ("2026-03-01 ~ 2026-03-31", "unrecognised date", "a-range-is-not-a-date"),
    ("추후 공지", "unrecognised date", "free-text"),
    ("Mon, 02 Mar 2026 09:00:00 XYZ", "unknown time zone", "rfc822-unknown-zone"),
    ("Mon, 31 Feb 2026 09:00:00 +0900", "impossible RFC 822 date-time", "rfc822-february-31"),
]


@pytest.mark.parametrize(("text", "reason"), [c[:2] for c in BAD_DATES], ids=[c[2] for c in BAD_DATES])
def test_parse_date_rejects_impossible_or_unknown_text(text: str, reason: str) -> None:
    with pytest.raises(ValueParseError, match=reason) as raised:
        parse_date(text)
    assert raised.value.value == text
    assert repr(text) in str(raised.value)


# Sources fill a date field they have no date for with a sentinel: "no deadline" or "not announced", never a date.
NO_DATE_SENTINELS = [
    ("99991231", "kstartup-far-future-compact"),
    ("9999-12-31", "far-future-iso"),
    ("9999.12.31", "far-future-dotted"),
    ("29991231", "kstartup-2999-compact"),
    ("2999-12-31", "2999-iso"),
    ("20991231", "2099-compact"),
    ("2099-12-31 23:59:59", "2099-with-time"),
    ("21001231", "22nd-century"),
    ("00000000", "all-zero-compact"),
    ("0000-00-00", "all-zero-iso"),
    ("0000.00.00", "all-zero-dotted"),
    ("0000-01-01", "year-zero"),
    ("1900-01-01", "far-past-default"),
    ("00010101", "year-one"),
    ("2026-00-00", "month-and-day-not-announced"),
    ("２９９９－１２－３１", "full-width-sentinel"),
    ("Fri, 31 Dec 9999 00:00:00 +0900", "rfc822-far-future"),
]


@pytest.mark.parametrize("text", [c[0] for c in NO_DATE_SENTINELS], ids=[c[1] for c in NO_DATE_SENTINELS])
def test_parse_date_reads_a_sentinel_as_no_date(text: str) -> None:
    assert parse_date(text) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("2027-12-31", date(2027, 12, 31)),
    ("20301231", date(2030, 12, 31)),
    ("2098-12-31", date(2098, 12, 31)),   # not a sentinel: the cold path judges whether it is plausible
    ("1901-01-01", date(1901, 1, 1)),
], ids=["next-year", "2030", "last-year-before-sentinels", "first-year-after-sentinels"])
def test_parse_date_keeps_real_far_dates(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2026.12.31까지", date(2026, 12, 31)),
    ("2026. 12. 31.(목) 18:00 까지", date(2026, 12, 31)),
], ids=["gov24-until", "until-with-weekday-and-time"])
def test_parse_date_accepts_until(text: str, expected: date) -> None:
    assert parse_date(text) == expected


def test_value_parse_error_is_a_value_error_and_shortens_long_values() -> None:
    with pytest.raises(ValueError, match=r"\.\.\.$") as raised:
        parse_date("x" * 1000)
    assert len(str(raised.value)) < 300


# --- parse_date_range --------------------------------------------------------------------

RANGES = [
    ("2021-12-06 ~ 2021-12-17", DateRange(date(2021, 12, 6), date(2021, 12, 17)), "bizinfo-iso"),
    ("2026.03.01~2026.03.31", DateRange(MARCH_1, MARCH_31), "dotted-no-spaces"),
    ("20260301 ~ 20260331", DateRange(MARCH_1, MARCH_31), "compact"),
    ("2026. 3. 1. ~ 2026. 3. 31.", DateRange(MARCH_1, MARCH_31), "korean-dotted"),
    ("2026-03-01 09:00 ~ 2026-03-31 18:00", DateRange(MARCH_1, MARCH_31), "with-times"),
    ("2026.03.01(일) ~ 2026.03.31(화)", DateRange(MARCH_1, MARCH_31), "with-weekdays"),
    ("2026-03-01～2026-03-31", DateRange(MARCH_1, MARCH_31), "full-width-tilde"),
    ("2026-03-01 〜 2026-03-31", DateRange(MARCH_1, MARCH_31), "wave-dash"),
    ("2026-03-01 ∼ 2026-03-31", DateRange(MARCH_1, MARCH_31), "tilde-operator"),
    ("2026-03-01 ~ 2026-03-01", DateRange(MARCH_1, MARCH_1), "single-day"),
    ("2026-03-01", DateRange(MARCH_1, None), "one-date-is-start"),
    ("2026-03-01 ~", DateRange(MARCH_1, None), "open-end"),
    ("~ 2026-03-31", DateRange(None, MARCH_31), "until"),
    (
        "2026-03-01 ~ 예산 소진시까지",
        DateRange(MARCH_1, None, note="2026-03-01 ~ 예산 소진시까지"),
        "start-then-words",
    ),
    ("2026.12.31까지", DateRange(None, date(2026, 12, 31)), "gov24-until-is-the-end"),
    ("20260301 ~ 99991231", DateRange(MARCH_1, None, note="20260301 ~ 99991231"), "sentinel-end"),
    ("00000000 ~ 00000000", DateRange(None, None, note="00000000 ~ 00000000"), "all-zero-sides"),
    ("2026-03-01 ~ 2026-03-31까지", DateRange(MARCH_1, MARCH_31), "range-with-until"),
    (None, DateRange(None, None), "none"),
    ("", DateRange(None, None), "empty"),
    ("  ", DateRange(None, None), "blank"),
    ("~", DateRange(None, None), "lone-separator"),
]


@pytest.mark.parametrize(("text", "expected"), [c[:2] for c in RANGES], ids=[c[2] for c in RANGES])
def test_parse_date_range(text: str | None, expected: DateRange) -> None:
    assert parse_date_range(text) == expected


NO_FIXED_DATE = ["추후 공지", "상시 접수", "예산 소진시까지", "별도 공지", "수시", "공고문 참조", "상시신청",
                 "예산 소진 시까지"]


@pytest.mark.parametrize("text", NO_FIXED_DATE, ids=NO_FIXED_DATE)
def test_parse_date_range_keeps_free_text_as_note(text: str) -> None:
    assert parse_date_range(f" {text} ") == DateRange(None, None, note=text)


BAD_RANGES = [
    ("2026-03-31 ~ 2026-03-01", "ends before it starts", "end-before-start"),
    ("2026-03-01 ~ 2026-02-30", "impossible date in range", "impossible-end"),
    ("2026-13-01 ~ 2026-12-31", "impossible date in range", "impossible-start"),
    ("20260230", "impossible date in range", "impossible-single-date"),
    ("2026-03-1x ~ 2026-03-31", "unrecognised date in range", "garbled-start"),
    ("2026-03-01 ~ 3. 31.", "unrecognised date in range", "end-without-year-is-not-guessed"),
    ("2026년 하반기", "unrecognised date in range", "digits-but-no-date"),
    ("2026-03-01 ~ 2026-03-15 ~ 2026-03-31", "more than one range separator", "two-separators"),
]


@pytest.mark.parametrize(("text", "reason"), [c[:2] for c in BAD_RANGES], ids=[c[2] for c in BAD_RANGES])
def test_parse_date_range_rejects_broken_dates(text: str, reason: str) -> None:
    with pytest.raises(ValueParseError, match=reason):
        parse_date_range(text)


# --- parse_rfc822_datetime ---------------------------------------------------------------

RFC822 = [
    ("Mon, 02 Mar 2026 09:00:00 +0900", datetime(2026, 3, 2, 9, tzinfo=KST), "kst-offset"),
    ("Mon, 02 Mar 2026 00:00:00 GMT", datetime(2026, 3, 2, tzinfo=UTC), "gmt"),
    ("Mon, 02 Mar 2026 00:00:00 -0000", datetime(2026, 3, 2, tzinfo=UTC), "minus-zero-is-utc"),
    ("Mon, 02 Mar 2026 09:00:00 KST", datetime(2026, 3, 2, 9, tzinfo=KST), "kst-name-not-read-as-utc"),
    ("Mon, 02 Mar 2026 09:00:00", datetime(2026, 3, 2, 9, tzinfo=KST), "no-zone-assumes-kst"),
    ("Mon, 02 Mar 2026 09:00 +09:00", datetime(2026, 3, 2, 9, tzinfo=KST), "colon-offset-no-seconds"),
    ("Sun, 02 Mar 2026 09:00:00 +0900", datetime(2026, 3, 2, 9, tzinfo=KST), "wrong-weekday-ignored"),
    (
        "Mon, 02 Mar 2026 04:00:00 EST",
        datetime(2026, 3, 2, 4, tzinfo=timezone(timedelta(hours=-5))),
        "us-zone",
    ),
    ("2 Mar 26 09:00 +0900", datetime(2026, 3, 2, 9, tzinfo=KST), "two-digit-year"),
    ("Monday, 02 March 2026", datetime(2026, 3, 2, tzinfo=KST), "long-names-no-time"),
]


@pytest.mark.parametrize(("text", "expected"), [c[:2] for c in RFC822], ids=[c[2] for c in RFC822])
def test_parse_rfc822_datetime(text: str, expected: datetime) -> None:
    parsed = parse_rfc822_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


def test_parse_rfc822_datetime_assumed_zone_can_be_changed() -> None:
    parsed = parse_rfc822_datetime("Mon, 02 Mar 2026 09:00:00", assume_tz=UTC)
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    ["2026-03-02T09:00:00", "Mon, 02 Foo 2026 09:00:00", "Mon, 02 Mar 2026 09:00:00 +2400", ""],
    ids=["iso", "unknown-month", "offset-24h", "empty"],
)
def test_parse_rfc822_datetime_rejects(text: str) -> None:
    with pytest.raises(ValueParseError):
        parse_rfc822_datetime(text)


# --- split_list --------------------------------------------------------------------------

LISTS = [
    ("서울@부산@대구", "@", ["서울", "부산", "대구"], "plain"),
    (" 서울 @ 부산 ", "@", ["서울", "부산"], "trims"),
    ("서울@@부산@", "@", ["서울", "부산"], "drops-empties"),
    ("부산@서울@부산@서울", "@", ["부산", "서울"], "dedupes-keeping-first-position"),
    ("서울", "@", ["서울"], "single"),
    ("@ @", "@", [], "only-separators"),
    ("", "@", [], "empty"),
    (None, "@", [], "none"),
    ("창업, 서울,중소기업", ",", ["창업", "서울", "중소기업"], "comma"),
]


@pytest.mark.parametrize(("text", "separator", "expected"), [c[:3] for c in LISTS], ids=[c[3] for c in LISTS])
def test_split_list(text: str | None, separator: str, expected: list[str]) -> None:
    assert split_list(text, separator) == expected


def test_split_list_rejects_empty_separator() -> None:
    with pytest.raises(ValueError, match="separator"):
        split_list("a@b", "")


# --- clean_text --------------------------------------------------------------------------

TEXTS = [
    ("&#40;주&#41;에이지스", "(주)에이지스", "numeric-entities-parens"),
    ("&#x28;hex&#x29;", "(hex)", "hex-entities"),
    ("R&amp;D 지원", "R&D 지원", "amp"),
    ("R&D 지원", "R&D 지원", "bare-ampersand-kept"),
    ("지원&nbsp;&nbsp;&nbsp;대상", "지원 대상", "nbsp-collapsed"),
    ("&lt;p&gt;지원 내용&lt;/p&gt;", "지원 내용", "escaped-html-decoded-twice"),
    ("&amp;lt;", "<", "double-escaped-entity-decoded-twice"),
    ("&amp;amp;lt;", "&lt;", "third-layer-left-alone"),
    ("금리 3% < 5%", "금리 3% < 5%", "literal-less-than"),
    ("<script>alert('x')</script>본문", "본문", "script-contents-dropped"),
    ("<SCRIPT type='text/javascript'>var a = '<p>';</SCRIPT>본문", "본문", "script-upper-case"),
    ("<style>p { color: red }</style>본문", "본문", "style-contents-dropped"),
    ("&lt;script&gt;alert(1)&lt;/script&gt;본문", "본문", "escaped-script-dropped"),
    ("<textarea><script>x</script></textarea>본문", "본문", "script-inside-rcdata-dropped"),
    ("본문<!-- 주석 -->", "본문", "comment-dropped"),
    ("첫 줄<br>둘째 줄<br/>셋째 줄", "첫 줄\n둘째 줄\n셋째 줄", "br-to-newline"),
    ("<p>첫 문단</p><p>둘째 문단</p>", "첫 문단\n둘째 문단", "paragraph-to-newline"),
    ("<ul><li>하나</li><li>둘</li></ul>", "하나\n둘", "list-items"),
    ("<table><tr><td>지역</td><td>서울</td></tr></table>", "지역 서울", "table-cells-spaced"),
    ("첫 줄\r\n둘째 줄\r셋째 줄", "첫 줄\n둘째 줄\n셋째 줄", "crlf-and-cr"),
    ("첫 줄\r\n\r\n\r\n둘째 줄", "첫 줄\n둘째 줄", "blank-lines-collapsed"),
    ("  지원   \t 대상\u3000\u3000내용  ", "지원 대상 내용", "space-runs-collapsed"),
    ("지원\u200b대상\x00", "지원대상", "invisible-and-nul-dropped"),
    (
        "<div>중소기업&#40;제조업&#41; 대상<br>\r\n  신청: 2026.03.01 ~ 2026.03.31</div>",
        "중소기업(제조업) 대상\n신청: 2026.03.01 ~ 2026.03.31",
        "bizinfo-summary",
    ),
    ("똠방각하 뷁 햏", "똠방각하 뷁 햏", "korean-intact"),
    ("https://www.bizinfo.go.kr", "https://www.bizinfo.go.kr", "url-is-text"),
    ("", "", "empty"),
    (None, "", "none"),
]


@pytest.mark.parametrize(("value", "expected"), [c[:2] for c in TEXTS], ids=[c[2] for c in TEXTS])
def test_clean_text(value: str | None, expected: str) -> None:
    assert clean_text(value) == expected


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


# --- join_url ----------------------------------------------------------------------------

BIZINFO_LIST = "https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/74/list.do"
URLS = [
    (
        "/sii/view.do?pblancId=PBLN_000000000065432",
        "https://www.bizinfo.go.kr/sii/view.do?pblancId=PBLN_000000000065432",
        "root-relative",
    ),
    (
        "view.do?pblancId=PBLN_1",
        "https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/74/view.do?pblancId=PBLN_1",
        "path-relative",
    ),
    ("../75/view.do", "https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/75/view.do", "parent"),
    ("//www.k-startup.go.kr/a.do", "https://www.k-startup.go.kr/a.do", "protocol-relative"),
    ("https://www.gov.kr/portal/x", "https://www.gov.kr/portal/x", "absolute"),
    ("  /sii/view.do  ", "https://www.bizinfo.go.kr/sii/view.do", "trimmed"),
]


@pytest.mark.parametrize(("link", "expected"), [c[:2] for c in URLS], ids=[c[2] for c in URLS])
def test_join_url(link: str, expected: str) -> None:
    assert join_url(BIZINFO_LIST, link) == expected


@pytest.mark.parametrize(
    "link",
    ["", "   ", "javascript:goView('123')", "mailto:help@bizinfo.go.kr"],
    ids=["empty", "blank", "javascript", "mailto"],
)
def test_join_url_rejects_links_that_are_not_pages(link: str) -> None:
    with pytest.raises(ValueParseError):
        join_url(BIZINFO_LIST, link)


# --- VALUE_PARSERS -----------------------------------------------------------------------

REGISTRY = [
    ("date", "2026.03.01", MARCH_1, "date"),
    ("date", 20260301, MARCH_1, "date-from-json-number"),
    ("date", None, None, "date-missing"),
    ("date_range_start", "2026-03-01 ~ 2026-03-31", MARCH_1, "range-start"),
    ("date_range_end", "2026-03-01 ~ 2026-03-31", MARCH_31, "range-end"),
    ("date_range_end", "상시 접수", None, "range-end-no-fixed-date"),
    ("list", "서울@부산@서울", ["서울", "부산"], "list"),
    ("list", [" 서울", "부산", "", "서울"], ["서울", "부산"], "list-from-json-array"),
    ("list", None, [], "list-missing"),
    ("comma_list", "창업,서울", ["창업", "서울"], "comma-list"),
    ("text", "<p>지원&#40;안&#41;</p>", "지원(안)", "text"),
    ("text", "<br>", None, "text-nothing-left"),
    ("text", None, None, "text-missing"),
    ("strip", "  PBLN_1 ", "PBLN_1", "strip"),
    ("strip", 12345, "12345", "strip-number"),
    ("strip", "   ", None, "strip-blank"),
]


@pytest.mark.parametrize(("name", "value", "expected"), [c[:3] for c in REGISTRY], ids=[c[3] for c in REGISTRY])
def test_value_parsers(name: str, value: object, expected: object) -> None:
    assert VALUE_PARSERS[name](value) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [("date", True), ("text", {"a": 1}), ("list", [1, 2]), ("strip", 1.5)],
    ids=["bool", "dict", "list-of-numbers", "float"],
)
def test_value_parsers_reject_unexpected_types(name: str, value: object) -> None:
    with pytest.raises(ValueParseError, match="expected"):
        VALUE_PARSERS[name](value)


# --- properties --------------------------------------------------------------------------

HTML_PIECES = st.sampled_from(
    [
        "<script>", "</script>", "<SCRIPT", "<style>", "</style>", "<", ">", "/", "script", "&lt;",
        "&gt;", "&amp;", "&#60;", "&#x3c;", "<p>", "</p>", "<br>", "<textarea>", "<plaintext>",
        "<!--", "-->", "<![CDATA[", "]]>", "'", '"', "=", "지원", " ", "\r\n", "\x00", "\ud800",
    ]
)  # fmt: skip
HTML_LIKE = st.one_of(st.text(), st.lists(HTML_PIECES, max_size=30).map("".join))


@given(st.text())
def test_parse_date_raises_only_value_parse_error(text: str) -> None:
    try:
        result = parse_date(text)
    except ValueParseError:
        return
    assert result is None or isinstance(result, date)


@given(st.text(alphabet=st.sampled_from("0123456789-./~ 년월일()T:+Z월화")))
def test_parse_date_range_raises_only_value_parse_error(text: str) -> None:
    try:
        result = parse_date_range(text)
    except ValueParseError:
        return
    if result.start and result.end:
        assert result.start <= result.end


DATE_WRITERS: list[Callable[[date], str]] = [
    lambda d: d.strftime("%Y%m%d"),
    lambda d: d.isoformat(),
    lambda d: d.strftime("%Y.%m.%d"),
    lambda d: f"{d.year}. {d.month}. {d.day}.",
    lambda d: d.strftime("%Y/%m/%d"),
    lambda d: f"{d.year}년 {d.month}월 {d.day}일",
    lambda d: f"{d.isoformat()}T09:00:00",
    lambda d: d.strftime("%a, %d %b %Y 09:00:00 +0900"),
]


@given(st.dates(min_value=date(1901, 1, 1), max_value=date(2098, 12, 31)), st.sampled_from(DATE_WRITERS))
def test_parse_date_reads_back_every_written_form(day: date, write: Callable[[date], str]) -> None:
    assert parse_date(write(day)) == day


@given(st.one_of(st.dates(min_value=date(1000, 1, 1), max_value=date(1900, 12, 31)),
                 st.dates(min_value=date(2099, 1, 1))), st.sampled_from(DATE_WRITERS))
def test_parse_date_reads_every_date_from_2099_or_up_to_1900_as_no_date(
        day: date, write: Callable[[date], str]) -> None:
    assert parse_date(write(day)) is None


@given(HTML_LIKE)
def test_clean_text_never_raises_and_never_leaves_a_script_tag(value: str) -> None:
    cleaned = clean_text(value)
    assert "<script" not in cleaned.lower()
    assert "\r" not in cleaned
    assert "\x00" not in cleaned
    assert cleaned == cleaned.strip()


@given(st.text(alphabet=st.sampled_from("서울부산@ ,a")), st.sampled_from(["@", ","]))
def test_split_list_items_are_trimmed_unique_and_non_empty(text: str, separator: str) -> None:
    items = split_list(text, separator)
    assert len(items) == len(set(items))
    assert all(item and item == item.strip() and separator not in item for item in items)


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


@pytest.mark.parametrize(
    ("value", "expected"),
    [("예산 소진 시까지", None), ("추후 공지", None), ("20260301", date(2026, 3, 1)), ("", None), (None, None)],
    ids=["free-text-budget", "free-text-later", "compact", "blank", "none"],
)
def test_date_registry_parser_reads_free_text_as_no_fixed_date(value: str | None, expected: date | None) -> None:
    assert VALUE_PARSERS["date"](value) == expected


# One test per form a source uses for "no date" (domain.md): each is no date for every date parser a source can
# name, never an invalid record.
SOURCE_NO_DATE_FORMS = [
    ("99991231", "kstartup-99991231"),
    (99991231, "kstartup-99991231-as-json-number"),
    ("29991231", "kstartup-29991231"),
    ("00000000", "kstartup-00000000"),
    ("2999-12-31", "2999-iso"),
    ("추후 공지", "bizinfo-later"),
    ("상시 접수", "bizinfo-always-open"),
    ("예산 소진시까지", "bizinfo-until-budget-runs-out"),
    ("상시신청", "gov24-always-open"),
    ("예산 소진 시까지", "gov24-until-budget-runs-out"),
]


@pytest.mark.parametrize("parser", ["date", "date_range_start", "date_range_end"])
@pytest.mark.parametrize("value", [c[0] for c in SOURCE_NO_DATE_FORMS], ids=[c[1] for c in SOURCE_NO_DATE_FORMS])
def test_every_sources_no_date_form_is_no_date(parser: str, value: object) -> None:
    assert VALUE_PARSERS[parser](value) is None


def test_gov24_until_date_is_the_end_of_the_period() -> None:
    assert VALUE_PARSERS["date_range_start"]("2026.12.31까지") is None
    assert VALUE_PARSERS["date_range_end"]("2026.12.31까지") == date(2026, 12, 31)
    assert VALUE_PARSERS["date"]("2026.12.31까지") == date(2026, 12, 31)


def test_date_registry_parser_still_rejects_broken_dates() -> None:
    with pytest.raises(ValueParseError):
        VALUE_PARSERS["date"]("2026-13-45")
