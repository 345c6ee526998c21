"""The web-board crawler for sources of kind `html`: Scrapy fetches, BeautifulSoup reads.

`crawl_board(source, user_agent=..., before_request=...)` walks a board's list pages (`source.url` with
`source.params`, paginated by `source.pagination`), follows each row's detail link and returns, per post, the
inner HTML of each `html.detail_fields` selector as a `BoardRecord`. Mapping those fields onto the record (and
rejecting bad ones) is the caller's business; this module only fetches, decodes and selects.

Paging (page_number): from `start_page` up, until a page shows no post not already seen (past the end boards
show only their pinned notices and a "no posts" row; some repeat the last page) or `max_pages` pages were read.
Rows without a detail link are not posts. A post pinned to every page is returned once, at its first place.

Politeness: robots.txt is obeyed (forbidden URLs are never fetched and are reported in
`BoardCrawl.blocked_by_robots`); one request at a time, each starting at least `html.download_delay_seconds`
after the previous one (no random jitter); the user agent is the one passed in; timeouts and retries come
from the definition; a page larger than `max_response_bytes` is not downloaded further and counts as a failed
page. robots.txt's `Crawl-delay` is read before the crawl (Scrapy does not apply it) and the
larger of it and the definition's delay is the one applied. `before_request`, when given, is awaited before
every request (robots.txt and retries included, forbidden URLs excluded); the collector passes its shared
Redis rate limiter there.

How Scrapy runs here: in Scrapy's reactorless mode (`TWISTED_REACTOR_ENABLED=False`, Scrapy >= 2.15) through
`AsyncCrawlerRunner`. The engine then runs as plain asyncio tasks on whatever loop is running, and downloads go
through Scrapy's aiohttp download handler (which Scrapy still labels experimental; its warning is filtered
here). No Twisted reactor is installed, so nothing is bound to one event loop for the life of the process: a
crawl works from inside a running loop, several crawls may run at once (asyncio.gather), and successive
`asyncio.run` calls each get a fresh engine. (A reactor, by contrast, cannot be restarted and is tied to the
loop it was installed on.) The one thing this rules out is a Twisted reactor installed elsewhere in the same
process; `crawl_board` then fails with a clear `RuntimeError`. Cancelling `crawl_board` sends no further
request, lets the one on the wire finish and closes Scrapy's connections before the cancellation propagates.

Errors: the first list page failing (connection refused, timeout, 5xx after retries) raises
`SourceUnavailableError` (retriable, for the caller's circuit breaker); the first list page forbidden by
robots.txt raises `ScrapingBlockedError`. A later list page or a detail page that fails is reported in
`BoardCrawl.errors` and the records found so far are still returned. A `PipelineError` raised by
`before_request` (e.g. the rate limiter's store being down) for the first list page is raised as it is.

Imports: the standard library, Scrapy (and Twisted's `Failure`), bs4, `collectors.definitions`,
`collectors.parsing`, `common.errors`. Settings values (the user agent) are passed in; this module never reads
the environment. It sets the `scrapy` logger to WARNING when the application left it unset.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
from bs4 import BeautifulSoup
from protego import Protego
from scrapy import Request, Spider
from scrapy.crawler import AsyncCrawlerRunner, Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.reactor import is_reactor_installed
from twisted.python.failure import Failure

from aegis_pipeline.collectors.definitions import HtmlSelectors, NoPagination, PageNumberPagination, SourceDefinition
from aegis_pipeline.collectors.parsing.encodings import decode_body
from aegis_pipeline.collectors.parsing.errors import ValueParseError
from aegis_pipeline.collectors.parsing.urls import join_url
from aegis_pipeline.common.errors import PipelineError, ScrapingBlockedError, SourceConfigError, SourceUnavailableError

BeforeRequest = Callable[[], Awaitable[None]]

# Scrapy logs the crawl's progress at INFO (settings, stats); the application's log only wants problems.
_SCRAPY_LOG_LEVEL = logging.WARNING
# RobotsTxtMiddleware raises IgnoreRequest with this message; no other component ignores requests here.
_ROBOTS_FORBIDDEN_MESSAGE = "Forbidden by robots.txt"
_CANCELLED_MESSAGE = "crawl cancelled"
# The logger of Scrapy's asyncio download handlers (aiohttp, httpx), which the reactorless mode uses.
_STREAMING_HANDLER_LOGGER = "scrapy.core.downloader.handlers._base_streaming"
_CHARSET_IN_CONTENT_TYPE = re.compile(r"charset\s*=\s*[\"']?([^\"';\s]+)", re.IGNORECASE)
# Just after UserAgentMiddleware (500) and RetryMiddleware (550), so retries pass through it again, and after
# RobotsTxtMiddleware (100), so a forbidden request never takes a rate-limit token.
_BEFORE_REQUEST_MIDDLEWARE_ORDER = 950


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


@dataclass
class BoardCrawl:
    """What one crawl found: records in list order (each post once), how many list and detail pages were
    fetched successfully, the URLs robots.txt forbade (never fetched) and one line per page that failed."""

    records: list[BoardRecord]
    pages_fetched: int
    blocked_by_robots: list[str]
    errors: list[str]


async def crawl_board(
    source: SourceDefinition,
    *,
    user_agent: str,
    before_request: BeforeRequest | None = None,
    max_response_bytes: int = 0,
) -> BoardCrawl:
    """Crawl the board `source` (kind html) once and return its posts.

    user_agent: the User-Agent sent, also the name robots.txt rules are matched against.
    before_request: awaited before every request Scrapy sends; default None (no extra pacing).
    max_response_bytes: a page larger than this is cancelled and reported as failed; default 0 (no limit).

    Raises `SourceUnavailableError` when the first list page cannot be fetched, `ScrapingBlockedError` when
    robots.txt forbids it, `SourceConfigError` for a source without an `html` section or with a pagination a
    board cannot use. Safe to call concurrently and repeatedly, from any running event loop.
    """
    selectors = _board_selectors(source)
    if is_reactor_installed():
        raise RuntimeError(
            "a Twisted reactor is installed in this process; crawl_board runs Scrapy without one "
            "(TWISTED_REACTOR_ENABLED=False) and cannot share the process with it"
        )
    _quieten_scrapy_logging()
    progress = _CrawlProgress()
    # Our own read of robots.txt is a request like any other: paced by the shared limiter and followed by the
    # site's delay before Scrapy's first request.
    if before_request is not None:
        await before_request()
    crawl_delay = await robots_crawl_delay(source, user_agent)
    settings = _scrapy_settings(source, selectors, user_agent, crawl_delay, max_response_bytes)
    await asyncio.sleep(settings["DOWNLOAD_DELAY"])
    runner = AsyncCrawlerRunner(settings)
    crawl_task = runner.crawl(
        _BoardSpider, source=source, selectors=selectors, progress=progress, before_request=before_request
    )
    try:
        # Shielded: cancelling Scrapy's task in the middle of its bookkeeping (the engine may still be starting)
        # would leave its connections open and, before the engine runs, not even stop the crawl.
        await asyncio.shield(crawl_task)
    except asyncio.CancelledError:
        # Drain instead: no new request goes out (see _BeforeRequestMiddleware), the one on the wire finishes,
        # the spider runs out of work and Scrapy closes everything itself.
        progress.cancelled = True
        await asyncio.wait([crawl_task])
        if not crawl_task.cancelled():
            crawl_task.exception()  # retrieved, so asyncio does not report it; the cancellation is what counts
        raise
    return progress.result()


# --- crawl state ---------------------------------------------------------------------------------------


@dataclass
class _CrawlProgress:
    """Shared by the spider's callbacks while one crawl runs; turned into a BoardCrawl at the end."""

    records_by_position: dict[int, BoardRecord] = field(default_factory=dict)
    seen_detail_urls: set[str] = field(default_factory=set)
    pages_fetched: int = 0
    blocked_by_robots: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_page_failure: PipelineError | None = None
    cancelled: bool = False

    def result(self) -> BoardCrawl:
        if self.first_page_failure is not None:
            raise self.first_page_failure
        return BoardCrawl(
            records=[self.records_by_position[position] for position in sorted(self.records_by_position)],
            pages_fetched=self.pages_fetched,
            blocked_by_robots=list(self.blocked_by_robots),
            errors=list(self.errors),
        )


