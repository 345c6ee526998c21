"""The web-board crawler for sources of kind `html`: Scrapy fetches, BeautifulSoup reads.

`crawl_board(source, user_agent=..., take_page=..., resume_at=..., max_rows=...)` walks a board's list pages
(`source.url` with `source.params`, paginated by `source.pagination`), reads each row's detail page and gives, per
post, the inner HTML of each `html.detail_fields` selector as a `BoardRecord`. Mapping those fields onto the record
(and rejecting bad ones) is the caller's business; this module only fetches, decodes, selects and paces.

Page by page: each list page's posts, once their detail pages are read, are handed to `take_page` as a
`BoardPage` (the collector publishes them and checkpoints `BoardPage.next_page`) and the crawl goes on to the next
list page only once `take_page` returned. A crawl stopped midway thus keeps every page it finished, and the
caller knows where to resume (`resume_at`). Without `take_page` the posts are returned in `BoardCrawl.records`.

How the crawl and the (asyncio) page taker meet: there is no queue and no second loop. Scrapy runs here without
a Twisted reactor (`TWISTED_REACTOR_ENABLED=False`, Scrapy >= 2.15, through `AsyncCrawlerRunner`): its engine is
plain asyncio tasks on the collector's own running loop. The spider's `start()` is one coroutine that drives the
crawl page by page: it downloads a list page, then each of its posts, through the engine
(`engine.download_async`: every downloader middleware applies, robots.txt, retries, redirects, the per-site
delay, the size limit), then awaits `take_page(page)` and only then asks for the next list page. Awaiting the
taker directly is the back-pressure (the crawl never runs ahead of Kafka and PostgreSQL), keeps the order of
pages, and puts every stop decision in one place. A queue between a crawl running freely and a consumer would
need its own bound, its own error path back into the crawl and its own drain on stop, for nothing gained: a
board is read one request at a time anyway.

Paging (page_number): from `resume_at` (when it lies within the board's first `max_pages` pages) else
`start_page`, up until a page shows no post not already seen in this crawl (past the end boards show only their
pinned notices and a "no posts" row; some repeat the last page) or the `max_pages`-th page of the board was read:
the crawl reached its end (`next_page` None: the next crawl starts at the first page again). Rows without a
detail link are not posts. A post pinned to every page is read once per crawl, at its first place.

Where a crawl stops, and what `BoardCrawl.next_page` (the page the next crawl starts at) then is:

- its end (above): None;
- `max_rows` posts read: after the list page on which the count was reached; the page after it;
- a stop (cancellation: SIGTERM, the scheduler's stop; or an error raised before a request: the run's deadline
  passed, the daily request budget spent, an open circuit, an egress refusal, the rate limiter's store down; or
  `take_page` failing): the page in progress, whose posts are read again whole next time (a page is handed over
  whole or not at all). Cancelling sends no further request, lets the one on the wire finish and a `take_page`
  in progress complete, and closes Scrapy's connections before the cancellation propagates; an error is raised
  once the crawl has wound down;
- a list page after the first that fails (after retries), is unreadable or forbidden by robots.txt: reported in
  `BoardCrawl.errors`, and the crawl ends there (None): what the board no longer serves is not waited for, and a
  page broken for good cannot hold the crawl at it while new posts arrive on the first page. A detail page that
  fails is reported in `errors` and its post left out; the crawl goes on.

The first list page of a crawl failing (connection refused, timeout, 5xx after retries) raises
`SourceUnavailableError` (retriable, an outage), forbidden by robots.txt `ScrapingBlockedError`.

Circuit breaker (`breaker`: the source's, made by `collectors.http.new_breaker` as an API's is): an open circuit
raises `CircuitOpenError` before any request; while closed, every request's attempt counts as the API client
counts them: a timeout, a connection failure or a 5xx/408 answer (each retry included) is a failure, any other
answer a success (which closes it again). Opening mid-crawl stops the crawl (`CircuitOpenError`).

Egress (`collectors.egress`, the source's `EgressPolicy`): every request, each redirect hop and robots.txt
included, is checked by the origin rule before it is sent (own scheme, host and port or `allowed_redirect_hosts`,
at most `max_redirects` hops; a header carrying the source's credentials is not sent to another host); addresses
are checked where aiohttp connects (a resolver that returns only the addresses the policy resolved and allowed, so
there is no DNS-rebinding gap; an IP literal is checked before the request). A refusal (`EgressRefusedError`)
stops the crawl and is raised; it is not an outage (the circuit breaker does not count it).

Deadlines and sizes: each attempt is bounded in total (connect and every read) by the smaller of
`timeout_seconds` and `request_deadline_seconds` (aiohttp's total timeout), a request's redirect hops together by
`request_deadline_seconds`, and none lasts past the run's `deadline_at`, after which no request starts
(`SourceDeadlineError`, a stop; a request cut short by it is a stop too, not a failed page). A page larger than
`max_response_bytes` is not downloaded further and counts as a failed page.

Politeness: robots.txt is obeyed (forbidden URLs are never fetched and are reported in
`BoardCrawl.blocked_by_robots`); one request at a time, each starting at least `html.download_delay_seconds`
after the previous one (no random jitter); the user agent is the one passed in. robots.txt's `Crawl-delay` is read
before the crawl (Scrapy does not apply it) and the larger of it and the definition's delay is the one applied.
`before_request`, when given, is awaited before every request (robots.txt and retries included, forbidden URLs
excluded); the collector passes its daily request budget and shared Redis rate limiter there.

Scrapy without a reactor: nothing is bound to one event loop for the life of the process, a crawl works from
inside a running loop, several crawls may run at once (asyncio.gather), and successive `asyncio.run` calls each
get a fresh engine. The one thing this rules out is a Twisted reactor installed elsewhere in the same process;
`crawl_board` then fails with a clear `RuntimeError`.

Imports: the standard library, Scrapy (its aiohttp download handler), aiohttp's resolver interface, httpx (our
own robots.txt read), protego, circuitbreaker, bs4, `collectors.definitions`, `collectors.egress`,
`collectors.parsing`, `common.errors`. Settings values (the user agent) are passed in; this module never reads the
environment. It sets the `scrapy` logger to WARNING when the application left it unset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from bs4 import BeautifulSoup
from circuitbreaker import CircuitBreaker
from protego import Protego
from scrapy import Request, Spider
from scrapy.core.downloader.handlers._aiohttp import AiohttpDownloadHandler
from scrapy.crawler import AsyncCrawlerRunner, Crawler
from scrapy.exceptions import DownloadTimeoutError, IgnoreRequest
from scrapy.http import Response
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.misc import load_object
from scrapy.utils.reactor import is_reactor_installed

from aegis_pipeline.collectors.definitions import HtmlSelectors, NoPagination, PageNumberPagination, SourceDefinition
from aegis_pipeline.collectors.egress import EgressPolicy, EgressTransport, Origin, applying, policy_for
from aegis_pipeline.collectors.parsing.encodings import decode_body
from aegis_pipeline.collectors.parsing.errors import ValueParseError
from aegis_pipeline.collectors.parsing.urls import join_url
from aegis_pipeline.common.errors import (
    CircuitOpenError,
    PipelineError,
    ScrapingBlockedError,
    SourceConfigError,
    SourceDeadlineError,
    SourceUnavailableError,
)

BeforeRequest = Callable[[], Awaitable[None]]

# Scrapy logs the crawl's progress at INFO (settings, stats); the application's log only wants problems.
_SCRAPY_LOG_LEVEL = logging.WARNING
# RobotsTxtMiddleware raises IgnoreRequest with this message; no other component ignores requests here.
_ROBOTS_FORBIDDEN_MESSAGE = "Forbidden by robots.txt"
_CANCELLED_MESSAGE = "crawl cancelled"
# The logger of Scrapy's asyncio download handlers (aiohttp, httpx), which the reactorless mode uses.
_STREAMING_HANDLER_LOGGER = "scrapy.core.downloader.handlers._base_streaming"
_CHARSET_IN_CONTENT_TYPE = re.compile(r"charset\s*=\s*[\"']?([^\"';\s]+)", re.IGNORECASE)
# Last before the downloader: after RobotsTxtMiddleware (100), so a forbidden request never takes a rate-limit token;
# after RetryMiddleware (550) and RedirectMiddleware (600), so every retry and every redirect hop passes through it
# (checked, paced, counted); and first to see each answer, before a retry or a redirect is made of it.
_GUARD_MIDDLEWARE_ORDER = 950
_DEADLINE_META = "aegis_deadline_started"  # (retry number, loop time of the request's first hop)
# robots.txt read by ourselves (for its Crawl-delay): Google reads at most 500 KiB of one, so do we.
_ROBOTS_MAX_BYTES = 500 * 1024


@dataclass(frozen=True)
class BoardRecord:
    """One post of a board.

    `external_id`: the detail link's `html.id_query_param` value, else the absolute link. `detail_url`: the
    absolute detail link. `fields`: each `html.detail_fields` name -> the selected element's inner HTML, ""
    when the selector matched nothing.
    """

    external_id: str
    detail_url: str
    fields: dict[str, str]


@dataclass(frozen=True)
class BoardPage:
    """One list page of a crawl, done: `number` (the board's page number; 1 for a board without pagination), its
    `records` (the posts new to this crawl whose detail page was read, in list order), `posts` (the posts new to
    this crawl it listed, read or not: what `max_rows` counts) and `next_page`, the list page the crawl reads after
    it (None: this page ended the crawl)."""

    number: int
    records: list[BoardRecord]
    posts: int
    next_page: int | None


TakePage = Callable[[BoardPage], Awaitable[None]]


@dataclass
class BoardCrawl:
    """What one crawl did: `records` (every post read, in list order, when no `take_page` was given; else empty),
    how many list and detail pages were fetched, the URLs robots.txt forbade (never fetched), one line per page that
    failed; `first_page` (where it started), `next_page` (where the next crawl starts: None for the first page),
    `list_pages` (list pages done) and `posts` (posts read); `stopped_by` "max_rows" when the rows cap paused it,
    "failed_page" when a later list page ended it, None when it reached its end."""

    records: list[BoardRecord]
    pages_fetched: int
    blocked_by_robots: list[str]
    errors: list[str]
    first_page: int = 1
    next_page: int | None = None
    list_pages: int = 0
    posts: int = 0
    stopped_by: str | None = None


def first_list_page(source: SourceDefinition, resume_at: int | None) -> int:
    """The list page a crawl of `source` starts at: `resume_at` when it is one of the board's first `max_pages`
    pages (a position saved under another definition may not be), else the board's first page."""
    pagination = source.pagination
    if not isinstance(pagination, PageNumberPagination):
        return 1
    if resume_at is not None and pagination.start_page <= resume_at < pagination.start_page + source.max_pages:
        return resume_at
    return pagination.start_page


async def crawl_board(
    source: SourceDefinition,
    *,
    user_agent: str,
    before_request: BeforeRequest | None = None,
    max_response_bytes: int = 0,
    take_page: TakePage | None = None,
    resume_at: int | None = None,
    max_rows: int | None = None,
    breaker: CircuitBreaker | None = None,
    egress: EgressPolicy | None = None,
    deadline_at: float | None = None,
) -> BoardCrawl:
    """Crawl the board `source` (kind html) once (module docstring).

    user_agent: the User-Agent sent, also the name robots.txt rules are matched against.
    before_request: awaited before every request; an error it raises stops the crawl and is raised. Default None.
    max_response_bytes: a page larger than this is cancelled and reported as failed; default 0 (no limit).
    take_page: awaited with each list page's posts before the crawl goes on; default None (posts returned).
    resume_at: the list page to start at (`first_list_page`); default None (the board's first page).
    max_rows: pause after the list page on which this many posts were read; default None (no cap).
    breaker: the source's circuit breaker; default None (none).
    egress: the source's egress policy; default `egress.policy_for(source)`.
    deadline_at: the run's deadline (`time.monotonic()`): no request starts after it (`SourceDeadlineError`), and
    none lasts past it; default None.

    Raises `SourceUnavailableError` when the first list page cannot be fetched, `ScrapingBlockedError` when
    robots.txt forbids it, `CircuitOpenError` when the circuit is open, `EgressRefusedError` for a refused URL or
    address, `SourceConfigError` for a source without an `html` section or with a pagination a board cannot use,
    and whatever `before_request` or `take_page` raised. Safe to call concurrently and repeatedly, from any running
    event loop.
    """
    selectors = _board_selectors(source)
    if is_reactor_installed():
        raise RuntimeError(
            "a Twisted reactor is installed in this process; crawl_board runs Scrapy without one "
            "(TWISTED_REACTOR_ENABLED=False) and cannot share the process with it"
        )
    if breaker is not None and breaker.opened:
        raise _circuit_open(source, breaker)
    _quieten_scrapy_logging()
    egress = egress or policy_for(source)
    walk = _BoardWalk(source=source, selectors=selectors, first_page=first_list_page(source, resume_at),
                      before_request=before_request, take_page=take_page, max_rows=max_rows, breaker=breaker,
                      egress=egress, deadline_at=deadline_at)
    # Our own read of robots.txt is a request like any other: paced by the shared limiter and followed by the
    # site's delay before Scrapy's first request.
    if before_request is not None:
        await before_request()
    crawl_delay = await robots_crawl_delay(source, user_agent, egress)
    settings = _scrapy_settings(source, selectors, user_agent, crawl_delay, max_response_bytes)
    await asyncio.sleep(settings["DOWNLOAD_DELAY"])
    runner = AsyncCrawlerRunner(settings)
    crawl_task = runner.crawl(_BoardSpider, walk=walk)
    try:
        # Shielded: cancelling Scrapy's task in the middle of its bookkeeping (the engine may still be starting)
        # would leave its connections open and, before the engine runs, not even stop the crawl.
        await asyncio.shield(crawl_task)
    except asyncio.CancelledError:
        # Drain instead: no new request goes out (see _GuardMiddleware), the one on the wire finishes, a page being
        # taken is taken, the walk returns and Scrapy closes everything itself.
        walk.cancelled = True
        await asyncio.wait([crawl_task])
        if not crawl_task.cancelled():
            crawl_task.exception()  # retrieved, so asyncio does not report it; the cancellation is what counts
        raise
    return walk.result()


# --- the walk: one crawl, list page by list page ----------------------------------------------------------


class _Stopped(Exception):
    """The walk stops where it is (cancelled, or `_BoardWalk.stop_error` was set)."""


class _PageFailed(Exception):
    """A page could not be had: `reason` says why; `forbidden` when robots.txt forbids it."""

    def __init__(self, reason: str, *, forbidden: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.forbidden = forbidden


class _CrawlStop(Exception):
    """Raised by the guard middleware in place of what stops the crawl before a request (`error`: the daily
    budget spent, an open circuit, an egress refusal, the rate limiter's store down), so that the walk tells it
    from a download that failed."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _BoardWalk:
    """One crawl's state and its walk over the list pages (run by the spider's `start`)."""

    source: SourceDefinition
    selectors: HtmlSelectors
    first_page: int
    before_request: BeforeRequest | None
    take_page: TakePage | None
    max_rows: int | None
    breaker: CircuitBreaker | None
    egress: EgressPolicy
    deadline_at: float | None = None
    records: list[BoardRecord] = field(default_factory=list)
    seen_detail_urls: set[str] = field(default_factory=set)
    pages_fetched: int = 0
    blocked_by_robots: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_page_failure: PipelineError | None = None
    stop_error: BaseException | None = None
    cancelled: bool = False
    next_page: int | None = None
    list_pages: int = 0
    posts: int = 0
    stopped_by: str | None = None

    @classmethod
    def reading(cls, source: SourceDefinition) -> _BoardWalk:
        """A walk that crawls nothing, for reading pages given to `read_list_page` and `read_post` (the fuzzer
        reads hostile pages through them: devstack/fuzz.py)."""
        return cls(source=source, selectors=_board_selectors(source), first_page=1, before_request=None,
                   take_page=None, max_rows=None, breaker=None, egress=policy_for(source))

    def result(self) -> BoardCrawl:
        if self.first_page_failure is not None:
            raise self.first_page_failure
        if self.stop_error is not None:
            raise self.stop_error
        return BoardCrawl(records=list(self.records), pages_fetched=self.pages_fetched,
                          blocked_by_robots=list(self.blocked_by_robots), errors=list(self.errors),
                          first_page=self.first_page, next_page=self.next_page, list_pages=self.list_pages,
                          posts=self.posts, stopped_by=self.stopped_by)

    async def walk(self, crawler: Crawler) -> None:
        page: int | None = self.first_page
        self.next_page = self.first_page
        while page is not None:
            try:
                page = await self._list_page(crawler, page)
            except _Stopped:
                return

    async def _list_page(self, crawler: Crawler, number: int) -> int | None:
        """Read list page `number` and its posts, hand them over; return the next page to read, None to end."""
        url = _list_page_url(self.source, number)
        try:
            detail_urls = self.read_list_page(await self._download(crawler, url), url)
        except _PageFailed as failure:
            self._list_page_failed(url, number, failure)
            return None
        except _Stopped:
            raise
        except Exception as error:  # a page we cannot read at all is a failed page, not a crash of the crawl
            unreadable = _PageFailed(f"unreadable: {error!r}")
            unreadable.__cause__ = error
            self._list_page_failed(url, number, unreadable)
            return None
        records: list[BoardRecord] = []
        for detail_url in detail_urls:
            record = await self._post(crawler, detail_url)
            if record is not None:
                records.append(record)
        # A page without any post not seen yet ends the walk: past the last page boards show only the pinned
        # notices and a "no posts" row, and some repeat their last page.
        following = number + 1 if detail_urls and self._has_next_page(number) else None
        await self._hand_over(BoardPage(number, records, len(detail_urls), following))
        if following is not None and self.max_rows is not None and self.posts >= self.max_rows:
            self.stopped_by = "max_rows"
            return None
        return following

    def _has_next_page(self, number: int) -> bool:
        pagination = self.source.pagination
        if not isinstance(pagination, PageNumberPagination):
            return False
        return number - pagination.start_page + 1 < self.source.max_pages

    def read_list_page(self, response: Response, list_page_url: str) -> list[str]:
        """The detail links of the list page's posts not seen yet in this crawl, in list order; raises what makes
        the page unreadable."""
        soup = _soup(response, self.source)
        found: list[str] = []
        for row in soup.select(self.selectors.row_selector):
            link = row.select_one(self.selectors.link_selector)
            href = link.get("href") if link is not None else None
            if not isinstance(href, str):
                continue  # a row without a detail link is not a post ("등록된 게시물이 없습니다.")
            try:
                detail_url = join_url(list_page_url, href)
            except ValueParseError as error:
                self.errors.append(f"{list_page_url}: unusable detail link: {error}")
                continue
            if detail_url in self.seen_detail_urls:
                continue  # pinned notices sit on every list page
            self.seen_detail_urls.add(detail_url)
            found.append(detail_url)
        return found

    def _list_page_failed(self, url: str, number: int, failure: _PageFailed) -> None:
        if failure.forbidden:
            self.blocked_by_robots.append(url)
        if number != self.first_page:  # the crawl ends here; the next one starts at the first page
            self.errors.append(f"{url}: list page failed: {failure.reason}")
            self.next_page, self.stopped_by = None, "failed_page"
            return
        if failure.forbidden:
            self.first_page_failure = ScrapingBlockedError(
                f"robots.txt forbids the board's list page {url}", source=self.source.name
            )
            return
        unavailable = SourceUnavailableError(f"board list page {url} failed: {failure.reason}",
                                             source=self.source.name)
        unavailable.__cause__ = failure.__cause__
        self.first_page_failure = unavailable

    async def _post(self, crawler: Crawler, detail_url: str) -> BoardRecord | None:
        try:
            response = await self._download(crawler, detail_url)
        except _PageFailed as failure:
            if failure.forbidden:
                self.blocked_by_robots.append(detail_url)
            else:
                self.errors.append(f"{detail_url}: detail page failed: {failure.reason}")
            return None
        return self.read_post(response, detail_url)

    def read_post(self, response: Response, detail_url: str) -> BoardRecord | None:
        """The post on a detail page; None (and a line in `errors`) when the page cannot be read."""
        try:
            soup = _soup(response, self.source)
            fields: dict[str, str] = {}
            for field_name, selector in self.selectors.detail_fields.items():
                element = soup.select_one(selector)
                fields[field_name] = element.decode_contents() if element is not None else ""
        except Exception as error:  # one unreadable post must not cost the others
            self.errors.append(f"{response.url}: detail page unreadable: {error!r}")
            return None
        return BoardRecord(external_id=_external_id(detail_url, self.selectors.id_query_param),
                           detail_url=detail_url, fields=fields)

    async def _download(self, crawler: Crawler, url: str) -> Response:
        """GET `url` through Scrapy's engine (every downloader middleware applies); a 2xx answer or `_PageFailed`;
        `_Stopped` when the crawl must stop."""
        if self.cancelled:
            raise _Stopped
        assert crawler.engine is not None
        request = Request(url, headers=self.source.headers, callback=NO_CALLBACK, dont_filter=True)
        try:
            response = await crawler.engine.download_async(request)
        except _CrawlStop as stop:
            self.stop_error = self.stop_error or stop.error
            raise _Stopped from None
        except PipelineError as error:  # an address refused where aiohttp connects (EgressRefusedError)
            self.stop_error = self.stop_error or error
            raise _Stopped from None
        except IgnoreRequest as error:
            if self.cancelled or str(error) == _CANCELLED_MESSAGE:
                raise _Stopped from None
            forbidden = str(error) == _ROBOTS_FORBIDDEN_MESSAGE
            raise _PageFailed("forbidden by robots.txt" if forbidden else f"ignored: {error}",
                              forbidden=forbidden) from error
        except Exception as error:  # the download failed, retries included
            if self.past_deadline():  # cut short by the run's deadline: a stop, not a page that failed
                self.stop_error = self.stop_error or self.deadline_error()
                raise _Stopped from None
            raise _PageFailed(f"{type(error).__name__}: {error}") from error
        if self.cancelled:  # the one on the wire when the crawl was cancelled: finished, not used
            raise _Stopped
        if not 200 <= response.status < 300:
            raise _PageFailed(f"HTTP {response.status}")
        self.pages_fetched += 1
        return response

    def past_deadline(self) -> bool:
        return self.deadline_at is not None and time.monotonic() >= self.deadline_at

    def deadline_error(self) -> SourceDeadlineError:
        return SourceDeadlineError(f"{self.source.name}: run deadline of {self.source.run_deadline_seconds:g} s "
                                   "reached; stopped", source=self.source.name)

    async def _hand_over(self, page: BoardPage) -> None:
        try:
            if self.take_page is not None:
                await self.take_page(page)
            else:
                self.records.extend(page.records)
        except Exception as error:  # publishing failed: the page was not taken; the crawl stops before it
            self.stop_error = self.stop_error or error
            raise _Stopped from None
        self.list_pages += 1
        self.posts += page.posts
        self.next_page = page.next_page


# --- Scrapy: the spider, the guard middleware, the download handler --------------------------------------


class _BoardSpider(Spider):
    name = "aegis_html_board"

    walk: _BoardWalk

    async def start(self) -> AsyncIterator[Request]:
        # The walk downloads through the engine itself (module docstring): it yields no request to the scheduler.
        await self.walk.walk(self.crawler)
        for request in ():
            yield request


def _walk_of(crawler: Crawler) -> _BoardWalk | None:
    # The walk travels on the spider, not in the settings: Scrapy deep-copies settings, which would copy a rate
    # limiter bound to a Redis client.
    spider = crawler.spider
    return spider.walk if isinstance(spider, _BoardSpider) else None


class _GuardMiddleware:
    """Before each request goes to the downloader (each retry and redirect hop too): drops it once the crawl is
    cancelled; checks the circuit, the egress policy and the request's deadline; awaits `before_request`. Each
    answer and each download failure is counted by the circuit breaker."""

    def __init__(self, crawler: Crawler) -> None:
        self._crawler = crawler
        self._per_attempt_seconds = crawler.settings.getfloat("DOWNLOAD_TIMEOUT")
        self._outages = tuple(load_object(path) for path in crawler.settings.getlist("RETRY_EXCEPTIONS"))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        walk = _walk_of(self._crawler)
        if walk is None:
            return
        if walk.cancelled:
            raise IgnoreRequest(_CANCELLED_MESSAGE)
        try:
            await self._check(walk, request)
            if walk.before_request is not None:
                await walk.before_request()
        except Exception as error:
            raise _CrawlStop(error) from error
        self._bound_in_time(walk, request)

    async def _check(self, walk: _BoardWalk, request: Request) -> None:
        if walk.past_deadline():
            raise walk.deadline_error()
        if walk.breaker is not None and walk.breaker.opened:
            raise _circuit_open(walk.source, walk.breaker)
        if request.meta.get("redirect_times", 0) > walk.source.max_redirects:
            raise walk.egress.refuse(f"more than {walk.source.max_redirects} redirects", "redirects",
                                     Origin.of(request.url))
        walk.egress.check_url(request.url)
        target = Origin.of(request.url)
        if _is_ip_literal(target.host):  # aiohttp connects to a literal without asking the resolver: check it here
            await walk.egress.resolve(target.host, target.port)
        if target != walk.egress.origin:  # an allowed other host: the source's credentials stay home
            secrets = walk.source.secret_values()
            for name, value in walk.source.headers.items():
                if value.strip() in secrets:
                    request.headers.pop(name, None)

    def _bound_in_time(self, walk: _BoardWalk, request: Request) -> None:
        """Each attempt in total at most DOWNLOAD_TIMEOUT; an attempt's redirect hops together at most the
        source's `request_deadline_seconds` (a retry starts its own); none past the run's deadline."""
        now = time.monotonic()
        retry = request.meta.get("retry_times", 0)
        started = request.meta.get(_DEADLINE_META)
        if started is None or started[0] != retry:
            started = (retry, now)
            request.meta[_DEADLINE_META] = started
        remaining = walk.source.request_deadline_seconds - (now - started[1])
        if remaining <= 0:
            raise DownloadTimeoutError(f"{request.url}: past its request deadline "
                                       f"({walk.source.request_deadline_seconds:g} s, redirects included)")
        if walk.deadline_at is not None:
            remaining = min(remaining, walk.deadline_at - now)
        request.meta["download_timeout"] = max(min(self._per_attempt_seconds, remaining), 0.001)

    def process_response(self, request: Request, response: Response) -> Response:
        walk = _walk_of(self._crawler)
        if walk is not None and walk.breaker is not None:
            if response.status >= 500 or response.status == 408:
                _count_outage(walk, f"{request.url} answered HTTP {response.status}")
            else:
                walk.breaker.reset()  # what the API client's breaker does after any answer that is not an outage
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        walk = _walk_of(self._crawler)
        if (walk is not None and walk.breaker is not None and isinstance(exception, self._outages)
                and not walk.past_deadline()):  # a request cut short by the run's deadline says nothing of the site
            _count_outage(walk, f"{request.url}: {type(exception).__name__}")
        return None  # Scrapy goes on: RetryMiddleware retries, or the walk gets the exception


def _count_outage(walk: _BoardWalk, what: str) -> None:
    """One failure for the source's breaker, counted as its decorated API requests are (an outage raised)."""
    assert walk.breaker is not None
    with contextlib.suppress(SourceUnavailableError), walk.breaker:
        raise SourceUnavailableError(what, source=walk.source.name)


def _circuit_open(source: SourceDefinition, breaker: CircuitBreaker) -> CircuitOpenError:
    return CircuitOpenError(
        f"{source.name}: circuit open after repeated failures ({breaker.open_remaining:.0f} s until it half-opens)",
        source=source.name,
    )


def _is_ip_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.strip("[]"))
    except OSError:
        return False
    return True


