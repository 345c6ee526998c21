"""Unit tests of collectors/parsing/values.py: the named parsers a source's YAML can use."""

from __future__ import annotations

from datetime import date

import pytest

from aegis_pipeline.collectors.parsing.errors import ValueParseError
from aegis_pipeline.collectors.parsing.values import VALUE_PARSERS

MARCH_1 = date(2026, 3, 1)
MARCH_31 = date(2026, 3, 31)

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


# --- regions_in_tags, region_of_organization, free_text_range_start / _end ----------------------------------

REGIONS_IN_TAGS = [
    ("2026,경영,서울,중소벤처기업부", ["서울"], "bizinfo-hashtags"),
    ("창업,전국,예비창업자", ["전국"], "nationwide-counts"),
    ("2026,수출,부산,부산광역시,창업벤처", ["부산", "부산광역시"], "short-and-canonical-kept-as-written"),
    (" 경기 , 인천 ,경기", ["경기", "인천"], "trimmed-and-deduplicated"),
    ("서울 특별시,세종시,강원도", ["서울 특별시", "세종시", "강원도"], "names-domain-regions-knows"),
    ("2026,11,41,26", [], "digits-are-never-a-region"),
    ("광주시,제주시,성동구", [], "ambiguous-or-below-a-province"),
    (["서울", "R&D", "대구"], ["서울", "대구"], "json-array"),
    ("", [], "blank"),
    (None, [], "missing"),
]


@pytest.mark.parametrize(("value", "expected"), [c[:2] for c in REGIONS_IN_TAGS], ids=[c[2] for c in REGIONS_IN_TAGS])
def test_regions_in_tags_keeps_only_the_regions(value: object, expected: list[str]) -> None:
    assert VALUE_PARSERS["regions_in_tags"](value) == expected


REGION_OF_ORGANIZATION = [
    ("서울특별시 성동구", ["서울특별시"], "seoul-gu"),
    ("경기도 수원시", ["경기도"], "gyeonggi-si"),
    ("고용노동부", [], "central-ministry"),
    ("서울특별시", ["서울특별시"], "province-alone"),
    ("세종특별자치시", ["세종특별자치시"], "sejong"),
    ("강원도 춘천시", ["강원도"], "old-name-kept-as-written"),
    ("서울시 성동구", ["서울시"], "short-name-first-word"),
    ("부산광역시교육청", ["부산광역시"], "full-name-glued-to-the-body"),
    ("경기도경제과학진흥원", ["경기도"], "provincial-agency"),
    ("부산항만공사", [], "short-name-glued-is-not-a-region"),
    ("광주시", [], "ambiguous-gwangju-si"),
    ("  광주광역시 북구 ", ["광주광역시"], "trimmed"),
    ("전국은행연합회", [], "nationwide-is-not-an-organisations-region"),
    ("", [], "blank"),
    (None, [], "missing"),
]


@pytest.mark.parametrize(("value", "expected"), [c[:2] for c in REGION_OF_ORGANIZATION],
                         ids=[c[2] for c in REGION_OF_ORGANIZATION])
def test_region_of_organization_is_the_province_the_name_starts_with(value: str | None, expected: list[str]) -> None:
    assert VALUE_PARSERS["region_of_organization"](value) == expected


FREE_TEXT_PERIODS = [
    ("2026.3.1.~2026.12.31.", date(2026, 3, 1), date(2026, 12, 31), "gov24-range"),
    ("2026.12.31까지", None, date(2026, 12, 31), "until"),
    ("2026. 1. 2. ~ 2026. 12. 31.", date(2026, 1, 2), date(2026, 12, 31), "spaced"),
    ("상시신청", None, None, "always-open"),
    ("예산 소진 시까지", None, None, "until-budget-runs-out"),
    ("출생일로부터 1년 이내", None, None, "prose-with-digits"),
    ("사유발생일로부터 60일 이내", None, None, "prose-with-digits-2"),
    ("매년 1월~12월 (연중)", None, None, "month-range-without-year"),
    ("2026-03-31 ~ 2026-03-01", None, None, "backwards-range"),
    (None, None, None, "missing"),
]


@pytest.mark.parametrize(("value", "start", "end"), [c[:3] for c in FREE_TEXT_PERIODS],
                         ids=[c[3] for c in FREE_TEXT_PERIODS])
def test_free_text_periods_give_their_dates_or_none(value: str | None, start: date | None, end: date | None) -> None:
    assert (VALUE_PARSERS["free_text_range_start"](value), VALUE_PARSERS["free_text_range_end"](value)) == (start, end)


def test_the_strict_range_parsers_still_refuse_prose_with_digits() -> None:
    # What free_text_range_* are for: the same 정부24 text makes date_range_* refuse the record.
    with pytest.raises(ValueParseError):
        VALUE_PARSERS["date_range_end"]("출생일로부터 1년 이내")


@pytest.mark.parametrize("name", ["regions_in_tags", "region_of_organization", "free_text_range_end"])
def test_new_parsers_reject_unexpected_types(name: str) -> None:
    with pytest.raises(ValueParseError, match="expected"):
        VALUE_PARSERS[name]({"a": 1})
