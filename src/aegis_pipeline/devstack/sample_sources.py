"""Stand-ins for the remote public sources, for tests and the demo.

`SampleSources` is a local HTTP server (standard library `ThreadingHTTPServer`) that imitates the public
sources the collectors read, quirks included, so tests and `make demo` run the real HTTP client and the
real parsing against realistic payloads. `python -m devstack.sample_sources --port 8765` serves until
Ctrl-C. The records live in `devstack/sample_data/*.yaml`, one file per source, each record next to
what a correct collector must make of it.

Endpoints (query parameters in brackets, defaults after `=`):

- `GET /data-go-kr/policies` [serviceKey, pageNo=1, numOfRows=10]: data.go.kr style XML, 23 rows
  (`<response><header>…</header><body><items><item>…</item></items><numOfRows/><pageNo/><totalCount/>
  </body></response>`); 3 pages of 10 with a short last page, then an empty `<items/>`.
- `GET /data-go-kr/single` [serviceKey, pageNo=1, numOfRows=10]: the same envelope with exactly one
  `<item>` (an XML-to-dict converter then yields an object, not a list).
- `GET /data-go-kr/<anything else>`: HTTP 200, error envelope code 12 (NO_OPENAPI_SERVICE_ERROR).
- `GET /bizinfo/api` [pageIndex=1, pageUnit=10; crtfcKey and dataType accepted and ignored]:
  기업마당 JSON `{"jsonArray": [...]}`, 15 rows; no total count, so a short page ends paging.
- `GET /sii/siia/selectSIIA200Detail.do` [pblancId]: the bizinfo detail page a relative `pblancUrl`
  points to (UTF-8 HTML, for the demo's links).
- `GET /odcloud/api` [serviceKey or header `Authorization: Infuser <key>`, page=1, perPage=10]:
  `{"page", "perPage", "totalCount", "currentCount", "matchCount", "data": [...]}` with Korean column
  names, 12 rows.
- `GET /rss/announcements.xml`: RSS 2.0, 8 items, newest first.
- `GET /board/list.do` [page=1]: a local-government board (성동구) list page, 6 posts a page plus a
  pinned notice, 2 pages; `GET /board/view.do` [nttId]: a post's detail page with the real content.
- `GET /board/private/view.do` [nttId]: a post the list links to but robots.txt disallows.
- `GET /robots.txt`: `Disallow: /board/private/`, `Crawl-delay: 1` (the constructor can lower it).
- Any path given to `add_payload(path, body, content_type)`: that body (tests serve hostile payloads so).
- `GET /dead/api`: always HTTP 503. `GET /slow/api`: answers `{"data": []}` after
  `slow_response_seconds` (default 5 s), to test client timeouts.

Quirks, each where a real source has it:

- data.go.kr: errors come back as HTTP 200 with an `<OpenAPI_ServiceResponse>` envelope. The first
  request for page 2 of `/data-go-kr/policies` gets the rate-limit envelope (returnReasonCode 22,
  LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR) once; asking again gives the real page, and
  `reset()` re-arms it. A wrong or missing serviceKey gets code 30 (SERVICE_KEY_IS_NOT_REGISTERED_ERROR).
  A non-numeric or non-positive pageNo/numOfRows gets resultCode 10 in the normal envelope. Some `cn`
  values are HTML in CDATA, others are escaped and still hold HTML entities; dates come as `20260301`,
  `2026.03.01`, `2026. 3. 1.` and `2026-03-01`; `detailUrl` holds `&`.
- bizinfo: `bsnsSumryCn` is entity-encoded HTML (`&lt;p&gt;`, `&#40;`) with `\\r\\n`, once with an
  encoded `<script>`; `reqstBeginEndDe` is `2026-03-02 ~ 2026-03-20`, `20260316 ~ 20260403` or free
  text (`상시 접수`, `추후 공지`, `예산 소진시까지`); `pblancUrl` is relative; `areaNm`/`industNm` join
  values with `@`.
- odcloud: a wrong or missing key gets HTTP 401 `{"code": -4, "msg": "등록되지 않은 인증키 입니다."}`;
  `번호` is a row number that shifts when rows are published, `공고번호` is the id; null and free-text
  dates.
- RSS: descriptions are HTML, in CDATA or XML-escaped; one holds a `<script>`; one item has no
  `<author>`; one guid is not a URL (`isPermaLink="false"`).
- Board: pages are CP949-encoded (what browsers call euc-kr; one post holds `똠`, outside strict
  EUC-KR). List pages declare `<meta charset="euc-kr">` and the right HTTP charset; detail pages declare
  `<meta http-equiv="Content-Type" content="text/html; charset=euc-kr">` and some send the wrong HTTP
  header `text/html; charset=utf-8`, the others none. The pinned notice sits on every list page, a long
  title is cut short on the list, links are relative (`view.do?nttId=…`), a page past the end shows a
  row "등록된 게시물이 없습니다." that is not a post, and an unknown nttId answers HTTP 200 with an
  alert script. 접수기간 comes as ranges, with weekdays and times, or as free text.
- Bad records across the sources (see `expected_invalid`): missing title (empty, null, blank),
  impossible dates (`20261345`, `2026-13-45`, `2026.02.30`), a duplicated id within a source. Dirty
  but valid records (HTML, scripts, entities, free-text dates) appear cleaned in `expected_records`.

Ground truth. `expected_records(source, base_url)` gives, for each valid record, what a correct
collector produces: `external_id` (str), `title`, `content`, `issuing_organization`, `target_region`
and `target_industry` (lists of the names as the source writes them, split on the source's separator),
`funding_type`, `application_start_date`/`application_end_date` (ISO `YYYY-MM-DD` or None for free
text), `original_url` (absolute) and `personal_data` (contact strings that masking must remove later).
Text fields are cleaned the same way: HTML entities decoded (also when the markup itself is
entity-encoded), tags removed with `<script>`/`<style>` elements and their text dropped, then every run
of whitespace (including no-break spaces) collapsed to one space and the ends trimmed, i.e.
`" ".join(text.split())`. The expected texts are written out by hand in the data files.
`expected_invalid(source)` names each record a collector must reject: `external_id`, `reason`
("missing title", "invalid date" or "duplicate id"), `field`, `detail`. `sample_quirks(source)` lists
the quirks of each record by id. Sources: `SOURCE_NAMES`.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape as xml_escape

import yaml

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

SAMPLE_DATA_DIR = Path(__file__).with_name("sample_data")
SOURCE_NAMES: tuple[str, ...] = ("data_go_kr", "data_go_kr_single", "bizinfo", "odcloud", "rss", "board")
# Sources that publish_more() can grow; the single-item endpoint must stay single.
PUBLISHABLE_SOURCES: tuple[str, ...] = ("data_go_kr", "bizinfo", "odcloud", "rss", "board")
# The field that carries each source's own id in the served payload.
SOURCE_ID_FIELDS: Mapping[str, str] = {
    "data_go_kr": "pblancId",
    "data_go_kr_single": "pblancId",
    "bizinfo": "pblancId",
    "odcloud": "공고번호",
    "rss": "guid",
    "board": "nttId",
}
EXPECTED_FIELDS: tuple[str, ...] = (
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
)
_EXPECTED_DEFAULTS: Mapping[str, Any] = {
    "target_region": [],
    "target_industry": [],
    "funding_type": None,
    "personal_data": [],
}
DEFAULT_SERVICE_KEY = "sample-service-key"
BOARD_PRIVATE_PATH_PREFIX = "/board/private/"
BOARD_ENCODING = "cp949"  # declared as euc-kr, as the real sites do; cp949 is the superset browsers use
RATE_LIMITED_PAGE_NO = 2
MAX_SLOW_RESPONSE_SECONDS = 30.0

_KST = dt.timezone(dt.timedelta(hours=9))


# ---------------------------------------------------------------------------------------------------------
# Sample data and ground truth
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SampleEntry:
    """One row of a source as the data file describes it (a repeat_of row carries a copy of its original)."""

    served: Mapping[str, Any]
    options: Mapping[str, Any]
    expected: Mapping[str, Any] | None
    invalid: Mapping[str, Any] | None
    quirks: tuple[str, ...]


@dataclass(frozen=True)
class _SampleFile:
    entries: tuple[_SampleEntry, ...]
    settings: Mapping[str, Any]


_ENTRY_KEYS = frozenset({"served", "repeat_of", "expected", "invalid", "quirks"})


def _check_no_yaml_dates(value: Any, where: str) -> None:
    # Unquoted dates in YAML become date objects (and 20260301 an int); the files quote them on purpose.
    if isinstance(value, dt.date):
        raise ValueError(f"{where}: unquoted date {value!r} in sample data; quote it")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_no_yaml_dates(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_no_yaml_dates(item, f"{where}[{index}]")


@functools.cache
def _load_sample_file(source: str) -> _SampleFile:
    if source not in SOURCE_NAMES:
        raise ValueError(f"unknown sample source {source!r}; known: {', '.join(SOURCE_NAMES)}")
    path = SAMPLE_DATA_DIR / f"{source}.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    _check_no_yaml_dates(document, path.name)
    id_field = SOURCE_ID_FIELDS[source]
    entries: list[_SampleEntry] = []
    served_by_id: dict[str, Mapping[str, Any]] = {}
    for index, raw in enumerate(document["records"]):
        where = f"{path.name} record {index + 1}"
        if "repeat_of" in raw:
            served = served_by_id[str(raw["repeat_of"])]
        else:
            served = raw["served"]
            served_by_id.setdefault(str(served[id_field]), served)
        expected = raw.get("expected")
        if expected is not None:
            unknown = set(expected) - set(EXPECTED_FIELDS)
            if unknown:
                raise ValueError(f"{where}: unknown expected fields {sorted(unknown)}")
            expected = {name: expected.get(name, _EXPECTED_DEFAULTS.get(name)) for name in EXPECTED_FIELDS}
        if expected is not None and raw.get("invalid") is not None:
            raise ValueError(f"{where}: a record is either expected or invalid, not both")
        options = {key: value for key, value in raw.items() if key not in _ENTRY_KEYS}
        entries.append(
            _SampleEntry(
                served=served,
                options=options,
                expected=expected,
                invalid=raw.get("invalid"),
                quirks=tuple(raw.get("quirks") or ()),
            )
        )
    settings = {key: value for key, value in document.items() if key != "records"}
    return _SampleFile(entries=tuple(entries), settings=settings)


def _absolute_url(url: str | None, base_url: str) -> str | None:
    # Relative URLs in the data point into this server (bizinfo pblancUrl, board links).
    if url is not None and url.startswith("/"):
        return base_url.rstrip("/") + url
    return url


def _resolved_expected(expected: Mapping[str, Any], base_url: str) -> JsonDict:
    record = copy.deepcopy(dict(expected))
    record["original_url"] = _absolute_url(record["original_url"], base_url)
    return record


def expected_records(source: str, base_url: str) -> list[JsonDict]:
    """What a correct collector produces from the valid records of `source`, in served order.

    `base_url` is the server's base URL (`SampleSources.base_url`): relative links (bizinfo `pblancUrl`,
    board posts) resolve against it. Only the records in the data files; `SampleSources.expected_records`
    adds the ones `publish_more` added. Each dict has the keys of `EXPECTED_FIELDS`.
    """
    return [
        _resolved_expected(entry.expected, base_url)
        for entry in _load_sample_file(source).entries
        if entry.expected is not None
    ]


def expected_invalid(source: str) -> list[JsonDict]:
    """The records of `source` a correct collector rejects: external_id, reason, field and detail.

    reason is one of "missing title", "invalid date", "duplicate id"; for a duplicate, the first
    occurrence is the valid record and each later one is listed here.
    """
    id_field = SOURCE_ID_FIELDS[source]
    return [
        {"external_id": str(entry.served[id_field]), **copy.deepcopy(dict(entry.invalid))}
        for entry in _load_sample_file(source).entries
        if entry.invalid is not None
    ]


def sample_quirks(source: str) -> list[JsonDict]:
    """The quirks of each record of `source` that has some: {"external_id", "quirks": [...]}, served order."""
    id_field = SOURCE_ID_FIELDS[source]
    return [
        {"external_id": str(entry.served[id_field]), "quirks": list(entry.quirks)}
        for entry in _load_sample_file(source).entries
        if entry.quirks
    ]


# ---------------------------------------------------------------------------------------------------------
# New records for incremental-collection tests
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NewProgram:
    name: str
    organization: str
    funding_type: str
    region: str
    industry: str
    summary: str


_NEW_PROGRAMS: tuple[_NewProgram, ...] = (
    _NewProgram(
        "스마트공장 보급확산사업 추가 모집",
        "중소벤처기업부",
        "보조금",
        "전국",
        "제조업",
        "제조 중소기업의 스마트공장 기초 단계 구축 비용을 최대 4천만원까지 지원합니다.",
    ),
    _NewProgram(
        "청년 디지털 일자리 사업 참여기업 추가 모집",
        "고용노동부",
        "인력",
        "전국",
        "정보통신업",
        "IT 직무에 청년을 채용한 기업에 1인당 월 최대 180만원의 인건비를 지원합니다.",
    ),
    _NewProgram(
        "수출바우처 하반기 참여기업 모집",
        "산업통상자원부",
        "수출",
        "전국",
        "제조업",
        "해외 마케팅과 통번역, 해외 인증 비용을 바우처로 최대 1억원까지 지원합니다.",
    ),
    _NewProgram(
        "소상공인 스마트상점 기술보급사업 추가 공고",
        "소상공인시장진흥공단",
        "보조금",
        "전국",
        "음식점업",
        "키오스크와 서빙로봇 등 스마트 기술 도입 비용의 70%를 최대 500만원까지 지원합니다.",
    ),
    _NewProgram(
        "중소기업 R&D 바우처 추가 공모",
        "과학기술정보통신부",
        "바우처",
        "전국",
        "정보통신업",
        "연구 장비 활용과 기술 서비스 이용 비용을 기업당 최대 5천만원의 바우처로 지원합니다.",
    ),
    _NewProgram(
        "서울형 강소기업 육성사업 참여기업 모집",
        "서울특별시",
        "경영",
        "서울특별시",
        "전체",
        "일하기 좋은 서울 소재 중소기업에 근무환경 개선금과 기업 홍보를 지원합니다.",
    ),
)


@dataclass
class _PublishedRecord:
    served: JsonDict
    options: JsonDict
    expected: JsonDict  # original_url may be relative to the base URL, as in the data files


def _new_record(source: str, sequence: int) -> _PublishedRecord:
    """The `sequence`-th new record of `source` (1-based): unique id, plain text, dates in the source's format."""
    program = _NEW_PROGRAMS[(sequence - 1) % len(_NEW_PROGRAMS)]
    title = f"2026년 {program.name} (제{sequence}차)"
    start = dt.date(2026, 6, 1) + dt.timedelta(days=7 * sequence)
    end = start + dt.timedelta(days=20)
    expected: JsonDict = {
        "external_id": "",
        "title": title,
        "content": program.summary,
        "issuing_organization": program.organization,
        "target_region": [program.region],
        "target_industry": [program.industry],
        "funding_type": program.funding_type,
        "application_start_date": start.isoformat(),
        "application_end_date": end.isoformat(),
        "original_url": None,
        "personal_data": [],
    }
    served: JsonDict
    options: JsonDict = {}
    if source == "data_go_kr":
        external_id = str(176000 + sequence)
        url = f"https://www.mss.go.kr/site/smba/ex/bbs/View.do?cbIdx=310&bcIdx={1047000 + sequence}"
        served = {
            "pblancId": external_id,
            "pblancNm": title,
            "cn": program.summary,
            "insttNm": program.organization,
            "rgnNm": program.region,
            "indutyNm": program.industry,
            "sprtTypeNm": program.funding_type,
            "rceptBgnDt": f"{start:%Y%m%d}",
            "rceptEndDt": f"{end:%Y%m%d}",
            "regDt": f"{start - dt.timedelta(days=7):%Y-%m-%d} 09:00:00",
            "detailUrl": url,
        }
    elif source == "bizinfo":
        external_id = f"PBLN_{113000 + sequence:015d}"
        url = f"/sii/siia/selectSIIA200Detail.do?pblancId={external_id}"
        served = {
            "pblancId": external_id,
            "pblancNm": title,
            "bsnsSumryCn": f"&lt;p&gt;{program.summary}&lt;/p&gt;",
            "jrsdInsttNm": program.organization,
            "excInsttNm": program.organization,
            "trgetNm": "중소기업",
            "reqstBeginEndDe": f"{start:%Y-%m-%d} ~ {end:%Y-%m-%d}",
            "pblancUrl": url,
            "hashtags": f"{program.funding_type},{program.region}",
            "industNm": program.industry,
            "areaNm": program.region,
            "pldirSportRealmLclasCodeNm": program.funding_type,
            "creatPnttm": f"{start - dt.timedelta(days=7):%Y-%m-%d} 09:00:00",
            "inqireCo": 0,
        }
    elif source == "odcloud":
        external_id = f"제2026-{200 + sequence}호"
        url = f"https://www.mss.go.kr/site/smba/ex/bbs/View.do?cbIdx=86&bcIdx={1048000 + sequence}"
        served = {
            "번호": 0,  # renumbered when served
            "공고번호": external_id,
            "사업명": title,
            "사업개요": program.summary,
            "소관기관": program.organization,
            "수행기관": program.organization,
            "지원분야": program.funding_type,
            "지원대상": "중소기업",
            "지역": program.region,
            "업종": program.industry,
            "신청시작일": start.isoformat(),
            "신청종료일": end.isoformat(),
            "상세URL": url,
            "등록일": (start - dt.timedelta(days=7)).isoformat(),
        }
    elif source == "rss":
        url = f"https://www.korea.kr/briefing/pressReleaseView.do?newsId={156741000 + sequence}"
        external_id = url
        published = dt.datetime(2026, 4, 28, 9, 0, tzinfo=_KST) + dt.timedelta(days=sequence)
        served = {
            "title": title,
            "link": url,
            "description": f"<p>{program.summary}</p>",
            "author": program.organization,
            "category": "보도자료",
            "pubDate": published.strftime("%a, %d %b %Y %H:%M:%S +0900"),
            "guid": url,
        }
        options = {"description_cdata": True}
        # The feed has no structured period and names no region or industry.
        expected.update(
            target_region=[],
            target_industry=[],
            funding_type=None,
            application_start_date=None,
            application_end_date=None,
        )
    elif source == "board":
        ntt_id = 50300 + sequence
        external_id = str(ntt_id)
        url = f"/board/view.do?nttId={ntt_id}"
        contact = "문의: 일자리정책과 홍길동 주무관 (02-123-4567, gildong.hong@sd.go.kr)"
        served = {
            "nttId": ntt_id,
            "title": title,
            "department": "성동구 일자리정책과",
            "registered": (dt.date(2026, 3, 2) + dt.timedelta(days=sequence)).isoformat(),
            "views": 0,
            "period": f"{start:%Y.%m.%d} ~ {end:%Y.%m.%d}",
            "body_html": f"<p>{program.summary}</p>\r\n<p>{contact}</p>",
        }
        expected.update(
            content=f"{program.summary} {contact}",
            issuing_organization="성동구 일자리정책과",
            target_region=[],
            target_industry=[],
            funding_type=None,
            personal_data=["02-123-4567", "gildong.hong@sd.go.kr"],
        )
    else:
        raise ValueError(f"publish_more cannot grow {source!r}; publishable: {', '.join(PUBLISHABLE_SOURCES)}")
    expected.update(external_id=external_id, original_url=url)
    return _PublishedRecord(served=served, options=options, expected=expected)


