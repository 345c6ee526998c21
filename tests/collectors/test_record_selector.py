"""The record selector (collectors/definitions.py) finds a source's records in a parsed response, and
`extract.parse_page` refuses a page whose records or paging values do not have the declared shape."""

from __future__ import annotations

from typing import Any

import pytest

from aegis_pipeline.collectors.definitions import (
    RSS_RECORDS_PATH,
    RecordSelector,
    ResponseShapeError,
    SourceDefinition,
    parse_sources,
)
from aegis_pipeline.collectors.extract import RefusedResponseError, parse_page
from aegis_pipeline.common.errors import ErrorCode

ITEM_PATH = "response.body.items.item"


def xml_document(items: Any) -> dict[str, Any]:
    return {"response": {"header": {"resultCode": "00"}, "body": {"items": {"item": items}, "totalCount": "2"}}}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (xml_document([{"id": "1"}, {"id": "2"}]), [{"id": "1"}, {"id": "2"}]),
        (xml_document({"id": "1"}), [{"id": "1"}]),
        ({"response": {"body": {"items": ""}}}, []),
        ({"response": {"body": {"items": {"item": []}}}}, []),
        ({"response": {"body": {}}}, []),
        ({"response": "unexpected"}, []),
    ],
    ids=["list", "one-item-is-its-own-element", "empty-items-element", "empty-list", "missing", "path-through-text"],
)
def test_select_finds_the_records_at_the_path(document: Any, expected: list[dict[str, Any]]) -> None:
    assert RecordSelector(ITEM_PATH).select(document) == expected


@pytest.mark.parametrize(
    "found", [["a", "b"], [{"id": "1"}, "b"], "text", 12, [[{"id": "1"}]]],
    ids=["list-of-text", "mixed-list", "text", "number", "nested-list"],
)
def test_anything_but_objects_is_a_shape_error_naming_the_path(found: Any) -> None:
    with pytest.raises(ResponseShapeError, match=r"records at 'data' are not a list of objects"):
        RecordSelector("data").select({"data": found})


def test_a_path_of_one_key_reads_the_top_level_list() -> None:
    assert RecordSelector("jsonArray").select({"jsonArray": [{"pblancId": "P1"}]}) == [{"pblancId": "P1"}]


def source(kind: str, **extra: Any) -> SourceDefinition:
    entry = {
        "name": f"a_{kind}", "kind": kind, "url": "https://example.kr/api", "id_field": "id",
        "fields": {"title": {"path": "title"}, "content": {"path": "title"}, "issuing_organization": {"value": "기관"}},
        **extra,
    }
    return parse_sources({"sources": [entry]}, {}).sources[0]


def test_each_source_kind_has_its_selector() -> None:
    assert source("json_api", records_path="data.list").record_selector == RecordSelector("data.list")
    assert source("xml_api", records_path=ITEM_PATH).record_selector == RecordSelector(ITEM_PATH)
    assert source("rss").record_selector == RecordSelector(RSS_RECORDS_PATH) == RecordSelector("rss.channel.item")
    assert source("rss", records_path="feed.entry").record_selector == RecordSelector("feed.entry")


# --- through parse_page ---------------------------------------------------------------------------------------

XML_SOURCE = source("xml_api", records_path=ITEM_PATH, pagination={
    "type": "page_number", "page_param": "pageNo", "total_count_path": "response.body.totalCount"})
RSS_SOURCE = source("rss")


def test_parse_page_gives_the_selected_records_and_the_total_count() -> None:
    text = ("<response><header><resultCode>00</resultCode></header><body><items><item><id>A1</id><title>청년</title>"
            "</item></items><totalCount>31</totalCount></body></response>")
    page = parse_page(text, XML_SOURCE)
    assert page.records == [{"id": "A1", "title": "청년"}]
    assert page.paging == 31


def test_parse_page_reads_rss_items_where_feeds_keep_them() -> None:
    text = ("<rss version='2.0'><channel><title>피드</title><item><guid>g1</guid><title>하나</title></item>"
            "<item><guid>g2</guid><title>둘</title></item></channel></rss>")
    page = parse_page(text, RSS_SOURCE)
    assert [record["guid"] for record in page.records] == ["g1", "g2"]
    assert page.paging is None


def test_parse_page_refuses_records_that_are_not_objects_with_the_source_name_and_the_body() -> None:
    text = "<rss><channel><item>just text</item></channel></rss>"
    with pytest.raises(RefusedResponseError) as refused:
        parse_page(text, RSS_SOURCE)
    assert refused.value.args[0] == "a_rss: records at 'rss.channel.item' are not a list of objects"
    assert refused.value.code is ErrorCode.INVALID_DATA_FORMAT
    assert refused.value.body_excerpt == text


def test_parse_page_refuses_a_total_count_that_is_not_a_number() -> None:
    text = ("<response><header><resultCode>00</resultCode></header><body><items><item><id>x</id></item></items>"
            "<totalCount>many</totalCount></body></response>")
    with pytest.raises(RefusedResponseError) as refused:
        parse_page(text, XML_SOURCE)
    assert refused.value.args[0] == "a_xml_api: total count 'many' is not a number"
