"""From a source record to a `RawPolicyData` by the source's field mapping (collectors/mapping.py): the record id,
each way a field is found (path, join, constant), parsers, defaults, and every problem reported at once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from aegis_pipeline.collectors.definitions import SourceDefinition, parse_sources
from aegis_pipeline.collectors.mapping import build_record, external_id_of
from aegis_pipeline.common.errors import ErrorCode, InvalidDataError

COLLECTED_AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def source(fields: dict[str, Any], *, id_field: str = "info.id") -> SourceDefinition:
    entry = {"name": "mapped", "kind": "json_api", "url": "https://www.example.go.kr/board/list.do",
             "records_path": "data", "id_field": id_field, "fields": fields}
    return parse_sources({"sources": [entry]}, {}).sources[0]


FIELDS: dict[str, Any] = {
    "title": {"path": "info.title", "parser": "text"},
    "content": {"join": ["summary", "detail"], "parser": "text"},
    "issuing_organization": {"path": "org", "parser": "strip", "default": "정책브리핑"},
    "target_region": {"path": "regions", "parser": "list"},
    "funding_type": {"value": "보조금"},
    "application_start_date": {"path": "period", "parser": "date_range_start"},
    "application_end_date": {"path": "period", "parser": "date_range_end"},
    "original_url": {"path": "link", "parser": "url"},
}
SOURCE = source(FIELDS)
RAW: dict[str, Any] = {
    "info": {"id": " P-001 ", "title": "<b>청년</b> 창업 &amp; 지원"},
    "summary": "<p>요약</p>",
    "detail": "",
    "org": "  중소벤처기업부 ",
    "regions": "서울@부산@서울",
    "period": "2026-03-01 ~ 2026-03-31",
    "link": "view.do?id=P-001",
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [({"info": {"id": " P-001 "}}, "P-001"), ({"info": {"id": 123}}, "123"), ({"info": {"id": 0}}, "0"),
     ({"info": {"id": "   "}}, None), ({"info": {"id": None}}, None), ({"info": {}}, None), ({}, None)],
    ids=["trimmed", "number", "zero-is-an-id", "blank", "null", "missing", "no-parent"],
)
def test_external_id_of_reads_the_id_field(raw: dict[str, Any], expected: str | None) -> None:
    assert external_id_of(raw, SOURCE) == expected


def test_build_record_maps_every_kind_of_field() -> None:
    record = build_record(RAW, SOURCE, COLLECTED_AT)
    assert record.title == "청년 창업 & 지원"  # text parser: tags gone, entity decoded
    assert record.content == "요약"  # join: the empty part is left out
    assert record.issuing_organization == "중소벤처기업부"
    assert record.target_region == ["서울", "부산"]
    assert record.funding_type == "보조금"  # a constant
    assert (record.application_start_date, record.application_end_date) == (date(2026, 3, 1), date(2026, 3, 31))
    assert record.original_url == "https://www.example.go.kr/board/view.do?id=P-001"  # resolved against the URL
    assert record.raw_data == RAW
    metadata = record.collection_metadata
    assert (metadata.source, metadata.external_id, metadata.collected_at) == ("mapped", "P-001", COLLECTED_AT)
    assert metadata.record_key == "mapped:P-001"


def test_join_puts_each_present_part_on_its_own_line() -> None:
    record = build_record({**RAW, "detail": "<p>본문</p>"}, SOURCE, COLLECTED_AT)
    assert record.content == "요약\n본문"
    plain = source({**FIELDS, "content": {"join": ["summary", "missing", "detail", "number"]}})
    raw = {**RAW, "summary": "요약", "detail": "본문", "number": 3}
    assert build_record(raw, plain, COLLECTED_AT).content == "요약\n본문\n3"


def test_a_default_fills_a_field_the_source_leaves_empty() -> None:
    for missing in ({"org": None}, {"org": "  "}):
        assert build_record({**RAW, **missing}, SOURCE, COLLECTED_AT).issuing_organization == "정책브리핑"
    without_org = {key: value for key, value in RAW.items() if key != "org"}
    assert build_record(without_org, SOURCE, COLLECTED_AT).issuing_organization == "정책브리핑"


def test_optional_fields_without_a_value_are_left_out() -> None:
    sparse = {"info": RAW["info"], "summary": "요약", "org": "기관"}
    record = build_record(sparse, SOURCE, COLLECTED_AT)
    assert record.target_region == []
    assert record.application_start_date is None and record.application_end_date is None
    assert record.original_url is None


def test_every_problem_is_reported_at_once() -> None:
    raw = {**RAW, "info": {"title": "제목"}, "period": "2026-13-45 ~ 2026-03-31", "link": "javascript:goView(1)"}
    with pytest.raises(InvalidDataError) as raised:
        build_record(raw, SOURCE, COLLECTED_AT)
    error = raised.value
    assert error.code is ErrorCode.INVALID_DATA_FORMAT
    problems = error.details["field_errors"]
    assert problems[0] == "info.id: missing record id"
    assert [problem.split(":")[0] for problem in problems[1:]] == [
        "application_start_date", "application_end_date", "original_url"]
    assert error.args[0].startswith("mapped:? is invalid: info.id: missing record id; application_start_date")
    assert error.details["external_id"] is None


def test_a_record_the_model_refuses_names_the_field() -> None:
    raw = {**RAW, "info": {"id": "P-2", "title": "<script>x</script>"}}  # nothing left of the title
    with pytest.raises(InvalidDataError) as raised:
        build_record(raw, SOURCE, COLLECTED_AT)
    assert raised.value.args[0].startswith("mapped:P-2 is invalid: title")
    assert [problem.split(":")[0] for problem in raised.value.details["field_errors"]] == ["title"]
    assert raised.value.details["external_id"] == "P-2"


def test_a_period_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(InvalidDataError, match="ends before it starts"):
        build_record({**RAW, "period": "2026-03-31 ~ 2026-03-01"}, SOURCE, COLLECTED_AT)
