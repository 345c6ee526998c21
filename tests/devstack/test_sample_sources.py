"""Tests of the sample sources server (devstack/sample_sources.py) itself: each endpoint's shape and quirks,
paging, encodings, robots.txt, the request log, publish_more, and that the ground truth written in
devstack/sample_data agrees with what the server serves, read back by a small reference reader."""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import subprocess
import sys
import threading
import time
import urllib.robotparser
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from bs4 import BeautifulSoup

from aegis_pipeline.devstack.sample_sources import (
    PUBLISHABLE_SOURCES,
    SOURCE_NAMES,
    SampleSources,
    expected_invalid,
    expected_records,
    sample_quirks,
)

SERVICE_KEY = "sample-service-key"
REPO_ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def sources() -> Iterator[SampleSources]:
    """A shared server for read-only tests (its page-2 rate limit is spent by whoever asks first)."""
    with SampleSources(slow_response_seconds=1.0) as server:
        yield server


@pytest.fixture
def fresh_sources() -> Iterator[SampleSources]:
    """A server of the test's own, for tests that count requests, spend the rate limit or publish."""
    with SampleSources(crawl_delay_seconds=0, slow_response_seconds=1.0) as server:
        yield server


@pytest.fixture
def client(sources: SampleSources) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sources.base_url, timeout=5) as http:
        yield http


# ---------------------------------------------------------------------------------------------------------
# A reference reader: what a correct collector does, written independently of the server, to check that the
# hand-written ground truth matches the served payloads.
# ---------------------------------------------------------------------------------------------------------


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def clean_text(value: str | None) -> str | None:
    """Entities decoded (also entity-encoded markup), tags and scripts removed, whitespace folded."""
    if value is None:
        return None
    parser = _TextOnly()
    parser.feed(html.unescape(value))
    parser.close()
    return " ".join("".join(parser.parts).split())


def read_date(text: str | None) -> str | None:
    """ISO date from 20260301, 2026-03-01, 2026.03.01, 2026. 3. 1. or 2026.03.02(월) 09:00; None for free
    text. Raises ValueError for impossible dates."""
    if text is None:
        return None
    numbers = re.findall(r"\d+", text)
    if len(numbers) == 1 and len(numbers[0]) == 8:
        numbers = [numbers[0][:4], numbers[0][4:6], numbers[0][6:]]
    if len(numbers) < 3:
        return None
    year, month, day = (int(number) for number in numbers[:3])
    return dt.date(year, month, day).isoformat()


def read_period(text: str) -> tuple[str | None, str | None]:
    if "~" not in text:
        return read_date(text), None
    start, end = text.split("~", 1)
    return read_date(start), read_date(end)


def split_values(text: str | None, separator: str) -> list[str]:
    return [part.strip() for part in (text or "").split(separator) if part.strip()]


def child_text(element: ET.Element, name: str) -> str | None:
    child = element.find(name)
    return None if child is None else (child.text or "")


def read_data_go_kr(http: httpx.Client, path: str) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    page_no = 1
    while True:
        response = http.get(path, params={"serviceKey": SERVICE_KEY, "pageNo": page_no, "numOfRows": 10})
        root = ET.fromstring(response.content)
        if root.tag == "OpenAPI_ServiceResponse":  # rate limited: ask again
            assert root.findtext("cmmMsgHeader/returnReasonCode") == "22"
            continue
        items = root.findall("body/items/item")
        for item in items:
            fields = {
                "external_id": child_text(item, "pblancId"),
                "title": clean_text(child_text(item, "pblancNm")),
                "content": clean_text(child_text(item, "cn")),
                "issuing_organization": child_text(item, "insttNm"),
                "target_region": split_values(child_text(item, "rgnNm"), ","),
                "target_industry": split_values(child_text(item, "indutyNm"), ","),
                "funding_type": child_text(item, "sprtTypeNm"),
                "start": child_text(item, "rceptBgnDt"),
                "end": child_text(item, "rceptEndDt"),
                "original_url": child_text(item, "detailUrl"),
            }
            rows.append((str(fields["external_id"]), fields))
        if len(items) < 10:
            return rows
        page_no += 1