# ---------------------------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Row:
    """A row as served right now: fields plus per-row serving options."""

    served: Mapping[str, Any]
    options: Mapping[str, Any]


_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'


def _xml_text(value: Any, use_cdata: bool) -> str:
    text = str(value)
    if use_cdata and ("<" in text or "&" in text):
        if "]]>" in text:
            raise ValueError("CDATA text cannot contain ']]>'")
        return f"<![CDATA[{text}]]>"
    return xml_escape(text)


def _xml_fields(fields: Mapping[str, Any], use_cdata: bool) -> str:
    # None means "no element"; an empty string is served as an empty element, as the real APIs do.
    return "".join(
        f"<{name}>{_xml_text(value, use_cdata)}</{name}>" for name, value in fields.items() if value is not None
    )


def _open_api_error(auth_message: str, reason_code: int) -> _Response:
    body = (
        "<OpenAPI_ServiceResponse><cmmMsgHeader><errMsg>SERVICE ERROR</errMsg>"
        f"<returnAuthMsg>{auth_message}</returnAuthMsg><returnReasonCode>{reason_code}</returnReasonCode>"
        "</cmmMsgHeader></OpenAPI_ServiceResponse>"
    )
    # HTTP 200 on purpose: the real gateway reports errors only in the body.
    return _Response(HTTPStatus.OK, body.encode("utf-8"), "text/xml;charset=UTF-8")


