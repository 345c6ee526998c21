"""The sources file is validated at start; a wrong source fails with a message naming the source and key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis_pipeline.collectors.definitions import SourceKind, load_sources, parse_sources
from aegis_pipeline.common.errors import SourceConfigError

SAMPLE_FILE = Path(__file__).parents[2] / "src" / "aegis_pipeline" / "devstack" / "sample_sources.yaml"
ENVIRONMENT = {"SAMPLE_SOURCES_URL": "http://127.0.0.1:8765", "SAMPLE_SERVICE_KEY": "key-123"}

GOOD_SOURCE: dict[str, Any] = {
    "name": "bizinfo",
    "kind": "json_api",
    "url": "https://www.bizinfo.go.kr/uss/rss/bizinfoApi.do",
    "params": {"crtfcKey": "${BIZINFO_KEY}"},
    "pagination": {"type": "page_number", "page_param": "pageIndex", "size_param": "pageUnit"},
    "records_path": "jsonArray",
    "id_field": "pblancId",
    "fields": {
        "title": {"path": "pblancNm", "parser": "text"},
        "content": {"path": "bsnsSumryCn", "parser": "text"},
        "issuing_organization": {"path": "jrsdInsttNm"},
    },
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    source = copy.deepcopy(GOOD_SOURCE)
    *parents, last = path.split(".")
    target = source
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return source


def test_the_sample_sources_file_is_valid_and_covers_every_kind() -> None:
    sources = load_sources(SAMPLE_FILE, ENVIRONMENT).sources
    assert {source.kind for source in sources} == set(SourceKind)
    assert sources[0].params["serviceKey"] == "key-123"  # ${VAR} substituted
    assert sources[0].url.startswith("http://127.0.0.1:8765/")


def test_a_good_source_loads_with_design_schedule_defaults() -> None:
    source = parse_sources({"sources": [GOOD_SOURCE]}, {"BIZINFO_KEY": "k"}).sources[0]
    assert source.effective_schedule(api_interval_hours=6).interval_hours == 6
    board = parse_sources({"sources": [yaml.safe_load(SAMPLE_FILE.read_text())["sources"][-1]]}, ENVIRONMENT)
    assert board.sources[0].effective_schedule(api_interval_hours=6).cron == "0 0 * * *"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (with_change("kind", "soap"), 'source "bizinfo": kind'),
        (with_change("url", "ftp://example"), 'source "bizinfo": url'),
        (with_change("pagination.page_param", None), 'source "bizinfo": pagination.page_param'),
        (with_change("fields.title.parser", "roman_numerals"), 'source "bizinfo": fields.title'),
        (with_change("fields.title", None), "required record fields not mapped: ['title']"),
        (with_change("fields.deadline", {"path": "x"}), "unknown record fields ['deadline']"),
        (with_change("records_path", None), "kind json_api needs records_path"),
        (with_change("timeout_seconds", -1), 'source "bizinfo": timeout_seconds'),
        (with_change("encoding", "klingon-8"), "unknown encoding 'klingon-8'"),
        (with_change("surprise", True), 'source "bizinfo": surprise'),
        (with_change("kind", "html"), "kind html needs an `html` section"),
        (with_change("schedule", {"cron": "every day"}), "cron needs 5 fields"),
    ],
    ids=["kind", "url", "pagination-key", "parser", "required-field", "unknown-field", "records-path",
         "timeout", "encoding", "unknown-key", "html-section", "cron"],
)
def test_a_wrong_source_names_the_source_and_the_key(source: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceConfigError) as raised:
        parse_sources({"sources": [source]}, {"BIZINFO_KEY": "k"})
    assert message in str(raised.value.args[0])


def test_a_missing_secret_names_the_variable() -> None:
    with pytest.raises(SourceConfigError, match='source "bizinfo": environment variable BIZINFO_KEY is not set'):
        parse_sources({"sources": [GOOD_SOURCE]}, {})


def test_source_names_are_unique() -> None:
    with pytest.raises(SourceConfigError, match="repeated: \\['bizinfo'\\]"):
        parse_sources({"sources": [GOOD_SOURCE, GOOD_SOURCE]}, {"BIZINFO_KEY": "k"})


@pytest.mark.parametrize(
    ("pagination", "message"),
    [
        ({"type": "offset", "offset_param": "o"}, 'source "bizinfo": pagination.limit_param: Field required'),
        ({"type": "next_link"}, 'source "bizinfo": pagination.next_path: Field required'),
        ({"type": "page_number", "page_param": "p", "page_size": 0}, 'source "bizinfo": pagination.page_size'),
        ({"type": "cursor"}, "source \"bizinfo\": pagination: Input tag 'cursor'"),
    ],
    ids=["offset-key", "next-link-key", "page-size", "unknown-kind"],
)
def test_a_wrong_pagination_names_its_key_without_the_kind_tag(pagination: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceConfigError) as raised:
        parse_sources({"sources": [with_change("pagination", pagination)]}, {"BIZINFO_KEY": "k"})
    assert message in str(raised.value.args[0])


def test_the_sample_sources_page_and_select_as_declared() -> None:
    sources = {source.name: source for source in load_sources(SAMPLE_FILE, ENVIRONMENT).sources}
    data_go_kr = sources["data_go_kr"]
    first = data_go_kr.pagination.first_request(data_go_kr.url, data_go_kr.query_params())
    assert (first.url, first.params) == ("http://127.0.0.1:8765/data-go-kr/policies",
                                         {"serviceKey": "key-123", "pageNo": 1, "numOfRows": 10})
    assert data_go_kr.record_selector.path == "response.body.items.item"
    feed = sources["policy_briefing_rss"]
    assert feed.pagination.type == "none"
    assert feed.record_selector.path == "rss.channel.item"
