"""Each pagination kind owns its requests (collectors/definitions.py): the first request, what it reads from a
response, the next request and when it stops; and the fetch loop (collectors/run.py `_read_listing`) only asks it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from aegis_pipeline.collectors.definitions import (
    NextLinkPagination,
    NoPagination,
    OffsetPagination,
    Page,
    PageNumberPagination,
    PageRequest,
    ResponseShapeError,
    SourceDefinition,
    parse_sources,
)
from aegis_pipeline.collectors.incremental import Checkpoint, ListingProgress, plan_listings
from aegis_pipeline.collectors.run import _read_listing

URL = "https://api.example.kr/notices"
PARAMS = {"serviceKey": "k", "since": "20260301"}
NO_MAX = 100


def records(count: int) -> list[dict[str, Any]]:
    return [{"id": str(number)} for number in range(count)]


def page(count: int, paging: Any = None) -> Page:
    return Page(records=records(count), paging=paging)


# --- page numbers ---------------------------------------------------------------------------------------------

PAGE_NUMBERS = PageNumberPagination(type="page_number", page_param="pageNo", size_param="numOfRows", page_size=10,
                                    total_count_path="response.body.totalCount")


def test_page_number_first_request_adds_the_first_page_and_its_size_to_the_source_params() -> None:
    request = PAGE_NUMBERS.first_request(URL, PARAMS)
    assert request == PageRequest(URL, {"serviceKey": "k", "since": "20260301", "pageNo": 1, "numOfRows": 10})
    assert PARAMS == {"serviceKey": "k", "since": "20260301"}  # the caller's params are not changed


def test_page_number_first_request_starts_at_start_page_and_sends_no_size_without_size_param() -> None:
    pagination = PageNumberPagination(type="page_number", page_param="page", start_page=0, page_size=5)
    assert pagination.first_request(URL, {}) == PageRequest(URL, {"page": 0})
    assert pagination.page_params(3) == {"page": 3}


def test_page_number_next_request_asks_for_the_next_page_after_a_full_one() -> None:
    first = PAGE_NUMBERS.first_request(URL, PARAMS)
    second = PAGE_NUMBERS.next_request(first, page(10, paging=35), max_pages=NO_MAX)
    assert second == PageRequest(URL, {**PARAMS, "pageNo": 2, "numOfRows": 10}, index=1, records_before=10)
    third = PAGE_NUMBERS.next_request(second, page(10, paging=35), max_pages=NO_MAX)
    assert third == PageRequest(URL, {**PARAMS, "pageNo": 3, "numOfRows": 10}, index=2, records_before=20)


@pytest.mark.parametrize(
    ("records_on_page", "total_count", "records_before"),
    [(9, None, 0), (0, None, 0), (0, 100, 10), (10, 20, 10), (10, 15, 10), (10, 10, 0), (10, 0, 0)],
    ids=["short-page", "empty-page", "empty-page-before-the-total", "total-reached-exactly", "total-passed",
         "total-on-the-first-page", "total-zero"],
)
def test_page_number_stops_on_a_short_page_or_when_the_total_is_reached(
        records_on_page: int, total_count: int | None, records_before: int) -> None:
    previous = PageRequest(URL, {"pageNo": 1 + records_before // 10}, index=records_before // 10,
                           records_before=records_before)
    assert PAGE_NUMBERS.next_request(previous, page(records_on_page, total_count), max_pages=NO_MAX) is None


def test_page_number_continues_while_the_total_is_not_reached() -> None:
    previous = PageRequest(URL, {"pageNo": 2}, index=1, records_before=10)
    following = PAGE_NUMBERS.next_request(previous, page(10, paging=21), max_pages=NO_MAX)
    assert following is not None and following.params["pageNo"] == 3 and following.records_before == 20


def test_page_number_stops_after_max_pages() -> None:
    previous = PageRequest(URL, {"pageNo": 3}, index=2, records_before=20)
    assert PAGE_NUMBERS.next_request(previous, page(10), max_pages=3) is None
    assert PAGE_NUMBERS.next_request(previous, page(10), max_pages=4) is not None


@pytest.mark.parametrize(
    ("document", "expected"),
    [({"response": {"body": {"totalCount": "23"}}}, 23), ({"response": {"body": {"totalCount": 7}}}, 7),
     ({"response": {"body": {"totalCount": ""}}}, None), ({"response": {"body": {}}}, None), ([], None)],
    ids=["xml-text", "json-number", "empty-element", "missing", "not-an-object"],
)
def test_page_number_reads_the_total_count(document: Any, expected: int | None) -> None:
    assert PAGE_NUMBERS.read_response(document) == expected


@pytest.mark.parametrize("total", ["'; DROP TABLE x; --", "12.5", {"n": 1}, [3]],
                         ids=["text", "decimal", "object", "list"])
def test_a_total_count_that_is_not_a_number_is_a_shape_error(total: Any) -> None:
    with pytest.raises(ResponseShapeError, match=r"total count .* is not a number"):
        PAGE_NUMBERS.read_response({"response": {"body": {"totalCount": total}}})


def test_without_total_count_path_nothing_is_read() -> None:
    pagination = PageNumberPagination(type="page_number", page_param="page")
    assert pagination.read_response({"totalCount": "not even a number"}) is None


# --- offsets --------------------------------------------------------------------------------------------------

OFFSETS = OffsetPagination(type="offset", offset_param="offset", limit_param="limit", page_size=25,
                           total_count_path="meta.total")


def test_offset_first_request_starts_at_zero_with_the_limit() -> None:
    assert OFFSETS.first_request(URL, PARAMS) == PageRequest(URL, {**PARAMS, "offset": 0, "limit": 25})


def test_offset_next_request_moves_by_one_page_size() -> None:
    first = OFFSETS.first_request(URL, PARAMS)
    second = OFFSETS.next_request(first, page(25), max_pages=NO_MAX)
    assert second == PageRequest(URL, {**PARAMS, "offset": 25, "limit": 25}, index=1, records_before=25)
    third = OFFSETS.next_request(second, page(25), max_pages=NO_MAX)
    assert third is not None and third.params["offset"] == 50 and third.records_before == 50


def test_offset_has_the_same_stop_rules_as_page_numbers() -> None:
    first = OFFSETS.first_request(URL, {})
    assert OFFSETS.next_request(first, page(24), max_pages=NO_MAX) is None  # short
    assert OFFSETS.next_request(first, page(0), max_pages=NO_MAX) is None  # empty
    assert OFFSETS.next_request(first, page(25, paging=25), max_pages=NO_MAX) is None  # total reached
    assert OFFSETS.next_request(first, page(25), max_pages=1) is None  # max_pages
    assert OFFSETS.read_response({"meta": {"total": "60"}}) == 60


# --- next links -----------------------------------------------------------------------------------------------

NEXT_LINKS = NextLinkPagination(type="next_link", next_path="links.next")


def test_next_link_first_request_is_the_source_url_with_its_params() -> None:
    assert NEXT_LINKS.first_request(URL, PARAMS) == PageRequest(URL, PARAMS)


@pytest.mark.parametrize(
    ("document", "expected"),
    [({"links": {"next": "https://api.example.kr/notices?cursor=abc"}}, "https://api.example.kr/notices?cursor=abc"),
     ({"links": {"next": ""}}, None), ({"links": {"next": None}}, None), ({"links": {}}, None), ({}, None)],
    ids=["link", "empty", "null", "missing", "no-links"],
)
def test_next_link_reads_the_next_url(document: Any, expected: str | None) -> None:
    assert NEXT_LINKS.read_response(document) == expected


def test_next_link_follows_the_link_alone_even_after_an_empty_page() -> None:
    first = NEXT_LINKS.first_request(URL, PARAMS)
    link = "https://api.example.kr/notices?cursor=abc&serviceKey=k"
    assert NEXT_LINKS.next_request(first, page(3, paging=link), max_pages=NO_MAX) == PageRequest(
        link, {}, index=1, records_before=3)
    assert NEXT_LINKS.next_request(first, page(0, paging=link), max_pages=NO_MAX) == PageRequest(
        link, {}, index=1, records_before=0)


def test_next_link_stops_without_a_link_or_after_max_pages() -> None:
    first = NEXT_LINKS.first_request(URL, PARAMS)
    assert NEXT_LINKS.next_request(first, page(10, paging=None), max_pages=NO_MAX) is None
    assert NEXT_LINKS.next_request(first, page(10, paging="https://x.kr/2"), max_pages=1) is None


# --- no pagination --------------------------------------------------------------------------------------------


def test_no_pagination_makes_one_request() -> None:
    pagination = NoPagination(type="none")
    first = pagination.first_request(URL, PARAMS)
    assert first == PageRequest(URL, PARAMS)
    assert pagination.read_response({"totalCount": 100, "next": "https://x.kr/2"}) is None
    assert pagination.next_request(first, page(10), max_pages=NO_MAX) is None


# --- the fetch loop -------------------------------------------------------------------------------------------


class ServedPages:
    """Stands in for SourceHttpClient: answers each request from `answer(url, params)` and records it."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[tuple[str, dict[str, str | int]]] = []

    async def fetch_text(self, url: str, params: dict[str, str | int], check: Any = None) -> str:
        self.requests.append((url, dict(params)))
        if check is not None:
            check(self.answer(url, params))
        return self.answer(url, params)