# --- the spider ----------------------------------------------------------------------------------------


class _BoardSpider(Spider):
    name = "aegis_html_board"

    source: SourceDefinition
    selectors: HtmlSelectors
    progress: _CrawlProgress
    before_request: BeforeRequest | None

    async def start(self) -> AsyncIterator[Request]:
        yield self._list_page_request(self._first_page_number())

    # -- list pages

    def _first_page_number(self) -> int:
        pagination = self.source.pagination
        return pagination.start_page if isinstance(pagination, PageNumberPagination) else 1

    def _list_page_request(self, page_number: int) -> Request:
        return Request(
            _list_page_url(self.source, page_number),
            headers=self.source.headers,
            callback=self._parse_list_page,
            errback=self._list_page_failed,
            cb_kwargs={"page_number": page_number},
            # The same list URL can legitimately come back (a board that ignores the page parameter is caught
            # by the no-new-posts rule below, not silently by the dupefilter).
            dont_filter=True,
        )

    def _parse_list_page(self, response: Response, page_number: int) -> list[Request]:
        self.progress.pages_fetched += 1
        if self.progress.cancelled:
            return []
        try:
            soup = _soup(response, self.source)
            detail_requests = self._detail_requests(soup, response.url)
        except Exception as error:  # a page we cannot read at all is a failed page, not a crash of the crawl
            self._list_page_unreadable(response.url, page_number, error)
            return []
        # A page without any post we have not seen yet ends the walk: past the last page boards show only
        # the pinned notices and a "no posts" row, and some repeat their last page.
        if detail_requests and self._has_next_page(page_number):
            detail_requests.append(self._list_page_request(page_number + 1))
        return detail_requests

    def _has_next_page(self, page_number: int) -> bool:
        pagination = self.source.pagination
        if not isinstance(pagination, PageNumberPagination):
            return False
        pages_walked = page_number - pagination.start_page + 1
        return pages_walked < self.source.max_pages

    def _detail_requests(self, soup: BeautifulSoup, list_page_url: str) -> list[Request]:
        requests: list[Request] = []
        for row in soup.select(self.selectors.row_selector):
            link = row.select_one(self.selectors.link_selector)
            href = link.get("href") if link is not None else None
            if not isinstance(href, str):
                continue  # a row without a detail link is not a post ("등록된 게시물이 없습니다.")
            try:
                detail_url = join_url(list_page_url, href)
            except ValueParseError as error:
                self.progress.errors.append(f"{list_page_url}: unusable detail link: {error}")
                continue
            if detail_url in self.progress.seen_detail_urls:
                continue  # pinned notices sit on every list page
            self.progress.seen_detail_urls.add(detail_url)
            position = len(self.progress.seen_detail_urls)
            requests.append(
                Request(
                    detail_url,
                    headers=self.source.headers,
                    callback=self._parse_detail_page,
                    errback=self._detail_page_failed,
                    cb_kwargs={"position": position},
                )
            )
        return requests

    def _list_page_failed(self, failure: Failure) -> None:
        if self.progress.cancelled:
            return
        request: Request = failure.request  # type: ignore[attr-defined]
        page_number: int = request.cb_kwargs["page_number"]
        if _forbidden_by_robots(failure):
            self.progress.blocked_by_robots.append(request.url)
            if page_number == self._first_page_number():
                self.progress.first_page_failure = ScrapingBlockedError(
                    f"robots.txt forbids the board's list page {request.url}", source=self.source.name
                )
            return
        reason = _failure_reason(failure)
        if page_number != self._first_page_number():
            self.progress.errors.append(f"{request.url}: list page failed: {reason}")
            return
        if isinstance(failure.value, PipelineError):
            self.progress.first_page_failure = failure.value
            return
        unavailable = SourceUnavailableError(
            f"board list page {request.url} failed: {reason}", source=self.source.name
        )
        unavailable.__cause__ = failure.value
        self.progress.first_page_failure = unavailable

    def _list_page_unreadable(self, url: str, page_number: int, error: Exception) -> None:
        if page_number != self._first_page_number():
            self.progress.errors.append(f"{url}: list page unreadable: {error!r}")
            return
        unreadable = SourceUnavailableError(f"board list page {url} unreadable: {error!r}", source=self.source.name)
        unreadable.__cause__ = error
        self.progress.first_page_failure = unreadable

    # -- detail pages

    def _parse_detail_page(self, response: Response, position: int) -> None:
        self.progress.pages_fetched += 1
        try:
            soup = _soup(response, self.source)
            fields: dict[str, str] = {}
            for field_name, selector in self.selectors.detail_fields.items():
                element = soup.select_one(selector)
                fields[field_name] = element.decode_contents() if element is not None else ""
        except Exception as error:  # one unreadable post must not cost the others
            self.progress.errors.append(f"{response.url}: detail page unreadable: {error!r}")
            return
        request_url = response.request.url if response.request is not None else response.url
        self.progress.records_by_position[position] = BoardRecord(
            external_id=_external_id(request_url, self.selectors.id_query_param),
            detail_url=request_url,
            fields=fields,
        )

    def _detail_page_failed(self, failure: Failure) -> None:
        if self.progress.cancelled:
            return
        request: Request = failure.request  # type: ignore[attr-defined]
        if _forbidden_by_robots(failure):
            self.progress.blocked_by_robots.append(request.url)
            return
        self.progress.errors.append(f"{request.url}: detail page failed: {_failure_reason(failure)}")