def read_bizinfo(http: httpx.Client) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    page_index = 1
    while True:
        batch = http.get("/bizinfo/api", params={"pageIndex": page_index, "pageUnit": 10}).json()["jsonArray"]
        for item in batch:
            fields = {
                "external_id": item["pblancId"],
                "title": clean_text(item["pblancNm"]),
                "content": clean_text(item["bsnsSumryCn"]),
                "issuing_organization": item["jrsdInsttNm"],
                "target_region": split_values(item["areaNm"], "@"),
                "target_industry": split_values(item["industNm"], "@"),
                "funding_type": item["pldirSportRealmLclasCodeNm"],
                "period": item["reqstBeginEndDe"],
                "original_url": urljoin(str(http.base_url), item["pblancUrl"]),
            }
            rows.append((item["pblancId"], fields))
        if len(batch) < 10:
            return rows
        page_index += 1


def read_odcloud(http: httpx.Client) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    page = 1
    while True:
        payload = http.get("/odcloud/api", params={"serviceKey": SERVICE_KEY, "page": page, "perPage": 10}).json()
        for item in payload["data"]:
            fields = {
                "external_id": item["공고번호"],
                "title": clean_text(item["사업명"]),
                "content": clean_text(item["사업개요"]),
                "issuing_organization": item["소관기관"],
                "target_region": split_values(item.get("지역"), ","),
                "target_industry": split_values(item.get("업종"), ","),
                "funding_type": item["지원분야"],
                "start": item["신청시작일"],
                "end": item["신청종료일"],
                "original_url": item["상세URL"],
            }
            rows.append((item["공고번호"], fields))
        if page * payload["perPage"] >= payload["totalCount"]:
            return rows
        page += 1


def read_rss(http: httpx.Client) -> list[tuple[str, dict[str, Any]]]:
    root = ET.fromstring(http.get("/rss/announcements.xml").content)
    rows: list[tuple[str, dict[str, Any]]] = []
    for item in root.findall("channel/item"):
        fields = {
            "external_id": child_text(item, "guid"),
            "title": clean_text(child_text(item, "title")),
            "content": clean_text(child_text(item, "description")),
            "issuing_organization": child_text(item, "author"),
            "target_region": [],
            "target_industry": [],
            "funding_type": None,
            "start": None,
            "end": None,
            "original_url": child_text(item, "link"),
        }
        rows.append((str(fields["external_id"]), fields))
    return rows


def board_soup(response: httpx.Response) -> BeautifulSoup:
    # The header's charset may lie; the bytes are CP949 as the page's own meta tag says (euc-kr family).
    return BeautifulSoup(response.content.decode("cp949"), "html.parser")


def read_board(http: httpx.Client) -> list[tuple[str, dict[str, Any]]]:
    robots = urllib.robotparser.RobotFileParser()
    robots.parse(http.get("/robots.txt").text.splitlines())
    rows: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    page = 1
    while True:
        list_url = urljoin(str(http.base_url), f"/board/list.do?page={page}")
        links = [link["href"] for link in board_soup(http.get(list_url)).select("table.board_list td.subject a")]
        detail_urls = [urljoin(list_url, str(href)) for href in links]
        if not any(url not in seen for url in detail_urls):  # only the pinned notice, or nothing: the end
            return rows
        for url in detail_urls:
            if url in seen or not robots.can_fetch("aegis-test", url):
                continue
            seen.add(url)
            soup = board_soup(http.get(url))
            external_id = url.rsplit("nttId=", 1)[1]
            fields = {
                "external_id": external_id,
                "title": clean_text(soup.select_one("table.board_view td.subject").decode_contents()),
                "content": clean_text(soup.select_one("div.view_content").decode_contents()),
                "issuing_organization": soup.select("table.board_view tr")[1].find("td").get_text(strip=True),
                "target_region": [],
                "target_industry": [],
                "funding_type": None,
                "period": soup.select_one("td.period").get_text(),
                "original_url": url,
            }
            rows.append((external_id, fields))
        page += 1


def read_source(http: httpx.Client, source: str) -> list[tuple[str, dict[str, Any]]]:
    readers = {
        "data_go_kr": lambda: read_data_go_kr(http, "/data-go-kr/policies"),
        "data_go_kr_single": lambda: read_data_go_kr(http, "/data-go-kr/single"),
        "bizinfo": lambda: read_bizinfo(http),
        "odcloud": lambda: read_odcloud(http),
        "rss": lambda: read_rss(http),
        "board": lambda: read_board(http),
    }
    return readers[source]()