def json_source(pagination: dict[str, Any], **extra: Any) -> SourceDefinition:
    entry = {
        "name": "paged", "kind": "json_api", "url": URL, "params": {"serviceKey": "k"}, "records_path": "data",
        "id_field": "id", "pagination": pagination,
        "fields": {"title": {"path": "id"}, "content": {"path": "id"}, "issuing_organization": {"value": "기관"}},
        **extra,
    }
    return parse_sources({"sources": [entry]}, {}).sources[0]


class CountingTaker:
    """Stands in for the run's page taker: counts each page's records, all of them valid and new."""

    def __init__(self) -> None:
        self.pages: list[int] = []

    async def take(self, raw_page: list[dict[str, Any]]) -> tuple[int, int]:
        self.pages.append(len(raw_page))
        return len(raw_page), len(raw_page)


async def walk(source: SourceDefinition, server: ServedPages, cursor: str | None = None) -> list[int]:
    """The records of each page the run's listings read, in order."""
    taker = CountingTaker()
    for listing in plan_listings(source, Checkpoint(cursor=cursor), datetime.now(UTC)):
        await _read_listing(listing, source, server, taker, ListingProgress())  # type: ignore[arg-type]
    return taker.pages


async def test_the_loop_walks_page_numbers_until_the_total_count() -> None:
    rows = records(23)

    def answer(url: str, params: dict[str, str | int]) -> str:
        start = (int(params["page"]) - 1) * 10
        return json.dumps({"data": rows[start:start + 10], "totalCount": 23})

    server = ServedPages(answer)
    source = json_source({"type": "page_number", "page_param": "page", "size_param": "perPage",
                          "total_count_path": "totalCount"})
    assert await walk(source, server) == [10, 10, 3]
    assert server.requests == [(URL, {"serviceKey": "k", "page": number, "perPage": 10}) for number in (1, 2, 3)]


