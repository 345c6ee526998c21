"""Boards that keep what they crawled (issue 26), on the real stack against a local EUC-KR municipal board:

- a crawl stopped midway (SIGTERM to `collect --once`, the scheduler's stop, the run's deadline) has published the
  pages it finished (raw topic, `collected_records`) and the next run resumes at the next list page without
  reading the finished ones again; a crawl that reached its end starts at page 1 again;
- `html.max_rows_per_run` pauses a run cleanly (status ok) and the next run goes on where it paused;
- a failing board opens its circuit like an API, fails fast while open, and closes once it answers again;
- the egress policy holds for the board's requests: a detail page redirecting off the board's host is refused
  (and never fetched), one redirecting to an allowed host is followed without the source's credentials, names are
  connected to at the addresses the policy resolved, a metadata address is refused before any connection; a
  trickling page is given up at the request deadline.

The board is served by a server of this module (`EucKrBoard`), not the sample sources, so that a test can hold a
list page on the wire (to stop a crawl exactly there), fail or redirect pages, and read every request's headers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from aegis_pipeline.collectors.definitions import SourceDefinition, parse_sources
from aegis_pipeline.collectors.egress import policy_for
from aegis_pipeline.collectors.html_board import crawl_board
from aegis_pipeline.collectors.run import SourceResult, collect_once, open_context
from aegis_pipeline.collectors.scheduler import CollectionScheduler
from aegis_pipeline.common.errors import EgressRefusedError, ErrorCode
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache, postgres

pytestmark = pytest.mark.integration

PAGE_SIZE = 6
PINNED_ID = "49001"
AEGIS = Path(sys.executable).with_name("aegis-pipeline")


# --- a local board as the municipal ones are served ------------------------------------------------------------


@dataclass
class Hit:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class EucKrBoard:
    """A 고시/공고 board: `posts` posts newest first, PAGE_SIZE a list page, and a pinned notice on every page; CP949
    bytes labelled euc-kr (`<meta charset>`; detail pages say `charset=utf-8` in the header, wrongly, as real ones
    do), relative links, "등록된 게시물이 없습니다." past the last page, robots.txt without a Crawl-delay.

    Controls: `hold(page)` keeps the request for that list page waiting until `release()` (`held` is set when it
    arrived); `list_status` answers list pages with that status; `redirect[ntt_no]` answers that post with a 302 to
    the URL; `trickle[ntt_no]` sends that post one byte every 0.2 s."""

    def __init__(self, posts: int) -> None:
        self.posts = [str(50100 + number) for number in range(posts, 0, -1)]
        self.hits: list[Hit] = []
        self.held = threading.Event()
        self._release = threading.Event()
        self._hold_page: int | None = None
        self.list_status = 200
        self.redirect: dict[str, str] = {}
        self.trickle: set[str] = set()
        board = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                board.hits.append(Hit(parts.path, query, dict(self.headers.items())))
                try:
                    board.answer(self, parts.path, query)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the crawler went away (stopped): nothing to answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> EucKrBoard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/board/list.do?bbsNo=184") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hold(self, page: int) -> None:
        self.held.clear()
        self._release.clear()
        self._hold_page = page

    def release(self) -> None:
        self._hold_page = None
        self._release.set()

    def forget_hits(self) -> None:
        self.hits.clear()

    def list_pages_asked(self) -> list[int]:
        return [int(hit.query["pageIndex"]) for hit in self.hits if hit.path == "/board/list.do"]

    def posts_asked(self) -> list[str]:
        return [hit.query["nttNo"] for hit in self.hits if hit.path == "/board/view.do"]

    def posts_on(self, *pages: int) -> list[str]:
        """The posts of these list pages, the pinned notice first (once), in list order."""
        return [PINNED_ID] + [post for page in pages for post in self.posts[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]]

    # -- answers

    def answer(self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, str]) -> None:
        if path == "/robots.txt":
            self._send(handler, 200, b"User-agent: *\nDisallow: /admin/\n", "text/plain")
        elif path == "/board/list.do":
            page = int(query.get("pageIndex", "1"))
            if page == self._hold_page:
                self.held.set()
                self._release.wait(30)
            if self.list_status != 200:
                self._send(handler, self.list_status, b"<h1>Service Unavailable</h1>", "text/html")
            else:
                self._send(handler, 200, self._list_page(page), "text/html; charset=euc-kr")
        elif path == "/board/view.do":
            ntt_no = query.get("nttNo", "")
            if ntt_no in self.redirect:
                handler.send_response(302)
                handler.send_header("Location", self.redirect[ntt_no])
                handler.send_header("Content-Length", "0")
                handler.end_headers()
            elif ntt_no in self.trickle:
                body = self._view_page(ntt_no)
                handler.send_response(200)
                handler.send_header("Content-Type", "text/html; charset=utf-8")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                for byte in body[:50]:
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
                    if self._closing.wait(0.2):
                        return
            else:
                self._send(handler, 200, self._view_page(ntt_no), "text/html; charset=utf-8")
        else:
            self._send(handler, 404, b"not found", "text/plain")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _list_page(self, page: int) -> bytes:
        rows = [self._row(PINNED_ID, "공지", "[공지] 성동구 고시·공고 게시판 이용 안내")]
        on_page = self.posts[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
        rows += [self._row(post, post, self._title(post)) for post in on_page]
        if not on_page:
            rows.append('<tr><td colspan="3" class="empty">등록된 게시물이 없습니다.</td></tr>')
        html = (
            '<!DOCTYPE html><html lang="ko"><head><meta charset="euc-kr"><title>고시/공고 | 성동구청</title></head>'
            '<body><table class="board_list"><caption>고시/공고 목록</caption><tbody>'
            + "".join(rows) + "</tbody></table></body></html>"
        )
        return html.encode("cp949")

    @staticmethod
    def _row(ntt_no: str, number: str, title: str) -> str:
        return (f'<tr><td class="num">{number}</td><td class="subject">'
                f'<a href="view.do?bbsNo=184&amp;nttNo={ntt_no}">{title}</a></td><td>성동구 일자리정책과</td></tr>')

    @staticmethod
    def _title(ntt_no: str) -> str:
        return f"2026년 성동구 청년 일자리 지원사업 공고 (제{ntt_no}호)"

    def _view_page(self, ntt_no: str) -> bytes:
        title = "[공지] 성동구 고시·공고 게시판 이용 안내" if ntt_no == PINNED_ID else self._title(ntt_no)
        html = (
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=euc-kr"></head><body>'
            f'<div class="view_title">{title}</div><span class="dept">서울특별시 성동구 일자리정책과</span>'
            f'<div class="view_content"><p>성동구 청년의 취업과 창업을 돕는 사업입니다. 똠방각하 (공고 {ntt_no})</p>'
            "</div></body></html>"
        )
        return html.encode("cp949")


@pytest.fixture
def board() -> Iterator[EucKrBoard]:
    with EucKrBoard(posts=4 * PAGE_SIZE) as served:
        yield served


def board_document(board: EucKrBoard, name: str, **overrides: Any) -> dict[str, Any]:
    html = {"row_selector": "table.board_list tbody tr", "link_selector": "td.subject a", "id_query_param": "nttNo",
            "detail_fields": {"title": "div.view_title", "department": "span.dept", "body": "div.view_content"},
            "download_delay_seconds": 0}
    html.update(overrides.pop("html", {}))
    return {
        "name": name, "kind": "html", "url": board.url(),
        "pagination": {"type": "page_number", "page_param": "pageIndex"}, "max_pages": 10,
        "id_field": "id", "max_retries": 0, "timeout_seconds": 5, "rate_limit": {"requests_per_second": 1000},
        "html": html,
        "fields": {"title": {"path": "title", "parser": "text"}, "content": {"path": "body", "parser": "text"},
                   "issuing_organization": {"path": "department", "parser": "text"}},
        **overrides,
    }


def board_source(board: EucKrBoard, **overrides: Any) -> SourceDefinition:
    name = f"board_{uuid.uuid4().hex[:8]}"
    return parse_sources({"sources": [board_document(board, name, **overrides)]}, {}).sources[0]


async def collect(settings: Settings, source: SourceDefinition) -> SourceResult:
    async with open_context(settings) as context:
        [result] = await collect_once(context, [source])
    return result


async def stored_ids(settings: Settings, source: str) -> set[str]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch("SELECT external_id FROM collected_records WHERE source_system = $1", source)
    return {row["external_id"] for row in rows}


async def board_position(settings: Settings, source: str) -> int | None:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return await connection.fetchval(
            "SELECT board_next_page FROM collection_checkpoints WHERE source_system = $1", source)


async def published_ids(settings: Settings, source: str) -> list[str]:
    """Every external id on the test's raw topic (one per message, repeats kept), once the topic is quiet."""
    consumer = AIOKafkaConsumer(settings.kafka_topic_raw_policies, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    ids: list[str] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=700)
            if not batch:
                break
            for messages in batch.values():
                for message in messages:
                    external_id = json.loads(message.value)["collection_metadata"]["external_id"]
                    assert message.key == f"{source}:{external_id}".encode()
                    ids.append(external_id)
    finally:
        await consumer.stop()
    return ids