def judge(rows: list[tuple[str, dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Split read rows into records (ground-truth shape without personal_data) and (id, reason) rejections."""
    valid: list[dict[str, Any]] = []
    rejected: list[tuple[str, str]] = []
    seen: set[str] = set()
    for external_id, fields in rows:
        if external_id in seen:
            rejected.append((external_id, "duplicate id"))
            continue
        seen.add(external_id)
        if not fields["title"]:
            rejected.append((external_id, "missing title"))
            continue
        try:
            if "period" in fields:
                start, end = read_period(fields["period"])
            else:
                start, end = read_date(fields["start"]), read_date(fields["end"])
        except ValueError:
            rejected.append((external_id, "invalid date"))
            continue
        record = {key: value for key, value in fields.items() if key not in ("start", "end", "period")}
        record.update(application_start_date=start, application_end_date=end)
        valid.append(record)
    return valid, rejected


def without_personal_data(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in record.items() if key != "personal_data"} for record in records]


# ---------------------------------------------------------------------------------------------------------
# Lifecycle and request log
# ---------------------------------------------------------------------------------------------------------


def test_starts_on_a_free_port_and_stop_closes_it() -> None:
    server = SampleSources()
    base_url = server.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert server.base_url == base_url
        assert httpx.get(f"{base_url}/robots.txt").status_code == 200
        with pytest.raises(RuntimeError):
            server.start()
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/robots.txt")
    server.stop()  # a second stop is harmless


def test_two_servers_run_side_by_side() -> None:
    with SampleSources() as first, SampleSources() as second:
        assert first.base_url != second.base_url


def test_request_log_records_path_query_status_time_and_reset_forgets(fresh_sources: SampleSources) -> None:
    before = time.monotonic()
    httpx.get(fresh_sources.url("/bizinfo/api"), params={"pageIndex": "2", "pageUnit": "5"})
    httpx.get(fresh_sources.url("/no/such/path"))
    first, second = fresh_sources.requests
    assert (first.path, first.query, first.status) == ("/bizinfo/api", {"pageIndex": "2", "pageUnit": "5"}, 200)
    assert (second.path, second.status) == ("/no/such/path", 404)
    assert before <= first.time <= second.time <= time.monotonic()
    assert first.user_agent and first.user_agent.startswith("python-httpx")
    assert fresh_sources.requests_for("/bizinfo") == [first]
    fresh_sources.reset()
    assert fresh_sources.requests == []


def test_concurrent_requests_are_all_logged(fresh_sources: SampleSources) -> None:
    def fetch() -> None:
        for _ in range(5):
            httpx.get(fresh_sources.url("/rss/announcements.xml"))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fresh_sources.requests_for("/rss/")) == 40


def test_main_serves_until_interrupted_and_prints_the_base_url() -> None:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "aegis_pipeline.devstack.sample_sources", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert httpx.get(f"{base_url}/dead/api").status_code == 503
    finally:
        process.terminate()
        process.wait(timeout=10)


# ---------------------------------------------------------------------------------------------------------
# data.go.kr XML
# ---------------------------------------------------------------------------------------------------------


def get_xml(http: httpx.Client, path: str, **params: Any) -> tuple[httpx.Response, ET.Element]:
    response = http.get(path, params=params)
    return response, ET.fromstring(response.content)


def test_data_go_kr_pages_have_the_envelope_and_end_with_a_short_page(fresh_sources: SampleSources) -> None:
    with httpx.Client(base_url=fresh_sources.base_url) as http:
        counts = []
        for page_no in (1, 2, 3, 4):
            response, root = get_xml(http, "/data-go-kr/policies", serviceKey=SERVICE_KEY, pageNo=page_no)
            if root.tag == "OpenAPI_ServiceResponse":  # the one-shot rate limit of page 2
                response, root = get_xml(http, "/data-go-kr/policies", serviceKey=SERVICE_KEY, pageNo=page_no)
            assert response.status_code == 200
            assert root.tag == "response"
            assert root.findtext("header/resultCode") == "00"
            assert root.findtext("header/resultMsg") == "NORMAL SERVICE."
            assert root.findtext("body/numOfRows") == "10"
            assert root.findtext("body/pageNo") == str(page_no)
            assert root.findtext("body/totalCount") == "23"
            counts.append(len(root.findall("body/items/item")))
    assert counts == [10, 10, 3, 0]


def test_data_go_kr_items_carry_the_real_field_names_and_date_forms(client: httpx.Client) -> None:
    _, root = get_xml(client, "/data-go-kr/policies", serviceKey=SERVICE_KEY, pageNo=1)
    first = root.find("body/items/item")
    assert first is not None
    assert [child.tag for child in first][:5] == ["pblancId", "pblancNm", "cn", "insttNm", "rgnNm"]
    assert first.findtext("pblancNm") == "2026년 청년창업사관학교 입교생 모집 공고"
    assert "<p>" in (first.findtext("cn") or "")  # HTML inside the XML text
    assert first.findtext("detailUrl", "").endswith("cbIdx=310&bcIdx=1045101")
    start_dates = {item.findtext("rceptBgnDt") for item in root.findall("body/items/item")}
    assert {"20260302", "2026.01.15", "2026. 3. 9.", "2026-02-16"} <= start_dates


def test_rate_limit_envelope_comes_once_for_page_2_until_reset(fresh_sources: SampleSources) -> None:
    with httpx.Client(base_url=fresh_sources.base_url) as http:
        response, limited = get_xml(http, "/data-go-kr/policies", serviceKey=SERVICE_KEY, pageNo=2)
        assert response.status_code == 200  # the error is only in the body
        assert limited.tag == "OpenAPI_ServiceResponse"
        assert limited.findtext("cmmMsgHeader/errMsg") == "SERVICE ERROR"
        assert limited.findtext("cmmMsgHeader/returnAuthMsg") == "LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR"
        assert limited.findtext("cmmMsgHeader/returnReasonCode") == "22"

        _, page = get_xml(http, "/data-go-kr/policies", serviceKey=SERVICE_KEY, pageNo=2)
        assert page.tag == "response"
        assert page.find("body/items/item/pblancId").text == "174311"  # type: ignore[union-attr]
        _, again = get_xml(http, "/data-go-kr/policies", serviceKey=SERVICE_KEY, pageNo=2)
        assert again.tag == "response"

        fresh_sources.reset()
        _, rearmed = get_xml(http, "/data-go-kr/policies", serviceKey=SERVICE_KEY, pageNo=2)
        assert rearmed.tag == "OpenAPI_ServiceResponse"
    assert [record.status for record in fresh_sources.requests] == [200]


@pytest.mark.parametrize("key", ["wrong-key", None], ids=["wrong_key", "missing_key"])
def test_unregistered_service_key_gets_http_200_with_code_30(client: httpx.Client, key: str | None) -> None:
    params = {"pageNo": 1} if key is None else {"serviceKey": key, "pageNo": 1}
    response, root = get_xml(client, "/data-go-kr/policies", **params)
    assert response.status_code == 200
    assert root.tag == "OpenAPI_ServiceResponse"
    assert root.findtext("cmmMsgHeader/returnAuthMsg") == "SERVICE_KEY_IS_NOT_REGISTERED_ERROR"
    assert root.findtext("cmmMsgHeader/returnReasonCode") == "30"


def test_unknown_service_and_bad_parameters_answer_like_the_gateway(client: httpx.Client) -> None:
    _, unknown = get_xml(client, "/data-go-kr/nothing-here", serviceKey=SERVICE_KEY)
    assert unknown.findtext("cmmMsgHeader/returnReasonCode") == "12"
    _, invalid = get_xml(client, "/data-go-kr/single", serviceKey=SERVICE_KEY, pageNo="zero")
    assert invalid.findtext("header/resultCode") == "10"


def test_single_endpoint_holds_exactly_one_item(client: httpx.Client) -> None:
    _, root = get_xml(client, "/data-go-kr/single", serviceKey=SERVICE_KEY, pageNo=1, numOfRows=10)
    items = root.find("body/items")
    assert items is not None
    assert [child.tag for child in items] == ["item"]
    assert root.findtext("body/totalCount") == "1"


# ---------------------------------------------------------------------------------------------------------
# bizinfo and odcloud JSON
# ---------------------------------------------------------------------------------------------------------


def test_bizinfo_pages_end_with_a_short_page(client: httpx.Client) -> None:
    sizes = [
        len(client.get("/bizinfo/api", params={"pageIndex": page, "pageUnit": 10}).json()["jsonArray"])
        for page in (1, 2, 3)
    ]
    assert sizes == [10, 5, 0]


def test_bizinfo_rows_keep_their_raw_quirks(client: httpx.Client) -> None:
    response = client.get("/bizinfo/api", params={"pageIndex": 1, "pageUnit": 10})
    assert response.headers["content-type"].startswith("application/json")
    rows = {row["pblancId"]: row for row in response.json()["jsonArray"]}
    first = rows["PBLN_000000000112301"]
    assert {
        "pblancNm",
        "bsnsSumryCn",
        "jrsdInsttNm",
        "excInsttNm",
        "trgetNm",
        "reqstBeginEndDe",
        "pblancUrl",
        "hashtags",
        "industNm",
        "areaNm",
    } <= set(first)
    assert "&#40;" in first["bsnsSumryCn"] and "&lt;p&gt;" in first["bsnsSumryCn"]
    assert "\r\n" in first["bsnsSumryCn"]
    assert first["pblancUrl"].startswith("/sii/siia/selectSIIA200Detail.do?pblancId=")
    assert rows["PBLN_000000000112302"]["areaNm"] == "서울@부산@대구@인천@광주@대전@울산"
    periods = {row["reqstBeginEndDe"] for row in rows.values()}
    assert {"2026-02-24 ~ 2026-03-17", "상시 접수", "예산 소진시까지", "추후 공지"} <= periods
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rows["PBLN_000000000112304"]["bsnsSumryCn"]


def test_bizinfo_relative_url_leads_to_a_detail_page(client: httpx.Client) -> None:
    row = client.get("/bizinfo/api").json()["jsonArray"][0]
    detail = client.get(row["pblancUrl"])
    assert detail.status_code == 200
    assert row["pblancNm"] in detail.text


def test_odcloud_answers_the_documented_envelope(client: httpx.Client) -> None:
    pages = [
        client.get("/odcloud/api", params={"serviceKey": SERVICE_KEY, "page": page, "perPage": 10}).json()
        for page in (1, 2, 3)
    ]
    assert [(page["page"], page["currentCount"], len(page["data"])) for page in pages] == [
        (1, 10, 10),
        (2, 2, 2),
        (3, 0, 0),
    ]
    assert all(page["totalCount"] == page["matchCount"] == 12 and page["perPage"] == 10 for page in pages)
    first = pages[0]["data"][0]
    assert first["사업명"] == "2026년 창업도약패키지 지원사업 공고"
    assert {"번호", "공고번호", "소관기관", "신청시작일", "신청종료일", "상세URL"} <= set(first)
    assert pages[1]["data"][0]["번호"] == 11


def test_odcloud_rejects_a_wrong_key_with_401_and_accepts_the_header(client: httpx.Client) -> None:
    refused = client.get("/odcloud/api", params={"serviceKey": "wrong"})
    assert refused.status_code == 401
    assert refused.json() == {"code": -4, "msg": "등록되지 않은 인증키 입니다."}
    by_header = client.get("/odcloud/api", headers={"Authorization": f"Infuser {SERVICE_KEY}"})
    assert by_header.status_code == 200


# ---------------------------------------------------------------------------------------------------------
# RSS
# ---------------------------------------------------------------------------------------------------------


def test_rss_feed_has_eight_items_with_rfc822_dates_newest_first(client: httpx.Client) -> None:
    response = client.get("/rss/announcements.xml")
    assert response.headers["content-type"].startswith("application/rss+xml")
    root = ET.fromstring(response.content)
    assert root.tag == "rss" and root.get("version") == "2.0"
    items = root.findall("channel/item")
    assert len(items) == 8
    published = [parsedate_to_datetime(item.findtext("pubDate", "")) for item in items]
    assert published == sorted(published, reverse=True)
    assert all(moment.utcoffset() == dt.timedelta(hours=9) for moment in published)
    assert all(item.findtext("guid") and item.findtext("link") for item in items)
    descriptions = [item.findtext("description", "") for item in items]
    assert any("<script>alert(1)</script>" in text for text in descriptions)
    assert [guid.get("isPermaLink") for guid in root.iter("guid") if guid.get("isPermaLink")] == ["false"]
    assert b"&lt;p&gt;" in response.content and b"<![CDATA[<p>" in response.content  # both ways of shipping HTML


# ---------------------------------------------------------------------------------------------------------
# The EUC-KR board and robots.txt
# ---------------------------------------------------------------------------------------------------------


def test_board_list_is_euc_kr_with_a_table_of_posts(client: httpx.Client) -> None:
    response = client.get("/board/list.do", params={"page": 1})
    assert response.headers["content-type"] == "text/html; charset=EUC-KR"
    with pytest.raises(UnicodeDecodeError):
        response.content.decode("utf-8")
    page = response.content.decode("euc-kr")  # the list pages hold no character outside strict EUC-KR
    assert '<meta charset="euc-kr">' in page
    assert "2026년 성동구 청년 창업지원센터 입주기업 모집" in page
    soup = BeautifulSoup(page, "html.parser")
    hrefs = [link["href"] for link in soup.select("table.board_list td.subject a")]
    assert hrefs[0] == "view.do?nttId=50200"  # the pinned notice first
    assert "/board/private/view.do?nttId=50239" in hrefs
    assert len(hrefs) == 7  # the notice and six posts
    assert "2026년 성동구 중소기업 육성기금 융자 지원..." in page  # a long title cut short on the list


def test_board_paging_repeats_the_notice_and_ends(client: httpx.Client) -> None:
    second = board_soup(client.get("/board/list.do", params={"page": 2}))
    hrefs = [link["href"] for link in second.select("table.board_list td.subject a")]
    assert hrefs[0] == "view.do?nttId=50200"
    assert len(hrefs) == 6
    assert second.select_one("a.next") is None
    past_the_end = board_soup(client.get("/board/list.do", params={"page": 3}))
    assert past_the_end.select_one("td.no_data").get_text() == "등록된 게시물이 없습니다."


def test_board_detail_is_euc_kr_even_when_the_header_says_utf_8(client: httpx.Client) -> None:
    wrong_header = client.get("/board/view.do", params={"nttId": 50241})
    assert wrong_header.headers["content-type"] == "text/html; charset=utf-8"
    with pytest.raises(UnicodeDecodeError):
        wrong_header.content.decode("utf-8")
    page = wrong_header.content.decode("euc-kr")
    assert 'content="text/html; charset=euc-kr"' in page
    assert "02-123-4567" in page and "gildong.hong@sd.go.kr" in page
    assert "접수기간" in page and "2026.03.01 ~ 2026.03.31" in page
    assert "<br>" in page and "&middot;" in page

    no_charset = client.get("/board/view.do", params={"nttId": 50240})
    assert no_charset.headers["content-type"] == "text/html"
    with pytest.raises(UnicodeDecodeError):
        no_charset.content.decode("euc-kr")  # 똠 exists only in CP949, what browsers mean by euc-kr
    assert "똠얌꿍" in no_charset.content.decode("cp949")


def test_unknown_board_post_answers_200_with_an_alert(client: httpx.Client) -> None:
    response = client.get("/board/view.do", params={"nttId": 1})
    assert response.status_code == 200
    assert "존재하지 않는 게시물입니다." in response.content.decode("cp949")


def test_robots_txt_disallows_the_private_board_and_asks_a_crawl_delay(client: httpx.Client) -> None:
    response = client.get("/robots.txt")
    assert response.headers["content-type"].startswith("text/plain")
    assert "Disallow: /board/private/" in response.text.splitlines()
    assert "Crawl-delay: 1" in response.text.splitlines()
    robots = urllib.robotparser.RobotFileParser()
    robots.parse(response.text.splitlines())
    base = str(client.base_url)
    assert robots.crawl_delay("aegis") == 1
    assert not robots.can_fetch("aegis", f"{base}/board/private/view.do?nttId=50239")
    assert robots.can_fetch("aegis", f"{base}/board/view.do?nttId=50241")


def test_crawl_delay_can_be_lowered_for_tests(fresh_sources: SampleSources) -> None:
    assert "Crawl-delay: 0" in httpx.get(fresh_sources.url("/robots.txt")).text


# ---------------------------------------------------------------------------------------------------------
# Failing sources
# ---------------------------------------------------------------------------------------------------------


def test_dead_source_always_answers_503(client: httpx.Client) -> None:
    assert [client.get("/dead/api").status_code for _ in range(3)] == [503, 503, 503]


def test_slow_source_outlasts_a_short_client_timeout(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.get("/slow/api", timeout=0.2)
    started = time.monotonic()
    assert client.get("/slow/api", timeout=5).json() == {"data": []}
    assert time.monotonic() - started >= 0.9


def test_stop_does_not_wait_for_a_slow_response() -> None:
    server = SampleSources(slow_response_seconds=20)
    server.start()
    outcome: list[int] = []
    waiting = threading.Thread(
        target=lambda: outcome.append(httpx.get(server.url("/slow/api"), timeout=30).status_code)
    )
    waiting.start()
    time.sleep(0.5)  # let the request reach its handler, which then waits for slow_response_seconds
    started = time.monotonic()
    server.stop()
    waiting.join(timeout=5)
    assert time.monotonic() - started < 3
    assert outcome == [200]


# ---------------------------------------------------------------------------------------------------------
# publish_more
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", PUBLISHABLE_SOURCES)
def test_publish_more_adds_new_records_that_read_back_as_expected(fresh_sources: SampleSources, source: str) -> None:
    with httpx.Client(base_url=fresh_sources.base_url) as http:
        ids_before = {external_id for external_id, _ in read_source(http, source)}
        published = fresh_sources.publish_more(source, 2)
        rows_after = read_source(http, source)
    new_ids = [external_id for external_id, _ in rows_after if external_id not in ids_before]
    assert sorted(new_ids) == sorted(record["external_id"] for record in published)
    assert new_ids[0] == published[-1]["external_id"]  # newest first, the last published on top
    valid, _ = judge(rows_after)
    expected = fresh_sources.expected_records(source)
    assert [record["external_id"] for record in expected[:2]] == new_ids
    assert by_id(valid) == by_id(without_personal_data(expected))


def test_publish_more_keeps_the_single_endpoint_single(fresh_sources: SampleSources) -> None:
    with pytest.raises(ValueError, match="data_go_kr_single"):
        fresh_sources.publish_more("data_go_kr_single", 1)


# ---------------------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------------------


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["external_id"]: record for record in records}


@pytest.mark.parametrize("source", SOURCE_NAMES)
def test_ground_truth_matches_what_is_served(fresh_sources: SampleSources, source: str) -> None:
    with httpx.Client(base_url=fresh_sources.base_url) as http:
        valid, rejected = judge(read_source(http, source))
    expected = expected_records(source, fresh_sources.base_url)
    assert [record["external_id"] for record in valid] == [record["external_id"] for record in expected]
    assert by_id(valid) == by_id(without_personal_data(expected))
    assert rejected == [(bad["external_id"], bad["reason"]) for bad in expected_invalid(source)]


def test_ground_truth_records_have_every_field_and_clean_korean_text() -> None:
    for source in SOURCE_NAMES:
        for record in expected_records(source, "http://sample.test"):
            assert list(record) == [
                "external_id",
                "title",
                "content",
                "issuing_organization",
                "target_region",
                "target_industry",
                "funding_type",
                "application_start_date",
                "application_end_date",
                "original_url",
                "personal_data",
            ]
            assert re.search("[가-힣]", record["title"])
            for text in (record["title"], record["content"]):
                assert not re.search(r"<[a-z/]|&[#a-z0-9]+;|alert\(1\)|\s\s", text), (source, record["external_id"])
            assert record["original_url"].startswith(("http://sample.test/", "https://"))


def test_every_kind_of_bad_record_appears_across_the_sources() -> None:
    reasons = {bad["reason"] for source in SOURCE_NAMES for bad in expected_invalid(source)}
    assert reasons == {"missing title", "invalid date", "duplicate id"}
    quirks = " ".join(quirk for source in SOURCE_NAMES for entry in sample_quirks(source) for quirk in entry["quirks"])
    assert "script" in quirks and "free-text" in quirks
    undated = [
        record
        for source in SOURCE_NAMES
        if source != "rss"
        for record in expected_records(source, "http://x")
        if record["application_end_date"] is None
    ]
    assert len(undated) >= 5  # 상시 접수, 추후 공지, 예산 소진시까지, 상시, 상시 모집


def test_board_ground_truth_names_the_personal_data_to_mask() -> None:
    records = expected_records("board", "http://x")
    assert all(record["personal_data"] for record in records)
    for record in records:
        for secret in record["personal_data"]:
            assert secret in record["content"]
    assert any("02-123-4567" in record["personal_data"] for record in records)


def test_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sample source"):
        expected_records("nowhere", "http://x")