async def test_the_loop_stops_at_the_total_even_when_the_source_would_repeat_its_last_page() -> None:
    server = ServedPages(lambda url, params: json.dumps({"data": records(10), "totalCount": "20"}))
    source = json_source({"type": "page_number", "page_param": "page", "total_count_path": "totalCount"})
    assert await walk(source, server) == [10, 10]


async def test_the_loop_stops_at_max_pages() -> None:
    server = ServedPages(lambda url, params: json.dumps({"data": records(10)}))
    source = json_source({"type": "offset", "offset_param": "offset", "limit_param": "limit"}, max_pages=3)
    assert await walk(source, server) == [10, 10, 10]
    assert [params["offset"] for _, params in server.requests] == [0, 10, 20]


async def test_the_loop_follows_next_links_and_sends_the_cursor_only_first() -> None:
    links = {URL: f"{URL}?p=2", f"{URL}?p=2": f"{URL}?p=3", f"{URL}?p=3": None}
    server = ServedPages(lambda url, params: json.dumps({"data": records(2), "next": links[url]}))
    source = json_source({"type": "next_link", "next_path": "next"},
                         incremental={"cursor_field": "id", "request_param": "since"})
    assert await walk(source, server, cursor="20260301") == [2, 2, 2]
    assert server.requests == [(URL, {"serviceKey": "k", "since": "20260301"}), (f"{URL}?p=2", {}),
                               (f"{URL}?p=3", {})]