def _data_go_kr_envelope(result_code: str, result_message: str, body_xml: str) -> _Response:
    payload = (
        f"{_XML_DECLARATION}<response><header><resultCode>{result_code}</resultCode>"
        f"<resultMsg>{result_message}</resultMsg></header>{body_xml}</response>"
    )
    return _Response(HTTPStatus.OK, payload.encode("utf-8"), "application/xml;charset=UTF-8")


def _data_go_kr_page(rows: list[_Row], page_no: int, num_of_rows: int, total_count: int) -> _Response:
    items = "".join(f"<item>{_xml_fields(row.served, bool(row.options.get('xml_cdata')))}</item>" for row in rows)
    items_xml = f"<items>{items}</items>" if items else "<items/>"
    body_xml = (
        f"<body>{items_xml}<numOfRows>{num_of_rows}</numOfRows><pageNo>{page_no}</pageNo>"
        f"<totalCount>{total_count}</totalCount></body>"
    )
    return _data_go_kr_envelope("00", "NORMAL SERVICE.", body_xml)


def _json_response(payload: Any, status: int = HTTPStatus.OK) -> _Response:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return _Response(status, body, "application/json;charset=UTF-8")


def _rss_feed(channel: Mapping[str, Any], rows: list[_Row]) -> _Response:
    item_xml: list[str] = []
    for row in rows:
        fields = dict(row.served)
        guid = fields.pop("guid", None)
        use_cdata = bool(row.options.get("description_cdata"))
        parts = [
            f"<{name}>{_xml_text(value, use_cdata and name == 'description')}</{name}>"
            for name, value in fields.items()
            if value is not None
        ]
        if guid is not None:
            permalink = "" if row.options.get("guid_is_permalink", True) else ' isPermaLink="false"'
            parts.append(f"<guid{permalink}>{xml_escape(str(guid))}</guid>")
        item_xml.append("<item>" + "".join(parts) + "</item>")
    last_build = rows[0].served["pubDate"] if rows else ""
    payload = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>{xml_escape(channel['title'])}</title><link>{xml_escape(channel['link'])}</link>"
        f"<description>{xml_escape(channel['description'])}</description>"
        f"<language>{channel['language']}</language><lastBuildDate>{last_build}</lastBuildDate>"
        + "\n".join(item_xml)
        + "</channel></rss>"
    )
    return _Response(HTTPStatus.OK, payload.encode("utf-8"), "application/rss+xml; charset=UTF-8")


