"""The web-board crawler (`collectors.html_board`) against the local sample board (devstack/sample_sources.py):
the exact posts with their Korean text intact (EUC-KR pages, some with a wrong HTTP charset), robots.txt
obeyed and reported, the user agent and the per-site delay as configured, `before_request` awaited before
each request, repeated and concurrent crawls in one process, and dead or forbidden boards raising the
pipeline's errors."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from aegis_pipeline.collectors.definitions import SourceDefinition, parse_sources
from aegis_pipeline.collectors.html_board import BoardCrawl, _scrapy_settings, crawl_board, robots_crawl_delay
from aegis_pipeline.collectors.parsing.text import clean_text
from aegis_pipeline.common.errors import ErrorCode, ScrapingBlockedError, SourceUnavailableError, StoreUnavailableError
from aegis_pipeline.devstack.sample_sources import BOARD_PRIVATE_PATH_PREFIX, SampleSources
from aegis_pipeline.devstack.stack import free_port

pytestmark = pytest.mark.integration

USER_AGENT = "AegisTest/1.0 (+https://aegis.example/bot)"
DELAY_SECONDS = 0.2
# The server stamps a request when its handler thread starts reading it; thread scheduling can shift one
# stamp by a few milliseconds, so a gap is compared with the delay less this much.
SERVER_CLOCK_SLACK_SECONDS = 0.01


@pytest.fixture(scope="module")
def board_server() -> Iterator[SampleSources]:
    # No Crawl-delay here, so the crawls take DELAY_SECONDS between requests; Crawl-delay has its own test.
    with SampleSources(crawl_delay_seconds=0) as server:
        yield server


@pytest.fixture
def server(board_server: SampleSources) -> SampleSources:
    board_server.reset()
    return board_server


def board_definition(
    list_url: str, *, delay_seconds: float = 0.0, max_retries: int = 2, timeout_seconds: float = 5.0
) -> SourceDefinition:
    """The sample board as a sources file describes it (devstack/sample_sources.yaml, seongdong_board)."""
    document: dict[str, Any] = {
        "sources": [
            {
                "name": "seongdong_board",
                "kind": "html",
                "url": list_url,
                "pagination": {"type": "page_number", "page_param": "page"},
                "max_pages": 5,
                "id_field": "id",
                "timeout_seconds": timeout_seconds,
                "max_retries": max_retries,
                "html": {
                    "row_selector": "table.board_list tbody tr",
                    "link_selector": "td.subject a",
                    "id_query_param": "nttId",
                    "detail_fields": {
                        "title": "table.board_view td.subject",
                        "department": "table.board_view tr:nth-of-type(2) > td:nth-of-type(1)",
                        "period": "table.board_view td.period",
                        "body": "div.view_content",
                    },
                    "download_delay_seconds": delay_seconds,
                },
                "fields": {
                    "title": {"path": "title", "parser": "text"},
                    "content": {"path": "body", "parser": "text"},
                    "issuing_organization": {"path": "department", "parser": "text"},
                },
            }
        ]
    }
    return parse_sources(document, {}).sources[0]


def assert_complete_board(crawl: BoardCrawl, server: SampleSources) -> None:
    """Every public post once, in list order, with the detail page's text as the ground truth has it."""
    expected = server.expected_records("board")
    rejected_later_ids = {invalid["external_id"] for invalid in server.expected_invalid("board")}
    crawled_ids = [record.external_id for record in crawl.records]
    # Posts the mapper will reject (an impossible date) are still posts of the board: the crawler keeps them.
    assert rejected_later_ids <= set(crawled_ids)
    assert [i for i in crawled_ids if i not in rejected_later_ids] == [e["external_id"] for e in expected]
    assert len(crawled_ids) == len(expected) + len(rejected_later_ids)
    by_id = {record.external_id: record for record in crawl.records}
    for record in expected:
        crawled = by_id[record["external_id"]]
        assert crawled.detail_url == record["original_url"]
        assert clean_text(crawled.fields["title"]) == record["title"]
        assert clean_text(crawled.fields["department"]) == record["issuing_organization"]
        assert " ".join(clean_text(crawled.fields["body"]).split()) == record["content"]
    assert crawl.errors == []


async def test_crawls_the_board_politely(server: SampleSources) -> None:
    before_request_calls = 0

    async def before_request() -> None:
        nonlocal before_request_calls
        before_request_calls += 1
        await asyncio.sleep(0)  # a real limiter awaits Redis

    crawl = await crawl_board(
        board_definition(server.url("/board/list.do"), delay_seconds=DELAY_SECONDS),
        user_agent=USER_AGENT,
        before_request=before_request,
    )

    assert_complete_board(crawl, server)
    # Korean from the pages the server labels wrongly (utf-8 header, EUC-KR body) and from the CP949-only 똠.
    assert clean_text(next(r for r in crawl.records if r.external_id == "50241").fields["title"]) == (
        "2026년 성동구 청년 창업지원센터 입주기업 모집"
    )
    assert "똠얌꿍" in next(r for r in crawl.records if r.external_id == "50240").fields["body"]

    requests = server.requests
    assert requests[0].path == "/robots.txt"
    assert server.requests_for(BOARD_PRIVATE_PATH_PREFIX) == []
    assert len(crawl.blocked_by_robots) == 1
    assert crawl.blocked_by_robots[0].startswith(server.url(BOARD_PRIVATE_PATH_PREFIX))
    board_requests = server.requests_for("/board/")
    assert crawl.pages_fetched == len(board_requests)
    assert {request.query.get("page") for request in server.requests_for("/board/list.do")} == {"1", "2", "3"}
    assert {request.user_agent for request in requests} == {USER_AGENT}
    gaps = [later.time - earlier.time for earlier, later in itertools.pairwise(requests)]
    assert min(gaps) >= DELAY_SECONDS - SERVER_CLOCK_SLACK_SECONDS, gaps
    assert before_request_calls == len(requests)