class _BeforeRequestMiddleware:
    """Awaits the spider's `before_request` before each request goes to the downloader; drops every request
    once the crawl is cancelled."""

    def __init__(self, crawler: Crawler) -> None:
        self._crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        # The callable travels on the spider, not in the settings: Scrapy deep-copies settings, which would
        # copy a rate limiter bound to a Redis client.
        spider = self._crawler.spider
        if not isinstance(spider, _BoardSpider):
            return
        if spider.progress.cancelled:
            raise IgnoreRequest(_CANCELLED_MESSAGE)
        if spider.before_request is not None:
            await spider.before_request()


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


async def robots_crawl_delay(source: SourceDefinition, user_agent: str) -> float | None:
    """The site's robots.txt `Crawl-delay` for `user_agent` (Scrapy obeys Allow/Disallow but not this line).

    None when robots.txt is missing, unreadable or says nothing; the crawl then keeps the configured delay.
    """
    robots_url = urljoin(_list_page_url(source, 1), "/robots.txt")
    try:
        async with httpx.AsyncClient(timeout=source.timeout_seconds, headers={"User-Agent": user_agent}) as client:
            response = await client.get(robots_url)
    except httpx.HTTPError:
        return None  # Scrapy fetches robots.txt itself too and applies what it can read
    if response.status_code != 200:
        return None
    delay = Protego.parse(decode_body(response.content, response.charset_encoding)).crawl_delay(user_agent)
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
        # crawlers. It also keeps Scrapy from queueing many requests in its downloader, which a stop (on
        # cancellation) would wait to go out one delay apart.
        "CONCURRENT_REQUESTS": 1,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        "DOWNLOAD_TIMEOUT": source.timeout_seconds,
        "DOWNLOAD_MAXSIZE": max_response_bytes,  # 0: no limit
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
        "DOWNLOADER_MIDDLEWARES": {_BeforeRequestMiddleware: _BEFORE_REQUEST_MIDDLEWARE_ORDER},
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


def _forbidden_by_robots(failure: Failure) -> bool:
    # HttpError (a non-2xx answer) is an IgnoreRequest too; robots.txt is told apart by its message.
    return (
        failure.check(IgnoreRequest) is not None
        and failure.check(HttpError) is None
        and str(failure.value) == _ROBOTS_FORBIDDEN_MESSAGE
    )


def _failure_reason(failure: Failure) -> str:
    if failure.check(HttpError) is not None:
        response: Response = failure.value.response
        return f"HTTP {response.status}"
    return f"{type(failure.value).__name__}: {failure.value}"