class _EgressResolver(AbstractResolver):
    """aiohttp's resolver for a crawl: the addresses the source's egress policy resolved and allowed, and only
    those (`EgressPolicy.resolve` raises `EgressRefusedError` before any connection is opened)."""

    def __init__(self, crawler: Crawler, replaced: AbstractResolver) -> None:
        self._crawler = crawler
        self._replaced = replaced

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        walk = _walk_of(self._crawler)
        if walk is None:  # not one of our crawls: nothing but public addresses (the policy of no source)
            raise OSError(f"{host}: no egress policy for this crawl")
        addresses = await walk.egress.resolve(host, port)
        return [ResolveResult(hostname=host, host=address, port=port,
                              family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)
                for address in addresses]

    async def close(self) -> None:
        await self._replaced.close()


class _EgressDownloadHandler(AiohttpDownloadHandler):
    """Scrapy's aiohttp handler (the one its reactorless mode uses), its connector resolving names through the
    crawl's egress policy. aiohttp's TCPConnector keeps its resolver in `_resolver` (aiohttp 3.x, pinned); the
    board tests fail if that ever stops being the resolver asked."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        connector: Any = self._session.connector
        if not isinstance(getattr(connector, "_resolver", None), AbstractResolver):
            raise RuntimeError("aiohttp's TCPConnector no longer keeps its resolver in _resolver: the board "
                               "crawler cannot apply the egress policy to the addresses it connects to")
        connector._resolver = _EgressResolver(crawler, connector._resolver)


# --- helpers -------------------------------------------------------------------------------------------


def _board_selectors(source: SourceDefinition) -> HtmlSelectors:
    if source.html is None:
        raise SourceConfigError(f'source "{source.name}" has no html section; crawl_board reads web boards only')
    if not isinstance(source.pagination, PageNumberPagination | NoPagination):
        raise SourceConfigError(
            f'source "{source.name}": a web board pages by page_number or not at all, '
            f"not {source.pagination.type}"
        )
    return source.html


async def robots_crawl_delay(source: SourceDefinition, user_agent: str,
                             egress: EgressPolicy | None = None) -> float | None:
    """The site's robots.txt `Crawl-delay` for `user_agent` (Scrapy obeys Allow/Disallow but not this line).

    None when robots.txt is missing, unreadable, refused by the egress policy, past the request deadline or says
    nothing; the crawl then keeps the configured delay. Redirects are not followed (Scrapy reads robots.txt too,
    redirects checked hop by hop).
    """
    robots_url = urljoin(_list_page_url(source, 1), "/robots.txt")
    policy = egress or policy_for(source)
    body = bytearray()
    try:
        policy.check_url(robots_url)
        async with asyncio.timeout(source.request_deadline_seconds), httpx.AsyncClient(
            timeout=min(source.timeout_seconds, source.request_deadline_seconds), headers={"User-Agent": user_agent},
            transport=EgressTransport(), trust_env=False,
        ) as client:
            with applying(policy):
                async with client.stream("GET", robots_url) as response:
                    if response.status_code != 200:
                        return None
                    async for chunk in response.aiter_bytes():
                        body.extend(chunk)
                        if len(body) >= _ROBOTS_MAX_BYTES:
                            break
                    charset = response.charset_encoding
    except (httpx.HTTPError, PipelineError, TimeoutError):
        return None  # Scrapy fetches robots.txt itself too and applies what it can read
    delay = Protego.parse(decode_body(bytes(body[:_ROBOTS_MAX_BYTES]), charset)).crawl_delay(user_agent)
    return float(delay) if delay is not None else None


def _scrapy_settings(
    source: SourceDefinition, selectors: HtmlSelectors, user_agent: str, crawl_delay: float | None = None,
    max_response_bytes: int = 0,
) -> dict[str, Any]:
    return {
        # Scrapy on the running asyncio loop, no reactor: see the module docstring.
        "TWISTED_REACTOR_ENABLED": False,
        "ROBOTSTXT_OBEY": True,
        "USER_AGENT": user_agent,
        # The larger of our own per-site delay and the one the site asks for in robots.txt.
        "DOWNLOAD_DELAY": max(selectors.download_delay_seconds, crawl_delay or 0.0),
        # Scrapy varies the delay by ±50% by default; the configured delay is a minimum, so no jitter.
        "DOWNLOAD_DELAY_JITTER": 0,
        # One request at a time: a crawl is one site, and small municipal servers are the ones that block eager
        # crawlers.
        "CONCURRENT_REQUESTS": 1,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        # aiohttp's total timeout: connect and every read of one attempt.
        "DOWNLOAD_TIMEOUT": min(source.timeout_seconds, source.request_deadline_seconds),
        "DOWNLOAD_MAXSIZE": max_response_bytes,  # 0: no limit
        "DOWNLOAD_HANDLERS": {"http": _EgressDownloadHandler, "https": _EgressDownloadHandler},
        # One more than the source allows, so that the guard refuses the hop past `max_redirects` with its reason.
        "REDIRECT_MAX_TIMES": source.max_redirects + 1,
        "RETRY_ENABLED": source.max_retries > 0,
        "RETRY_TIMES": source.max_retries,
        # A page that still fails is reported by crawl_board itself (raised or in `errors`); Scrapy's line is context.
        "RETRY_GIVE_UP_LOG_LEVEL": "WARNING",
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": logging.getLevelName(_SCRAPY_LOG_LEVEL),
        "EXTENSIONS": {
            # Periodic INFO lines and memory polling are noise for a crawl of a few dozen pages.
            "scrapy.extensions.logstats.LogStats": None,
            "scrapy.extensions.memusage.MemoryUsage": None,
        },
        "DOWNLOADER_MIDDLEWARES": {_GuardMiddleware: _GUARD_MIDDLEWARE_ORDER},
    }


class _KnownExperimentalHandlerFilter(logging.Filter):
    """Drops the warning Scrapy logs each time it builds its aiohttp download handler (one per crawl).

    Running without a reactor means using that handler; the choice is made and documented once, here,
    rather than repeated in the application's log every day for every board.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "is experimental and is not recommended for production use" not in record.getMessage()