# --- stopped midway, resumed ------------------------------------------------------------------------------------


async def test_sigterm_to_collect_keeps_the_finished_pages_and_the_next_run_resumes_after_them(
    board: EucKrBoard, own_topics: Any, tmp_path: Path
) -> None:
    settings = await own_topics(partitions=1)
    name = f"board_{uuid.uuid4().hex[:8]}"
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(yaml.safe_dump({"sources": [board_document(board, name)]}, allow_unicode=True))
    source = parse_sources(yaml.safe_load(sources_file.read_text()), {}).sources[0]
    board.hold(3)  # list pages 1 and 2 (and their posts) done, the request for page 3 on the wire
    environment = {**os.environ, "KAFKA_TOPIC_RAW_POLICIES": settings.kafka_topic_raw_policies,
                   "KAFKA_TOPIC_DLQ": settings.kafka_topic_dlq}
    process = await asyncio.create_subprocess_exec(
        str(AEGIS), "collect", "--once", "--sources-file", str(sources_file), env=environment,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert await asyncio.to_thread(board.held.wait, 30), "the collect process never asked for list page 3"
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGTERM
    board.release()

    finished = board.posts_on(1, 2)
    assert await stored_ids(settings, name) == set(finished)
    assert sorted(await published_ids(settings, name)) == sorted(finished)  # each once, nothing of page 3
    assert await board_position(settings, name) == 3

    board.forget_hits()
    resumed = await collect(settings, source)
    assert (resumed.status, resumed.error) == ("ok", None)
    assert board.list_pages_asked() == [3, 4, 5]  # 5: past the end, only the pinned notice: the crawl's end
    assert board.posts_asked() == board.posts_on(3, 4)  # the pinned notice again (first seen on page 3), no other
    assert (resumed.published, resumed.unchanged) == (2 * PAGE_SIZE, 1)
    assert resumed.board_next_page is None and await board_position(settings, name) is None
    assert sorted(await published_ids(settings, name)) == sorted(board.posts_on(1, 2, 3, 4))

    board.forget_hits()
    again = await collect(settings, source)  # the crawl reached its end: the next starts at page 1
    assert board.list_pages_asked() == [1, 2, 3, 4, 5]
    assert (again.published, again.unchanged) == (0, 4 * PAGE_SIZE + 1)


async def test_the_schedulers_stop_keeps_the_finished_pages_and_the_next_run_resumes(
    board: EucKrBoard, own_topics: Any
) -> None:
    settings = await own_topics(partitions=1)
    source = board_source(board)
    board.hold(2)
    async with open_context(settings) as context:
        lock_client = cache.create_client(settings)
        try:
            scheduler = CollectionScheduler(context, [source], lock_client, stop_grace_seconds=0.2)
            run = asyncio.create_task(scheduler.run_source(source.name, 3600))
            assert await asyncio.to_thread(board.held.wait, 30)
            threading.Timer(0.5, board.release).start()  # the page on the wire answers after the run was cancelled
            stop = asyncio.Event()
            stop.set()  # SIGTERM: no new run; the one in progress has its grace, then is cancelled
            await scheduler.serve(stop)
            with pytest.raises(asyncio.CancelledError):
                await run
        finally:
            await lock_client.aclose()

    assert await stored_ids(settings, source.name) == set(board.posts_on(1))
    assert await board_position(settings, source.name) == 2
    board.forget_hits()
    resumed = await collect(settings, source)
    assert board.list_pages_asked() == [2, 3, 4, 5]
    assert PINNED_ID in board.posts_asked() and not set(board.posts_on(1)[1:]) & set(board.posts_asked())
    assert resumed.published == 3 * PAGE_SIZE
    assert sorted(await published_ids(settings, source.name)) == sorted(board.posts_on(1, 2, 3, 4))


async def test_the_run_deadline_stops_the_crawl_at_its_page_and_the_next_run_resumes_there(
    board: EucKrBoard, own_topics: Any
) -> None:
    settings = await own_topics(partitions=1)
    source = board_source(board, run_deadline_seconds=1.5)
    board.hold(2)  # page 2 does not answer before the deadline
    started = time.monotonic()
    stopped = await collect(settings, source)
    assert time.monotonic() - started < 1.5 + 2.0  # stopped at the deadline, not at the request's own timeout
    assert (stopped.status, stopped.error_code) == ("failed", ErrorCode.DATA_SOURCE_UNAVAILABLE)
    assert "deadline" in (stopped.error or "")
    assert stopped.published == PAGE_SIZE + 1 and stopped.board_next_page == 2
    assert await board_position(settings, source.name) == 2
    board.release()

    board.forget_hits()
    resumed = await collect(settings, source.model_copy(update={"run_deadline_seconds": 60.0}))
    assert resumed.status == "ok" and board.list_pages_asked()[0] == 2
    assert sorted(await published_ids(settings, source.name)) == sorted(board.posts_on(1, 2, 3, 4))


# --- the rows cap ------------------------------------------------------------------------------------------------


async def test_the_rows_cap_pauses_a_run_cleanly_and_the_next_run_goes_on(board: EucKrBoard, own_topics: Any) -> None:
    settings = await own_topics(partitions=1)
    source = board_source(board, html={"max_rows_per_run": 10})

    first = await collect(settings, source)  # page 1: 7 posts (the pinned notice and 6), page 2: 13 >= 10
    assert (first.status, first.error, first.completed) == ("ok", None, True)
    assert board.list_pages_asked() == [1, 2]
    assert first.published == 13 and first.board_next_page == 3
    assert first.requests == 1 + 1 + 2 + 13  # our robots.txt read, Scrapy's, 2 list pages, 13 posts

    board.forget_hits()
    second = await collect(settings, source)  # page 3: 7 (the pinned notice again), page 4: 13: paused again
    assert board.list_pages_asked() == [3, 4] and second.board_next_page == 5
    assert (second.published, second.unchanged) == (12, 1)

    board.forget_hits()
    # Page 5 is past the end: only the pinned notice, new to this crawl; page 6 then shows nothing new: the end.
    third = await collect(settings, source)
    assert board.list_pages_asked() == [5, 6] and third.board_next_page is None
    assert (third.published, third.unchanged, third.status) == (0, 1, "ok")
    assert sorted(await published_ids(settings, source.name)) == sorted(board.posts_on(1, 2, 3, 4))
    assert await board_position(settings, source.name) is None


# --- the circuit breaker -----------------------------------------------------------------------------------------


async def test_a_failing_board_opens_its_circuit_like_an_api(board: EucKrBoard, own_topics: Any) -> None:
    settings = await own_topics(partitions=1, collector_circuit_failure_threshold=3,
                                collector_circuit_recovery_seconds=1.0)
    source = board_source(board, max_retries=2)
    board.list_status = 503
    async with open_context(settings) as context:
        failed = (await collect_once(context, [source]))[0]
        asked_while_failing = len(board.hits)
        fast = (await collect_once(context, [source]))[0]
        asked_while_open = len(board.hits) - asked_while_failing
        board.list_status = 200
        await asyncio.sleep(1.1)  # the circuit half-opens
        recovered = (await collect_once(context, [source]))[0]
        breaker = context.breaker(source.name)

    assert (failed.status, failed.error_code) == ("failed", ErrorCode.DATA_SOURCE_UNAVAILABLE)
    assert "HTTP 503" in (failed.error or "")
    assert board.list_pages_asked().count(1) >= 3  # a try and two retries, each counted by the breaker
    assert (fast.status, fast.error_code) == ("circuit_open", ErrorCode.DATA_SOURCE_UNAVAILABLE)
    assert asked_while_open == 0  # fails fast: not even robots.txt
    assert recovered.status == "ok" and recovered.published == 4 * PAGE_SIZE + 1
    assert breaker.closed and breaker.failure_count == 0


# --- egress and deadlines on the board's requests ---------------------------------------------------------------


async def test_a_detail_page_redirecting_off_the_boards_host_is_refused_and_the_pages_before_kept(
    board: EucKrBoard, own_topics: Any
) -> None:
    settings = await own_topics(partitions=1)
    source = board_source(board)
    with EucKrBoard(posts=1) as elsewhere:  # another origin: same address, another port
        board.redirect[board.posts[PAGE_SIZE + 2]] = elsewhere.url("/board/view.do?nttNo=1")
        result = await collect(settings, source)
        assert elsewhere.hits == []
    assert (result.status, result.error_code) == ("failed", ErrorCode.DATA_SOURCE_UNAVAILABLE)
    assert "allowed_redirect_hosts" in (result.error or "")
    assert await stored_ids(settings, source.name) == set(board.posts_on(1))
    assert result.board_next_page == 2  # the refused page is read again next run (the definition may allow it)

    board.redirect[board.posts[PAGE_SIZE + 2]] = "http://169.254.169.254/latest/meta-data/"
    metadata = await collect(settings, source)
    assert "metadata" in (metadata.error or "") and metadata.board_next_page == 2


async def test_a_redirect_to_an_allowed_host_is_followed_without_the_sources_credentials(board: EucKrBoard) -> None:
    with EucKrBoard(posts=1) as partner:
        source = board_source(board, max_pages=1, headers={"X-Api-Key": "board-secret-key"},
                              allowed_redirect_hosts=[f"127.0.0.1:{partner.port}"])
        moved = board.posts[0]
        board.redirect[moved] = partner.url(f"/board/view.do?nttNo={moved}")
        crawl = await crawl_board(source, user_agent="AegisTest/1.0")
        assert partner.posts_asked() == [moved]  # (and its robots.txt: Scrapy reads every host's)
        assert all("X-Api-Key" not in hit.headers for hit in partner.hits)
    assert all(hit.headers.get("X-Api-Key") == "board-secret-key" for hit in board.hits if hit.path != "/robots.txt")
    assert moved in [record.external_id for record in crawl.records] and crawl.errors == []


async def test_names_are_connected_to_where_the_egress_policy_resolved_them(board: EucKrBoard) -> None:
    source = board_source(board).model_copy(update={"url": f"http://board.test:{board.port}/board/list.do"})

    async def local_names(host: str, port: int) -> list[str]:
        return {"board.test": ["127.0.0.1"], "rebound.test": ["169.254.169.254"]}[host]

    crawl = await crawl_board(source, user_agent="AegisTest/1.0", egress=policy_for(source, resolver=local_names))
    assert len(crawl.records) == 4 * PAGE_SIZE + 1  # board.test is no name the system resolves: ours was asked

    rebound = source.model_copy(update={"url": f"http://rebound.test:{board.port}/board/list.do"})
    board.forget_hits()
    with pytest.raises(EgressRefusedError) as refused:
        await crawl_board(rebound, user_agent="AegisTest/1.0", egress=policy_for(rebound, resolver=local_names))
    assert refused.value.reason == "metadata" and board.hits == []


async def test_a_trickling_detail_page_is_given_up_at_the_request_deadline(board: EucKrBoard) -> None:
    source = board_source(board, request_deadline_seconds=1.0, timeout_seconds=8, max_pages=1)
    board.trickle.add(board.posts[0])
    started = time.monotonic()
    crawl = await crawl_board(source, user_agent="AegisTest/1.0")
    assert time.monotonic() - started < 5.0  # 50 bytes at 0.2 s each would take 10 s
    assert [record.external_id for record in crawl.records] == [PINNED_ID, *board.posts[1:PAGE_SIZE]]
    assert any(board.posts[0] in problem and "Timeout" in problem for problem in crawl.errors), crawl.errors