async def test_crawls_twice_in_one_loop_one_after_the_other_and_together(server: SampleSources) -> None:
    definition = board_definition(server.url("/board/list.do"))

    first = await crawl_board(definition, user_agent=USER_AGENT)
    second = await crawl_board(definition, user_agent=USER_AGENT)
    together = await asyncio.gather(
        crawl_board(definition, user_agent=USER_AGENT), crawl_board(definition, user_agent=USER_AGENT)
    )

    for crawl in (first, second, *together):
        assert_complete_board(crawl, server)


def test_crawls_in_successive_event_loops(server: SampleSources) -> None:
    # The scheduler may run each day's collection in a fresh asyncio.run; Scrapy must not hold on to a loop.
    definition = board_definition(server.url("/board/list.do"))

    for _ in range(2):
        assert_complete_board(asyncio.run(crawl_board(definition, user_agent=USER_AGENT)), server)


async def test_a_board_nobody_answers_is_unavailable() -> None:
    definition = board_definition(f"http://127.0.0.1:{free_port()}/board/list.do", max_retries=1)

    with pytest.raises(SourceUnavailableError) as raised:
        await crawl_board(definition, user_agent=USER_AGENT)

    assert raised.value.retriable
    assert raised.value.code is ErrorCode.DATA_SOURCE_UNAVAILABLE


async def test_a_board_answering_5xx_after_retries_is_unavailable(server: SampleSources) -> None:
    definition = board_definition(server.url("/dead/api"), max_retries=2)

    with pytest.raises(SourceUnavailableError, match="HTTP 503"):
        await crawl_board(definition, user_agent=USER_AGENT)

    assert len(server.requests_for("/dead/api")) == 1 + 2


async def test_a_list_page_robots_txt_forbids_is_blocked_not_fetched(server: SampleSources) -> None:
    definition = board_definition(server.url("/admin/list.do"))

    with pytest.raises(ScrapingBlockedError) as raised:
        await crawl_board(definition, user_agent=USER_AGENT)

    assert raised.value.code is ErrorCode.SCRAPING_BLOCKED
    assert server.requests_for("/admin/") == []


async def test_a_failing_before_request_stops_the_crawl_with_its_own_error(server: SampleSources) -> None:
    # The rate limiter's store being down is not the board being down: the source's circuit must not count it.
    async def limiter_without_redis() -> None:
        raise StoreUnavailableError("redis unreachable")

    with pytest.raises(StoreUnavailableError):
        await crawl_board(
            board_definition(server.url("/board/list.do")), user_agent=USER_AGENT, before_request=limiter_without_redis
        )

    assert server.requests == []


@pytest.mark.parametrize("cancel_after_seconds", [0.0, 3 * DELAY_SECONDS], ids=["while-starting", "mid-crawl"])
async def test_cancelling_a_crawl_stops_it_promptly(server: SampleSources, cancel_after_seconds: float) -> None:
    definition = board_definition(server.url("/board/list.do"), delay_seconds=DELAY_SECONDS)
    tasks_before = len(asyncio.all_tasks())
    crawl = asyncio.create_task(crawl_board(definition, user_agent=USER_AGENT))
    await asyncio.sleep(cancel_after_seconds)
    cancelled_at = asyncio.get_running_loop().time()

    crawl.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crawl

    # Stopping lets the request on the wire finish (one delay at most here), nothing more, and leaves no task.
    assert asyncio.get_running_loop().time() - cancelled_at < 2 * DELAY_SECONDS
    requests_when_stopped = len(server.requests)
    await asyncio.sleep(2 * DELAY_SECONDS)
    assert len(server.requests) == requests_when_stopped
    assert len(asyncio.all_tasks()) == tasks_before


async def test_robots_crawl_delay_is_honoured_when_larger_than_ours() -> None:
    with SampleSources(crawl_delay_seconds=2) as polite_server:
        definition = board_definition(polite_server.url("/board/list.do"), delay_seconds=DELAY_SECONDS)
        assert await robots_crawl_delay(definition, USER_AGENT) == 2.0
    settings = _scrapy_settings(definition, definition.html, USER_AGENT, crawl_delay=2.0)
    assert settings["DOWNLOAD_DELAY"] == 2.0
    assert _scrapy_settings(definition, definition.html, USER_AGENT, crawl_delay=None)["DOWNLOAD_DELAY"] == (
        DELAY_SECONDS
    )