def _quieten_scrapy_logging() -> None:
    # AsyncCrawlerRunner does not configure logging (the application does), so LOG_LEVEL alone would not
    # silence Scrapy's INFO lines. Only an unset level is changed: the application may want Scrapy's INFO.
    scrapy_logger = logging.getLogger("scrapy")
    if scrapy_logger.level == logging.NOTSET:
        scrapy_logger.setLevel(_SCRAPY_LOG_LEVEL)
    handler_logger = logging.getLogger(_STREAMING_HANDLER_LOGGER)
    if not any(isinstance(existing, _KnownExperimentalHandlerFilter) for existing in handler_logger.filters):
        handler_logger.addFilter(_KnownExperimentalHandlerFilter())


def _list_page_url(source: SourceDefinition, page_number: int) -> str:
    parts = urlsplit(source.url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(source.params)
    if isinstance(source.pagination, PageNumberPagination):
        query[source.pagination.page_param] = str(page_number)
        if source.pagination.size_param is not None:
            query[source.pagination.size_param] = str(source.pagination.page_size)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _soup(response: Response, source: SourceDefinition) -> BeautifulSoup:
    content_type = response.headers.get(b"Content-Type")
    header_charset = None
    if content_type is not None:
        match = _CHARSET_IN_CONTENT_TYPE.search(content_type.decode("latin-1"))
        header_charset = match[1] if match else None
    return BeautifulSoup(decode_body(response.body, header_charset, source.encoding), "lxml")


def _external_id(detail_url: str, id_query_param: str | None) -> str:
    if id_query_param is not None:
        for name, value in parse_qsl(urlsplit(detail_url).query, keep_blank_values=True):
            if name == id_query_param and value.strip():
                return value.strip()
    return detail_url