def _board_list_page(settings: Mapping[str, Any], rows: list[_Row], page: int) -> _Response:
    page_size = int(settings["page_size"])
    pinned = [row for row in rows if row.served.get("pinned")]
    regular = [row for row in rows if not row.served.get("pinned")]
    last_page = max(1, -(-len(regular) // page_size))
    page_rows = regular[(page - 1) * page_size : page * page_size]
    table_rows: list[str] = []
    for row in pinned:
        table_rows.append(_board_list_row(row, number_cell='<span class="icon_notice">공지</span>'))
    for offset, row in enumerate(page_rows):
        # The 번호 column counts down over all posts: a display number, not the post id.
        display_number = len(regular) - ((page - 1) * page_size + offset)
        table_rows.append(_board_list_row(row, number_cell=str(display_number)))
    if not page_rows:
        table_rows.append('<tr><td colspan="5" class="no_data">등록된 게시물이 없습니다.</td></tr>')
    pager = " ".join(
        f"<strong>{number}</strong>" if number == page else f'<a href="list.do?page={number}">{number}</a>'
        for number in range(1, last_page + 1)
    )
    if page < last_page:
        pager += f' <a href="list.do?page={page + 1}" class="next">다음</a>'
    document = f"""<!DOCTYPE html>
<html lang="ko">
<head>
<meta charset="euc-kr">
<title>{settings["board_title"]} | {settings["site_title"]}</title>
<script type="text/javascript" src="/js/jquery-1.12.4.min.js"></script>
</head>
<body>
<div id="container">
<h2>{settings["board_title"]}</h2>
<p class="total">전체 <strong>{len(regular)}</strong>건, 현재 페이지 {page}/{last_page}</p>
<table class="board_list" summary="{settings["board_title"]} 목록: 번호, 제목, 담당부서, 등록일, 조회수">
<caption>{settings["board_title"]} 목록</caption>
<thead>
<tr><th scope="col">번호</th><th scope="col">제목</th><th scope="col">담당부서</th>
<th scope="col">등록일</th><th scope="col">조회수</th></tr>
</thead>
<tbody>
{chr(10).join(table_rows)}
</tbody>
</table>
<div class="paging">{pager}</div>
</div>
</body>
</html>
"""
    return _Response(HTTPStatus.OK, document.encode(BOARD_ENCODING), "text/html; charset=EUC-KR")


def _board_post_href(post: Mapping[str, Any]) -> str:
    if post.get("private"):
        return f"{BOARD_PRIVATE_PATH_PREFIX}view.do?nttId={post['nttId']}"
    return f"view.do?nttId={post['nttId']}"  # relative to /board/list.do, as the real boards write it


def _board_list_row(row: _Row, number_cell: str) -> str:
    post = row.served
    title = post.get("list_title") or post["title"]
    row_class = ' class="notice"' if post.get("pinned") else ""
    return (
        f"<tr{row_class}><td>{number_cell}</td>"
        f'<td class="subject"><a href="{_board_post_href(post)}">{title}</a></td>'
        f"<td>{post['department']}</td><td>{post['registered']}</td><td>{post['views']}</td></tr>"
    )


def _board_view_page(settings: Mapping[str, Any], post: Mapping[str, Any]) -> _Response:
    document = f"""<!DOCTYPE html>
<html lang="ko">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=euc-kr">
<title>{post["title"]} | {settings["board_title"]} | {settings["site_title"]}</title>
<script type="text/javascript" src="/js/jquery-1.12.4.min.js"></script>
</head>
<body>
<div id="container">
<h2>{settings["board_title"]}</h2>
<table class="board_view">
<caption>{settings["board_title"]} 상세보기</caption>
<tbody>
<tr><th scope="row">제목</th><td colspan="3" class="subject">{post["title"]}</td></tr>
<tr><th scope="row">담당부서</th><td>{post["department"]}</td>
<th scope="row">등록일</th><td>{post["registered"]}</td></tr>
<tr><th scope="row">접수기간</th><td class="period">{post["period"]}</td>
<th scope="row">조회수</th><td>{post["views"]}</td></tr>
<tr><td colspan="4">
<div class="view_content">
{post["body_html"]}
</div>
</td></tr>
</tbody>
</table>
<div class="btn_area"><a href="list.do" class="btn_list">목록</a></div>
</div>
<script type="text/javascript">fnIncreaseViewCount('{post["nttId"]}');</script>
</body>
</html>
"""
    # Some posts declare utf-8 in the header although the body is EUC-KR, as misconfigured servers do.
    charset = post.get("http_charset")
    content_type = f"text/html; charset={charset}" if charset else "text/html"
    return _Response(HTTPStatus.OK, document.encode(BOARD_ENCODING), content_type)


def _board_missing_post() -> _Response:
    # Real boards answer an unknown id with HTTP 200 and a script, not with a 404.
    document = (
        '<html><head><meta charset="euc-kr"></head><body><script type="text/javascript">'
        "alert('존재하지 않는 게시물입니다.');history.back();</script></body></html>"
    )
    return _Response(HTTPStatus.OK, document.encode(BOARD_ENCODING), "text/html; charset=EUC-KR")


def _bizinfo_detail_page(row: Mapping[str, Any]) -> _Response:
    document = f"""<!DOCTYPE html>
<html lang="ko"><head><meta charset="utf-8"><title>{row.get("pblancNm") or ""} | 기업마당</title></head>
<body><div class="view_cont">
<h2 class="title">{row.get("pblancNm") or ""}</h2>
<ul>
<li><span>소관부처</span> {row["jrsdInsttNm"]}</li>
<li><span>사업수행기관</span> {row["excInsttNm"]}</li>
<li><span>신청기간</span> {row["reqstBeginEndDe"]}</li>
<li><span>지원대상</span> {row["trgetNm"]}</li>
</ul>
</div></body></html>
"""
    return _Response(HTTPStatus.OK, document.encode("utf-8"), "text/html;charset=UTF-8")


def _not_found() -> _Response:
    return _Response(HTTPStatus.NOT_FOUND, b"<h1>404 Not Found</h1>", "text/html; charset=UTF-8")


def _positive_int(query: Mapping[str, str], name: str, default: int) -> int:
    value = int(query.get(name, default))
    if value < 1:
        raise ValueError(f"{name} must be at least 1")
    return value


# ---------------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered.

    `query` keeps the first value of each parameter; `time` is `time.monotonic()` when the request
    arrived (compare it between requests to check a crawler's delay); `status` is the HTTP status sent.
    """

    path: str
    query: dict[str, str]
    time: float
    status: int
    user_agent: str | None = None


class _SampleHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow or kept-alive connection must not hold up stop()
    request_queue_size = 128  # the default 5 drops connections when several crawls run at once
    sources: SampleSources


class _SampleRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache"  # what the real gateways answer; sys_version is dropped below
    sys_version = ""

    def do_GET(self) -> None:
        arrived = time.monotonic()
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        sources = cast(_SampleHTTPServer, self.server).sources
        try:
            response = sources._route(url.path, query, dict(self.headers.items()))
        except Exception:
            log.exception("sample_sources.handler_failed path=%s", url.path)
            response = _Response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error", "text/plain")
        sources._log_request(
            RequestRecord(
                path=url.path,
                query=query,
                time=arrived,
                status=int(response.status),
                user_agent=self.headers.get("User-Agent"),
            )
        )
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sample_sources.http " + format, *args)


class SampleSources:
    """A local HTTP server imitating the remote public sources (see the module docstring for endpoints).

    host: interface to bind, default "127.0.0.1". port: default 0, a free port. service_key: the
    serviceKey the data.go.kr and odcloud endpoints accept, default "sample-service-key".
    crawl_delay_seconds: the Crawl-delay robots.txt announces, default 1 (whole seconds, as
    urllib.robotparser reads it; tests may pass 0). slow_response_seconds: how long /slow/api waits,
    default 5.0, at most 30.

    Guarantees: every request is logged in `requests` before its response is sent; the rate-limit answer
    for page 2 comes once until `reset()`; `stop()` returns promptly even while /slow/api is waiting.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        service_key: str = DEFAULT_SERVICE_KEY,
        *,
        crawl_delay_seconds: int = 1,
        slow_response_seconds: float = 5.0,
    ) -> None:
        if crawl_delay_seconds < 0:
            raise ValueError("crawl_delay_seconds must be zero or more")
        if not 0 <= slow_response_seconds <= MAX_SLOW_RESPONSE_SECONDS:
            raise ValueError(f"slow_response_seconds must be between 0 and {MAX_SLOW_RESPONSE_SECONDS}")
        self.host = host
        self.port = port
        self.service_key = service_key
        self.crawl_delay_seconds = crawl_delay_seconds
        self.slow_response_seconds = slow_response_seconds
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _SampleHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._requests: list[RequestRecord] = []
        self._rate_limit_armed = True
        self._rows: dict[str, list[_Row]] = {
            source: [_Row(entry.served, entry.options) for entry in _load_sample_file(source).entries]
            for source in SOURCE_NAMES
        }
        self._published: dict[str, list[_PublishedRecord]] = {source: [] for source in SOURCE_NAMES}
        self._routes: dict[str, Callable[[dict[str, str], dict[str, str]], _Response]] = {
            "/data-go-kr/policies": functools.partial(self._serve_data_go_kr, "data_go_kr"),
            "/data-go-kr/single": functools.partial(self._serve_data_go_kr, "data_go_kr_single"),
            "/bizinfo/api": self._serve_bizinfo,
            "/sii/siia/selectSIIA200Detail.do": self._serve_bizinfo_detail,
            "/odcloud/api": self._serve_odcloud,
            "/rss/announcements.xml": self._serve_rss,
            "/board/list.do": self._serve_board_list,
            "/board/view.do": self._serve_board_view,
            f"{BOARD_PRIVATE_PATH_PREFIX}view.do": self._serve_board_private_view,
            "/robots.txt": self._serve_robots,
            "/dead/api": self._serve_dead,
            "/slow/api": self._serve_slow,
        }

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> str:
        """Start serving in a daemon thread; returns the base URL, e.g. "http://127.0.0.1:41234"."""
        if self._server is not None:
            raise RuntimeError("SampleSources is already running")
        self._stopping.clear()
        server = _SampleHTTPServer((self.host, self.port), _SampleRequestHandler)
        server.sources = self
        self._server = server
        bound_host, bound_port = server.server_address[:2]
        self._base_url = f"http://{bound_host}:{bound_port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="sample-sources", daemon=True
        )
        self._thread.start()
        log.info("sample_sources.started base_url=%s", self._base_url)
        return self._base_url

    def stop(self) -> None:
        """Stop serving and close the port; a no-op when not running."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes /slow/api handlers
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = None
        self._thread = None
        log.info("sample_sources.stopped base_url=%s", self._base_url)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The base URL, without a trailing slash; set by start() and kept after stop()."""
        if self._base_url is None:
            raise RuntimeError("SampleSources has not been started")
        return self._base_url

    def url(self, path: str) -> str:
        """Absolute URL of `path` on this server, e.g. url("/bizinfo/api")."""
        return self.base_url + path

    # -- request log and test controls ----------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first (in the order responses were decided)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, path_prefix: str) -> list[RequestRecord]:
        """The logged requests whose path starts with `path_prefix`."""
        return [record for record in self.requests if record.path.startswith(path_prefix)]

    def reset(self) -> None:
        """Forget the request log and re-arm the one-shot rate-limit answer; published records stay."""
        with self._lock:
            self._requests.clear()
            self._rate_limit_armed = True

    def publish_more(self, source: str, count: int = 1) -> list[JsonDict]:
        """Add `count` new records at the top of `source` (newest first, as the real lists are).

        Returns what a correct collector produces from them (same keys as `expected_records`; relative
        links stay relative until the server has started). The new records are clean; each has a new id,
        so a second collection run sees exactly these as new.
        """
        if source not in PUBLISHABLE_SOURCES:
            raise ValueError(f"publish_more cannot grow {source!r}; publishable: {', '.join(PUBLISHABLE_SOURCES)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            new_records = [_new_record(source, len(self._published[source]) + offset) for offset in range(1, count + 1)]
            self._published[source].extend(new_records)
            # Newest first: the last published goes on top.
            self._rows[source][0:0] = [_Row(record.served, record.options) for record in reversed(new_records)]
        return [_resolved_expected(record.expected, self._base_url or "") for record in new_records]

    def expected_records(self, source: str) -> list[JsonDict]:
        """`expected_records(source, self.base_url)` plus the records `publish_more` added, newest first."""
        with self._lock:
            published = list(reversed(self._published[source]))
        return [_resolved_expected(record.expected, self.base_url) for record in published] + expected_records(
            source, self.base_url
        )

    def expected_invalid(self, source: str) -> list[JsonDict]:
        """Same as the module-level `expected_invalid` (published records are always valid)."""
        return expected_invalid(source)

    def add_payload(
        self,
        path: str,
        body: bytes | Callable[[dict[str, str]], bytes],
        content_type: str,
        status: int = HTTPStatus.OK,
    ) -> str:
        """Serve `body` at `path` from now on (a callable gets the query and returns the body); returns its URL.

        For tests that need payloads no real source sends on purpose: malformed, huge, hostile. An existing
        path is replaced.
        """
        def serve(query: dict[str, str], headers: dict[str, str]) -> _Response:
            return _Response(status, body(query) if callable(body) else body, content_type)

        with self._lock:
            self._routes[path] = serve
        return self.url(path)

    # -- serving --------------------------------------------------------------------------------------

    def _log_request(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)
        log.debug("sample_sources.request path=%s status=%s", record.path, record.status)

    def _snapshot(self, source: str) -> list[_Row]:
        with self._lock:
            return list(self._rows[source])

    def _route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> _Response:
        handler = self._routes.get(path)
        if handler is not None:
            return handler(query, headers)
        if path.startswith("/data-go-kr/"):
            return _open_api_error("NO_OPENAPI_SERVICE_ERROR", 12)
        return _not_found()

    def _take_rate_limit(self) -> bool:
        with self._lock:
            armed, self._rate_limit_armed = self._rate_limit_armed, False
        return armed

    def _serve_data_go_kr(self, source: str, query: dict[str, str], headers: dict[str, str]) -> _Response:
        if query.get("serviceKey") != self.service_key:
            return _open_api_error("SERVICE_KEY_IS_NOT_REGISTERED_ERROR", 30)
        try:
            page_no = _positive_int(query, "pageNo", 1)
            num_of_rows = _positive_int(query, "numOfRows", 10)
        except ValueError:
            return _data_go_kr_envelope("10", "INVALID REQUEST PARAMETER ERROR.", "")
        if source == "data_go_kr" and page_no == RATE_LIMITED_PAGE_NO and self._take_rate_limit():
            return _open_api_error("LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR", 22)
        rows = self._snapshot(source)
        page_rows = rows[(page_no - 1) * num_of_rows : page_no * num_of_rows]
        return _data_go_kr_page(page_rows, page_no, num_of_rows, len(rows))

    def _serve_bizinfo(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        try:
            page_index = _positive_int(query, "pageIndex", 1)
            page_unit = _positive_int(query, "pageUnit", 10)
        except ValueError as error:
            return _json_response({"reqErr": str(error)}, HTTPStatus.BAD_REQUEST)
        rows = self._snapshot("bizinfo")
        page_rows = rows[(page_index - 1) * page_unit : page_index * page_unit]
        return _json_response({"jsonArray": [dict(row.served) for row in page_rows]})

    def _serve_bizinfo_detail(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        wanted = query.get("pblancId")
        for row in self._snapshot("bizinfo"):
            if row.served["pblancId"] == wanted:
                return _bizinfo_detail_page(row.served)
        return _not_found()

    def _serve_odcloud(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        header_key = headers.get("Authorization", "").removeprefix("Infuser ").strip()
        if self.service_key not in (query.get("serviceKey"), header_key):
            return _json_response({"code": -4, "msg": "등록되지 않은 인증키 입니다."}, HTTPStatus.UNAUTHORIZED)
        try:
            page = _positive_int(query, "page", 1)
            per_page = _positive_int(query, "perPage", 10)
        except ValueError as error:
            return _json_response({"code": -1, "msg": str(error)}, HTTPStatus.BAD_REQUEST)
        rows = self._snapshot("odcloud")
        start = (page - 1) * per_page
        data = [
            {**row.served, "번호": start + offset + 1}  # a row number, so it shifts when rows are added
            for offset, row in enumerate(rows[start : start + per_page])
        ]
        return _json_response(
            {
                "page": page,
                "perPage": per_page,
                "totalCount": len(rows),
                "currentCount": len(data),
                "matchCount": len(rows),
                "data": data,
            }
        )

    def _serve_rss(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        return _rss_feed(_load_sample_file("rss").settings["channel"], self._snapshot("rss"))

    def _serve_board_list(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        try:
            page = _positive_int(query, "page", 1)
        except ValueError:
            page = 1  # real boards fall back to the first page on a bad page number
        return _board_list_page(_load_sample_file("board").settings["board"], self._snapshot("board"), page)

    def _board_post(self, query: dict[str, str], private: bool) -> _Response:
        settings = _load_sample_file("board").settings["board"]
        for row in self._snapshot("board"):
            post = row.served
            if str(post["nttId"]) == query.get("nttId") and bool(post.get("private")) == private:
                return _board_view_page(settings, post)
        return _board_missing_post()

    def _serve_board_view(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        return self._board_post(query, private=False)

    def _serve_board_private_view(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        return self._board_post(query, private=True)

    def _serve_robots(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        body = (
            "User-agent: *\n"
            f"Disallow: {BOARD_PRIVATE_PATH_PREFIX}\n"
            "Disallow: /admin/\n"
            f"Crawl-delay: {self.crawl_delay_seconds}\n"
        )
        return _Response(HTTPStatus.OK, body.encode("ascii"), "text/plain; charset=UTF-8")

    def _serve_dead(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        body = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
        return _Response(HTTPStatus.SERVICE_UNAVAILABLE, body, "text/html; charset=UTF-8")

    def _serve_slow(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        # An Event wait, not time.sleep, so stop() interrupts it.
        self._stopping.wait(self.slow_response_seconds)
        return _json_response({"data": []})


def main() -> None:
    """`python -m devstack.sample_sources [--host H] [--port P]`: serve until Ctrl-C or SIGTERM, print the base
    URL."""
    import signal

    parser = argparse.ArgumentParser(description="Serve the sample public sources (tests and demo).")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    parser.add_argument("--service-key", default=DEFAULT_SERVICE_KEY, help="accepted serviceKey")
    parser.add_argument("--crawl-delay-seconds", type=int, default=1, help="Crawl-delay in robots.txt")
    parser.add_argument("--slow-response-seconds", type=float, default=5.0, help="delay of /slow/api")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sources = SampleSources(
        arguments.host,
        arguments.port,
        arguments.service_key,
        crawl_delay_seconds=arguments.crawl_delay_seconds,
        slow_response_seconds=arguments.slow_response_seconds,
    )
    print(sources.start(), flush=True)
    # SIGTERM (`aegis-pipeline dev down`, which runs this as an engine of the embedded stack) stops as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sources.stop()


if __name__ == "__main__":
    main()
