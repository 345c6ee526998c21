"""Unit tests of collectors/parsing/dates.py: dates, periods, RFC 822 date-times, "no date" sentinels."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_pipeline.collectors.parsing.dates import KST, DateRange, parse_date, parse_date_range, parse_rfc822_datetime
from aegis_pipeline.collectors.parsing.errors import ValueParseError

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


# --- properties --------------------------------------------------------------------------

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
