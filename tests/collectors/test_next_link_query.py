"""A next link's own query reaches the source: httpx replaces a URL's query with any `params` given, even `{}`."""

from __future__ import annotations

import json
import uuid

import pytest

from aegis_pipeline.collectors.definitions import parse_sources
from aegis_pipeline.collectors.run import collect_source, open_context
from aegis_pipeline.devstack.sample_sources import SampleSources
from aegis_pipeline.settings import Settings

pytestmark = pytest.mark.integration


def record(number: int) -> dict[str, str]:
    return {"id": f"next-{number}", "t": f"창업 지원 사업 {number}차 공고", "c": "지원 내용 " * 5,
            "o": "중소벤처기업부"}


async def test_a_next_link_with_a_query_is_requested_with_that_query(stack: Settings) -> None:
    with SampleSources() as server:
        # The second page answers at one path whatever the query; the request log shows which query arrived.
        next_link = f"{server.base_url}/next/more?cursor=c2"
        server.add_payload("/next/first", json.dumps({"data": [record(1)], "links": {"next": next_link}},
                                                    ensure_ascii=False).encode(),
                           "application/json; charset=UTF-8")
        server.add_payload("/next/more", json.dumps({"data": [record(2)], "links": {}}, ensure_ascii=False).encode(),
                           "application/json; charset=UTF-8")
        source = {"name": f"next_{uuid.uuid4().hex[:6]}", "kind": "json_api", "url": f"{server.base_url}/next/first",
                  "records_path": "data", "id_field": "id",
                  "fields": {"title": {"path": "t"}, "content": {"path": "c"}, "issuing_organization": {"path": "o"}},
                  "pagination": {"type": "next_link", "next_path": "links.next"}}
        async with open_context(stack) as context:
            result = await collect_source(parse_sources({"sources": [source]}, {}).sources[0], context)
        second_pages = [request for request in server.requests if request.path == "/next/more"]

    assert result.status == "ok", result.error
    assert result.fetched == 2
    assert [request.query for request in second_pages] == [{"cursor": "c2"}]
