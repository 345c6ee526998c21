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