async def test_the_loop_makes_one_request_without_pagination() -> None:
    server = ServedPages(lambda url, params: json.dumps({"data": records(50)}))
    assert await walk(json_source({"type": "none"}), server) == [50]
    assert server.requests == [(URL, {"serviceKey": "k"})]


def test_query_params_add_the_cursor_only_for_an_incremental_source_with_a_request_param() -> None:
    incremental = json_source({"type": "none"}, incremental={"cursor_field": "id", "request_param": "since"})
    assert incremental.query_params("20260301") == {"serviceKey": "k", "since": "20260301"}
    assert incremental.query_params(None) == {"serviceKey": "k"}
    cursor_only = json_source({"type": "none"}, incremental={"cursor_field": "id"})
    assert cursor_only.query_params("20260301") == {"serviceKey": "k"}
    assert json_source({"type": "none"}).query_params("20260301") == {"serviceKey": "k"}


class KnownIdsTaker(CountingTaker):
    """Counts pages, and calls new only the records whose id is not in `known` (what was published before)."""

    def __init__(self, known: set[str]) -> None:
        super().__init__()
        self.known = known

    async def take(self, raw_page: list[dict[str, Any]]) -> tuple[int, int]:
        self.pages.append(len(raw_page))
        return len(raw_page), sum(1 for record in raw_page if record["id"] not in self.known)


def newest_first(total: int) -> Any:
    rows = [{"id": str(number)} for number in range(total, 0, -1)]

    def answer(url: str, params: dict[str, str | int]) -> str:
        start = (int(params["pageNo"]) - 1) * 10
        return json.dumps({"data": rows[start:start + 10], "totalCount": total})
    return answer


PAGED = {"type": "page_number", "page_param": "pageNo", "size_param": "numOfRows",
         "total_count_path": "totalCount"}


async def test_stop_at_seen_stops_after_the_first_page_with_nothing_new() -> None:
    """75 records newest first, the 62 oldest seen before: page 2 still holds 3 new ones, page 3 none."""
    server = ServedPages(newest_first(75))
    source = json_source(PAGED, incremental={"strategy": "stop_at_seen"}, full_listing={"every_days": 7})
    taker = KnownIdsTaker({str(number) for number in range(1, 63)})
    [listing, _] = plan_listings(source, Checkpoint(full_listing_completed_at=datetime(2026, 1, 1, tzinfo=UTC)),
                                 datetime.now(UTC))
    progress = ListingProgress()
    await _read_listing(listing, source, server, taker, progress)  # type: ignore[arg-type]
    assert taker.pages == [10, 10, 10]
    assert progress.incremental_completed


async def test_a_full_listing_pauses_at_max_pages_and_resumes_there_next_run() -> None:
    server = ServedPages(newest_first(45))
    source = json_source(PAGED, incremental={"strategy": "stop_at_seen"}, full_listing={"every_days": 7},
                         max_pages=3)
    taker = CountingTaker()
    [full] = plan_listings(source, Checkpoint(), datetime.now(UTC))
    progress = ListingProgress()
    await _read_listing(full, source, server, taker, progress)  # type: ignore[arg-type]
    assert taker.pages == [10, 10, 10]
    assert (progress.full_listing_next_page, progress.full_listing_completed) == (3, False)

    [_, resumed] = plan_listings(source, Checkpoint(full_listing_next_page=3), datetime.now(UTC))
    progress = ListingProgress()
    await _read_listing(resumed, source, server, taker, progress)  # type: ignore[arg-type]
    assert taker.pages == [10, 10, 10, 10, 5]
    assert [params["pageNo"] for _, params in server.requests] == [1, 2, 3, 4, 5]
    assert (progress.full_listing_next_page, progress.full_listing_completed) == (None, True)
