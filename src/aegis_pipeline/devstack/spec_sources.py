"""Local stand-ins for the five real sources of the shipped catalogue, as their published specifications describe
them, quirks included.

`SpecSources` is a local HTTP server (standard library `ThreadingHTTPServer`, with `devstack.sample_sources`'
request handler and payload helpers) that serves each real API AT ITS REAL PATH, so a test can take the shipped
sources file (`helm/aegis-data-pipeline/files/sources.yaml`), replace only the scheme and host of each `url` by
`base_url`, and run the real collector code, HTTP client and parsing against it
(tests/collectors/test_shipped_sources.py does). `python -m aegis_pipeline.devstack.spec_sources --port 8766`
serves until Ctrl-C. Where `devstack.sample_sources` imitates the *kinds* of sources (with made-up paths and
fields), this module holds to the five real ones: their paths, parameters, field names and envelopes.

Endpoints, each reproducing one specification (query parameters in brackets, defaults after `=`):

- `GET /1421000/mssBizService_v2/getbizList_v2` [serviceKey, pageNo=1, numOfRows=10, startDate, endDate,
  returnType ignored]: 중소벤처기업부_사업공고 (data.go.kr 15113297). The data.go.kr XML envelope
  `<response><header><resultCode>00</resultCode>…</header><body><items><item>…</item></items><numOfRows/>
  <pageNo/><totalCount/></body></response>`, XML even when `returnType=json` is asked. Items `itemId`, `title`,
  `dataContents` (HTML, escaped or in CDATA), `applicationStartDate`, `applicationEndDate` (`YYYY-MM-DD`, often
  an empty `<applicationEndDate/>`), `viewUrl`, `writerName`, `writerPosition`, `writerPhone`, `writerEmail`,
  `fileName`, `fileUrl`; newest registration first. `startDate`/`endDate` (`YYYY-MM-DD`, both inclusive) filter
  by the registration date, which the items do not carry (the fixture keeps it aside) and `totalCount` counts
  what the filter kept. `numOfRows` is served up to `MSS_MAX_ROWS` (2,000, the published limit): a larger value
  gets 2,000 rows, so a client asking for more sees a short page. A page of one item has one `<item>`
  (an XML-to-dict reader then gives an object, not a list). Past the last page: an empty `<items/>`. A bad
  pageNo, numOfRows or date: resultCode 10 (INVALID_REQUEST_PARAMETER_ERROR) in the normal envelope.
- `GET /uss/rss/bizinfoApi.do` [crtfcKey, dataType=rss, pageIndex=1, pageUnit=10]: 기업마당 지원사업정보 API.
  With `dataType=json`, `{"jsonArray": [...]}` newest `creatPnttm` first, no total count (past the end:
  `{"jsonArray": []}`); otherwise its RSS 2.0 rendering. Fields `pblancId`, `pblancNm`, `bsnsSumryCn`
  (entity-encoded HTML with `\\r\\n`), `jrsdInsttNm`, `excInsttNm`, `trgetNm`, `reqstBeginEndDe` (one string:
  `20261001 ~ 20261231`, `2026-10-01 ~ 2026-12-31`, `추후 공지`, `상시 접수`, `예산 소진시까지`), `pblancUrl` (a
  path on the site), `hashtags` (the region is only here), `pldirSportRealmLclasCodeNm`, `creatPnttm`,
  `refrncNm`, plus `inqireCo`, `rceptEngnHmpgUrl`, `flpthNm`, `fileNm` on some; no region or industry field.
- `GET /sii/siia/selectSIIA200Detail.do` [pblancId]: the announcement page a `pblancUrl` points to (UTF-8 HTML).
- `GET /B552735/kisedKstartupService01/getAnnouncementInformation01` [serviceKey, page=1, perPage=10,
  returnType (JSON served whatever it says), cond[<field>::<OP>]]: 창업진흥원_K-Startup 사업공고 in the odcloud
  envelope `{"page", "perPage", "totalCount", "currentCount", "matchCount", "data"}`, newest `pbanc_sn` first.
  `pbanc_sn` is a JSON number; `pbanc_rcpt_bgng_dt`/`pbanc_rcpt_end_dt` are `YYYYMMDD` with the sentinels
  `99991231`/`29991231` for "no deadline"; `rcrt_prgs_yn` Y/N (announcements no longer recruiting are in the
  dataset: `cond[rcrt_prgs_yn::EQ]=Y` leaves them out).
- `GET /api/gov24/v3/serviceList` [serviceKey or header `Authorization: Infuser <key>`, page=1, perPage=10,
  cond[<field>::<OP>]]: 행정안전부_대한민국 공공서비스 정보 (정부24), odcloud envelope, Korean keys (`서비스ID`,
  `서비스명`, `서비스목적요약`, `지원대상`, `선정기준`, `지원내용`, `신청방법`, `신청기한` as prose, `상세조회URL`,
  `소관기관명` (where a local government appears, `서울특별시 성동구`), `소관기관코드`, `부서명`, `사용자구분`,
  `서비스분야`, `지원유형`, `전화문의`, `등록일시`, `수정일시` (`YYYYMMDDhhmmss`) and more), in the dataset's own
  order (the specification promises none; the fixture's order is kept, so a client must not rely on one).
- `GET /main/selectBbsNttList.do` [bbsNo=184, key=1473, pageIndex=1]: 서울특별시 성동구 고시/공고 board list,
  `BOARD_PAGE_SIZE` posts a page newest first, the pinned notice on top of every page, links relative
  (`./selectBbsNttView.do?key=1473&amp;bbsNo=184&amp;nttNo=…`); past the end only the pinned notice and a
  "등록된 게시물이 없습니다." row. Another bbsNo or key: HTTP 200 with an alert script, as such boards answer.
  `GET /main/selectBbsNttView.do` [nttNo]: a post. `GET /robots.txt`: allows the boards.

The odcloud conditions (both odcloud-style APIs): `cond[<field>::EQ|NEQ|LT|LTE|GT|GTE|LIKE]=value`, any number of
them, all applying (AND). Values compare as numbers when both sides are integers, else as text (`수정일시`
`YYYYMMDDhhmmss` compares correctly as text); LIKE is "contains". `totalCount` stays the whole dataset's,
`matchCount` counts what the conditions kept and is what paging must stop at. A condition on a field the data
does not have answers HTTP 400 `{"code": -2, "msg": ...}` (this server's choice, so a misspelt filter shows up in
tests rather than silently listing everything).

Quirks, each where the real service has it:

- data.go.kr gateway (the 중기부 and K-Startup paths): errors come as HTTP 200 with
  `<OpenAPI_ServiceResponse><cmmMsgHeader>…<returnReasonCode>N</returnReasonCode>…` whatever format was asked:
  30 (SERVICE_KEY_IS_NOT_REGISTERED_ERROR) for a wrong or missing `serviceKey`, 22
  (LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR) once `daily_quota` requests of a source were answered, 12
  (NO_OPENAPI_SERVICE_ERROR) for another path under `/1421000/` or `/B552735/`. (A JSON client such as K-Startup's
  therefore gets XML for these.)
- odcloud (정부24): a wrong or missing key gets HTTP 401 `{"code": -4, "msg": "등록되지 않은 인증키 입니다."}`.
- 기업마당: a wrong `crtfcKey` gets HTTP 200 `{"reqErr": "..."}` without `jsonArray`. NOT from the
  specification (which does not document its errors): this server's guess, to be checked against the real service.
- the board: pages are CP949 bytes (what EUC-KR-labelled boards really send) with
  `<meta http-equiv="Content-Type" content="text/html; charset=euc-kr">`; list pages send no charset in the HTTP
  header; a post with `http_charset: UTF-8` sends that wrong charset in its header.

Fixture data: `devstack/spec_data/<source>.yaml`, one file per source (10-25 items written like real announcements),
each item beside what the shipped definition must make of it (`expected`), or why it must be refused (`invalid`),
or why the shipped definition never asks for it (`not_listed`); see the files' headers. `SpecSources(sizes=
{"gov24": 10_000})` serves that many items of a source: the fixture's, then generated ones (`synthetic_items`),
each with its expected mapping too, for size tests and benchmarks.

Request log: every request is recorded (`RequestRecord`: path, query with the first value of each parameter,
status, time) before its answer is sent; `requests_for(path)` and `request_counts()` count them. `reset()` clears
the log and the quota counters.

Sources, as the shipped file names them: `SPEC_SOURCE_NAMES`; their paths: `SOURCE_PATHS`; the real origins
(scheme and host) their URLs and links are written against: `REAL_ORIGINS`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from xml.sax.saxutils import escape as xml_escape

import yaml

from aegis_pipeline.devstack.sample_sources import (
    BOARD_ENCODING,
    RequestRecord,
    _bizinfo_detail_page,
    _board_missing_post,
    _check_no_yaml_dates,
    _data_go_kr_envelope,
    _json_response,
    _not_found,
    _open_api_error,
    _positive_int,
    _Response,
    _SampleHTTPServer,
    _SampleRequestHandler,
    _xml_text,
)

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

SPEC_DATA_DIR = Path(__file__).with_name("spec_data")
SPEC_SOURCE_NAMES: tuple[str, ...] = ("mss_biz", "bizinfo", "kstartup", "gov24", "seongdong_notice")

MSS_PATH = "/1421000/mssBizService_v2/getbizList_v2"
BIZINFO_PATH = "/uss/rss/bizinfoApi.do"
BIZINFO_DETAIL_PATH = "/sii/siia/selectSIIA200Detail.do"
KSTARTUP_PATH = "/B552735/kisedKstartupService01/getAnnouncementInformation01"
GOV24_PATH = "/api/gov24/v3/serviceList"
BOARD_LIST_PATH = "/main/selectBbsNttList.do"
BOARD_VIEW_PATH = "/main/selectBbsNttView.do"
SOURCE_PATHS: Mapping[str, str] = {
    "mss_biz": MSS_PATH,
    "bizinfo": BIZINFO_PATH,
    "kstartup": KSTARTUP_PATH,
    "gov24": GOV24_PATH,
    "seongdong_notice": BOARD_LIST_PATH,
}
REAL_ORIGINS: Mapping[str, str] = {
    "mss_biz": "https://apis.data.go.kr",
    "bizinfo": "https://www.bizinfo.go.kr",
    "kstartup": "https://apis.data.go.kr",
    "gov24": "https://api.odcloud.kr",
    "seongdong_notice": "https://www.sd.go.kr",
}
ID_FIELDS: Mapping[str, str] = {
    "mss_biz": "itemId",
    "bizinfo": "pblancId",
    "kstartup": "pbanc_sn",
    "gov24": "서비스ID",
    "seongdong_notice": "nttNo",
}
# The data.go.kr gateway answers these paths' key and quota errors (path prefixes of its services).
_DATA_GO_KR_GATEWAY_PREFIXES = ("/1421000/", "/B552735/")
_GATEWAY_SOURCES = ("mss_biz", "kstartup")

DEFAULT_SERVICE_KEY = "spec-service-key"  # the data.go.kr key (중기부, K-Startup, 정부24)
DEFAULT_BIZINFO_KEY = "spec-bizinfo-key"
MSS_MAX_ROWS = 2000
BOARD_PAGE_SIZE = 10
BOARD_BBS_NO, BOARD_KEY = "184", "1473"

EXPECTED_FIELDS: tuple[str, ...] = (
    "external_id", "title", "issuing_organization", "target_region", "target_industry", "funding_type",
    "application_start_date", "application_end_date", "original_url", "content_includes",
)
_EXPECTED_DEFAULTS: Mapping[str, Any] = {"target_industry": [], "content_includes": []}
_ITEM_KEYS = frozenset({"served", "registered", "xml_cdata", "pinned", "http_charset", "expected", "invalid",
                        "not_listed", "quirks"})
_OPTION_KEYS = ("xml_cdata", "pinned", "http_charset")


# ---------------------------------------------------------------------------------------------------------
# Fixture items and their ground truth
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecItem:
    """One item of a source: `served` exactly as the API gives it, and what must become of it.

    `registered`: 중기부's registration date (YYYY-MM-DD), kept aside for its startDate/endDate filter.
    `options`: how it is served (`xml_cdata`, `pinned`, `http_charset`). Exactly one of `expected` (the record the
    shipped definition must produce: `EXPECTED_FIELDS`, dates as ISO text or None, URLs against `REAL_ORIGINS`),
    `invalid` ("field: why", refused with InvalidDataError) and `not_listed` (why the shipped definition never
    asks for it) is set.
    """

    source: str
    served: Mapping[str, Any]
    registered: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    expected: Mapping[str, Any] | None = None
    invalid: str | None = None
    not_listed: str | None = None
    quirks: tuple[str, ...] = ()
    synthetic: bool = False

    @property
    def external_id(self) -> str:
        return str(self.served[ID_FIELDS[self.source]])


def _item_from(source: str, raw: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> SpecItem:
    unknown = set(raw) - _ITEM_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    outcomes = [key for key in ("expected", "invalid", "not_listed") if raw.get(key) is not None]
    if len(outcomes) != 1:
        raise ValueError(f"{where}: give exactly one of expected, invalid, not_listed (got {outcomes or 'none'})")
    served = raw["served"]
    expected = None
    if raw.get("expected") is not None:
        expected = {**_EXPECTED_DEFAULTS, **defaults, "external_id": str(served[ID_FIELDS[source]]),
                    **raw["expected"]}
        unknown = set(expected) - set(EXPECTED_FIELDS)
        missing = set(EXPECTED_FIELDS) - set(expected)
        if unknown or missing:
            raise ValueError(f"{where}: expected has unknown {sorted(unknown)} / lacks {sorted(missing)}")
        if not all(isinstance(text, str) for text in expected["content_includes"]):
            raise ValueError(f"{where}: content_includes must be text (quote numbers)")
    return SpecItem(
        source=source, served=served, registered=raw.get("registered"),
        options={key: raw[key] for key in _OPTION_KEYS if key in raw},
        expected=expected, invalid=raw.get("invalid"), not_listed=raw.get("not_listed"),
        quirks=tuple(raw.get("quirks") or ()),
    )


@functools.cache
def spec_items(source: str) -> tuple[SpecItem, ...]:
    """The fixture items of `source` (one of `SPEC_SOURCE_NAMES`), in the file's order."""
    if source not in SPEC_SOURCE_NAMES:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(SPEC_SOURCE_NAMES)}")
    path = SPEC_DATA_DIR / f"{source}.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    _check_no_yaml_dates(document, path.name)
    defaults = document.get("expected_defaults") or {}
    items = tuple(_item_from(source, raw, defaults, f"{path.name} item {index}")
                  for index, raw in enumerate(document["items"], 1))
    ids = [item.external_id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path.name}: repeated ids")
    return items


# ---------------------------------------------------------------------------------------------------------
# Generated items, for size tests
# ---------------------------------------------------------------------------------------------------------

_PROGRAMS: tuple[tuple[str, str], ...] = (
    ("스마트공장 보급확산사업", "제조 중소기업의 스마트공장 구축 비용을 최대 4천만원까지 지원합니다."),
    ("수출바우처 참여기업", "해외 마케팅과 통번역, 해외 인증 비용을 바우처로 지원합니다."),
    ("청년 창업 사업화 지원", "청년 창업자에게 사업화 자금과 멘토링을 지원합니다."),
    ("소상공인 경영환경 개선", "소상공인 점포의 간판과 인테리어 개선 비용을 지원합니다."),
    ("중소기업 R&D 바우처", "연구 장비 활용과 기술 서비스 비용을 바우처로 지원합니다."),
    ("지역 일자리 창출 지원", "지역 청년을 채용한 기업에 인건비를 지원합니다."),
)
# (organisation name as 정부24 writes it, the region the shipped definition must find in it)
_GOV24_BODIES: tuple[tuple[str, list[str]], ...] = (
    ("서울특별시 마포구", ["서울특별시"]),
    ("고용노동부", []),
    ("경기도 성남시", ["경기도"]),
    ("부산광역시", ["부산광역시"]),
    ("전라남도 순천시", ["전라남도"]),
    ("중소벤처기업부", []),
)
_HASHTAG_REGIONS = ("서울", "부산", "경기", "전국", "대전", "경남")


def _synthetic_item(source: str, number: int) -> SpecItem:
    """The `number`-th generated item of `source` (1-based): valid, unique id, plain dates."""
    name, summary = _PROGRAMS[(number - 1) % len(_PROGRAMS)]
    title = f"2026년 {name} 공고 (제{number}차)"
    start = dt.date(2025, 1, 6) + dt.timedelta(days=number % 700)
    end = start + dt.timedelta(days=21)
    registered = start - dt.timedelta(days=7)
    expected: JsonDict = {
        **_EXPECTED_DEFAULTS, "title": title, "target_region": [], "funding_type": None,
        "application_start_date": start.isoformat(), "application_end_date": end.isoformat(),
        "content_includes": [summary],
    }
    served: JsonDict
    extra: JsonDict = {}
    if source == "mss_biz":
        item_id = str(2_000_000 + number)
        url = f"https://www.mss.go.kr/site/smba/ex/bbs/View.do?cbIdx=310&bcIdx={item_id}&parentSeq={item_id}"
        served = {
            "itemId": item_id, "title": title, "dataContents": f"<p>{summary}</p>",
            "applicationStartDate": start.isoformat(), "applicationEndDate": end.isoformat(), "viewUrl": url,
            "writerName": "", "writerPosition": "성장지원정책과", "writerPhone": "044-204-7300",
            "writerEmail": "", "fileName": "", "fileUrl": "",
        }
        expected.update(issuing_organization="중소벤처기업부", original_url=url)
        extra["registered"] = registered.isoformat()
    elif source == "bizinfo":
        item_id = f"PBLN_{500_000_000 + number:015d}"
        region = _HASHTAG_REGIONS[number % len(_HASHTAG_REGIONS)]
        path = f"{BIZINFO_DETAIL_PATH}?pblancId={item_id}"
        served = {
            "pblancId": item_id, "pblancNm": title, "bsnsSumryCn": f"&lt;p&gt;{summary}&lt;/p&gt;",
            "jrsdInsttNm": "중소벤처기업부", "excInsttNm": "중소벤처기업진흥공단", "trgetNm": "중소기업",
            "reqstBeginEndDe": f"{start:%Y%m%d} ~ {end:%Y%m%d}", "pblancUrl": path,
            "hashtags": f"2026,경영,{region},중소기업", "pldirSportRealmLclasCodeNm": "경영",
            "creatPnttm": f"{registered:%Y-%m-%d} 09:00:00", "refrncNm": "", "inqireCo": number,
        }
        expected.update(issuing_organization="중소벤처기업부", target_region=[region], funding_type="경영",
                        original_url=REAL_ORIGINS["bizinfo"] + path)
    elif source == "kstartup":
        item_id = str(300_000 + number)
        recruiting = number % 5 != 0  # every fifth one closed: the cond filter must leave it out
        url = f"https://www.k-startup.go.kr/web/contents/bizpbanc-ongoing.do?schM=view&pbancSn={item_id}"
        served = {
            "pbanc_sn": 300_000 + number, "biz_pbanc_nm": title, "pbanc_ctnt": summary,
            "pbanc_ntrp_nm": "창업진흥원", "sprv_inst": "공공기관", "supt_biz_clsfc": "사업화",
            "supt_regin": "전국", "aply_trgt": "일반기업", "pbanc_rcpt_bgng_dt": f"{start:%Y%m%d}",
            "pbanc_rcpt_end_dt": f"{end:%Y%m%d}", "rcrt_prgs_yn": "Y" if recruiting else "N",
            "detl_pg_url": url,
        }
        if not recruiting:
            return SpecItem(source, served, not_listed="rcrt_prgs_yn N", synthetic=True)
        expected.update(issuing_organization="창업진흥원", target_region=["전국"], funding_type="사업화",
                        original_url=url)
    elif source == "gov24":
        item_id = f"{900_000_000_000 + number}"
        body, regions = _GOV24_BODIES[number % len(_GOV24_BODIES)]
        url = f"https://www.gov.kr/portal/rcvfvrSvc/dtlEx/{item_id}"
        served = {
            "서비스ID": item_id, "지원유형": "현금", "서비스명": title, "서비스목적요약": summary,
            "지원대상": "중소기업", "선정기준": "", "지원내용": "", "신청방법": "온라인 신청",
            "신청기한": f"{start.year}.{start.month}.{start.day}.~{end.year}.{end.month}.{end.day}.",
            "상세조회URL": url, "접수기관": body, "전화문의": "", "소관기관코드": "0000000", "소관기관명": body,
            "부서명": "", "조회수": number, "소관기관유형": "", "사용자구분": "개인", "서비스분야": "고용·창업",
            "등록일시": f"{registered:%Y%m%d}090000", "수정일시": f"{start:%Y%m%d}090000",
        }
        expected.update(issuing_organization=body, target_region=regions, funding_type="현금", original_url=url)
    elif source == "seongdong_notice":
        item_id = str(600_000 + number)
        served = {
            "nttNo": 600_000 + number, "title": title, "department": "일자리정책과",
            "registered": registered.isoformat(), "views": number, "body_html": f"<p>{summary}</p>",
        }
        expected.update(
            issuing_organization="서울특별시 성동구", target_region=["서울특별시"],
            application_start_date=None, application_end_date=None,
            original_url=f"{REAL_ORIGINS['seongdong_notice']}{BOARD_VIEW_PATH}?key={BOARD_KEY}&bbsNo={BOARD_BBS_NO}"
                         f"&nttNo={item_id}",
        )
    else:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(SPEC_SOURCE_NAMES)}")
    expected["external_id"] = item_id
    return SpecItem(source, served, registered=extra.get("registered"), expected=expected, synthetic=True)


def synthetic_items(source: str, count: int, *, first: int = 1) -> tuple[SpecItem, ...]:
    """`count` generated items of `source`, numbered from `first`: valid, each with its expected mapping (K-Startup:
    every fifth one not recruiting, `not_listed`)."""
    return tuple(_synthetic_item(source, number) for number in range(first, first + count))


def _sized(source: str, size: int | None) -> tuple[SpecItem, ...]:
    fixture = spec_items(source)
    if size is None:
        return fixture
    if size < 0:
        raise ValueError(f"size of {source} must be zero or more")
    if size <= len(fixture):
        return fixture[:size]
    return fixture + synthetic_items(source, size - len(fixture))


# ---------------------------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------------------------


def _mss_page(items: list[SpecItem], page_no: int, num_of_rows: int, total_count: int) -> _Response:
    rendered: list[str] = []
    for item in items:
        cdata = bool(item.options.get("xml_cdata"))
        rendered.append("<item>" + "".join(
            f"<{name}/>" if value == "" else f"<{name}>{_xml_text(value, cdata)}</{name}>"
            for name, value in item.served.items() if value is not None
        ) + "</item>")
    items_xml = f"<items>{''.join(rendered)}</items>" if rendered else "<items/>"
    body_xml = (f"<body>{items_xml}<numOfRows>{num_of_rows}</numOfRows><pageNo>{page_no}</pageNo>"
                f"<totalCount>{total_count}</totalCount></body>")
    return _data_go_kr_envelope("00", "NORMAL SERVICE.", body_xml)


def _bizinfo_rss(items: list[SpecItem], base_url: str) -> _Response:
    entries = "".join(
        "<item>"
        f"<title>{xml_escape(str(item.served['pblancNm']))}</title>"
        f"<link>{xml_escape(base_url + str(item.served['pblancUrl']))}</link>"
        f"<description>{xml_escape(str(item.served['bsnsSumryCn']))}</description>"
        f"<author>{xml_escape(str(item.served['jrsdInsttNm']))}</author>"
        f"<pubDate>{xml_escape(str(item.served['creatPnttm']))}</pubDate>"
        "</item>"
        for item in items
    )
    payload = ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>기업마당 지원사업정보</title>'
               f"<link>{xml_escape(base_url)}</link><description>기업마당 지원사업 공고</description>{entries}"
               "</channel></rss>")
    return _Response(HTTPStatus.OK, payload.encode("utf-8"), "application/rss+xml;charset=UTF-8")


_COND_PARAMETER = re.compile(r"cond\[(?P<field>.+)::(?P<op>[A-Z]+)\]")
_COND_OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "LIKE"}


class _BadCondition(ValueError):
    pass


def _conditions(query: Mapping[str, str], fields: set[str]) -> list[tuple[str, str, str]]:
    conditions = []
    for name, value in query.items():
        if not name.startswith("cond["):
            continue
        match = _COND_PARAMETER.fullmatch(name)
        if match is None or match["op"] not in _COND_OPERATORS:
            raise _BadCondition(f"지원하지 않는 조건입니다: {name}")
        if match["field"] not in fields:
            raise _BadCondition(f"조건에 사용할 수 없는 컬럼입니다: {match['field']}")
        conditions.append((match["field"], match["op"], value))
    return conditions


def _compared(left: str, right: str) -> int:
    if re.fullmatch(r"-?[0-9]+", left) and re.fullmatch(r"-?[0-9]+", right):
        a: int | str = int(left)
        b: int | str = int(right)
    else:
        a, b = left, right
    return (a > b) - (a < b)  # type: ignore[operator]


def _meets(value: Any, op: str, wanted: str) -> bool:
    if value is None:
        return False
    text = str(value)
    if op == "LIKE":
        return wanted in text
    order = _compared(text, wanted)
    return {"EQ": order == 0, "NEQ": order != 0, "LT": order < 0, "LTE": order <= 0, "GT": order > 0,
            "GTE": order >= 0}[op]


def _odcloud_page(items: list[SpecItem], query: Mapping[str, str]) -> _Response:
    try:
        page = _positive_int(query, "page", 1)
        per_page = _positive_int(query, "perPage", 10)
    except ValueError as error:
        return _json_response({"code": -1, "msg": str(error)}, HTTPStatus.BAD_REQUEST)
    fields = {name for item in items for name in item.served}
    try:
        conditions = _conditions(query, fields)
    except _BadCondition as error:
        return _json_response({"code": -2, "msg": str(error)}, HTTPStatus.BAD_REQUEST)
    matching = [item for item in items
                if all(_meets(item.served.get(name), op, value) for name, op, value in conditions)]
    data = [dict(item.served) for item in matching[(page - 1) * per_page : page * per_page]]
    return _json_response({"page": page, "perPage": per_page, "totalCount": len(items), "currentCount": len(data),
                           "matchCount": len(matching), "data": data})


_BOARD_HEAD = """<!DOCTYPE html>
<html lang="ko">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=euc-kr">
<title>{title} | 고시/공고 | 성동구청</title>
<script type="text/javascript" src="/common/js/jquery-3.6.0.min.js"></script>
</head>
<body>
<div id="contents" class="p-wrap bbs bbs__{kind}">
<h3 class="p-title">고시/공고</h3>
"""


def _board_href(post: Mapping[str, Any]) -> str:
    return f"./selectBbsNttView.do?key={BOARD_KEY}&amp;bbsNo={BOARD_BBS_NO}&amp;nttNo={post['nttNo']}"


def _board_row(item: SpecItem, number_cell: str) -> str:
    post = item.served
    row_class = ' class="p-notice"' if item.options.get("pinned") else ""
    return (f"<tr{row_class}><td class=\"p-num\">{number_cell}</td>"
            f'<td class="p-subject"><a href="{_board_href(post)}">{post.get("list_title") or post["title"]}</a></td>'
            f'<td class="p-author">{post["department"]}</td><td class="p-date">{post["registered"]}</td>'
            f'<td class="p-hit">{post["views"]}</td></tr>')


def _board_list(items: list[SpecItem], page: int) -> _Response:
    pinned = [item for item in items if item.options.get("pinned")]
    regular = [item for item in items if not item.options.get("pinned")]
    last_page = max(1, -(-len(regular) // BOARD_PAGE_SIZE))
    on_page = regular[(page - 1) * BOARD_PAGE_SIZE : page * BOARD_PAGE_SIZE]
    rows = [_board_row(item, "공지") for item in pinned]
    rows += [_board_row(item, str(len(regular) - (page - 1) * BOARD_PAGE_SIZE - offset))
             for offset, item in enumerate(on_page)]
    if not on_page:
        rows.append('<tr><td colspan="5" class="p-empty">등록된 게시물이 없습니다.</td></tr>')
    pager = " ".join(f'<strong class="p-page__link active">{number}</strong>' if number == page else
                     f'<a href="?bbsNo={BOARD_BBS_NO}&amp;key={BOARD_KEY}&amp;pageIndex={number}" '
                     f'class="p-page__link">{number}</a>' for number in range(1, last_page + 1))
    document = (_BOARD_HEAD.format(title="목록", kind="list")
                + f'<p class="p-total">전체 <strong>{len(regular)}</strong>건 [{page}/{last_page} 페이지]</p>\n'
                + '<table class="p-table simple">\n'
                + "<caption>고시/공고 목록: 번호, 제목, 작성자, 등록일, 조회수</caption>\n"
                + "<thead><tr><th>번호</th><th>제목</th><th>작성자</th><th>등록일</th><th>조회수</th></tr></thead>\n"
                + "<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n"
                + f'<div class="p-pagination">{pager}</div>\n</div>\n</body>\n</html>\n')
    # No charset in the header: the page's meta tag is the only declaration.
    return _Response(HTTPStatus.OK, document.encode(BOARD_ENCODING), "text/html")


def _board_view(item: SpecItem) -> _Response:
    post = item.served
    document = (_BOARD_HEAD.format(title=post["title"], kind="view")
                + '<table class="p-table p-table--view">\n<caption>고시/공고 상세보기</caption>\n'
                + '<thead><tr><th colspan="4" class="p-table__subject">'
                + f'<span class="p-table__subject_text">{post["title"]}</span></th></tr></thead>\n<tbody>\n'
                + f'<tr><th scope="row">작성자</th><td class="p-author">{post["department"]}</td>'
                + f'<th scope="row">등록일</th><td>{post["registered"]}</td></tr>\n'
                + f'<tr><th scope="row">조회수</th><td>{post["views"]}</td>'
                + '<th scope="row">첨부파일</th><td>없음</td></tr>\n'
                + f'<tr><td colspan="4"><div class="p-table__content">\n{post["body_html"]}\n</div></td></tr>\n'
                + "</tbody>\n</table>\n"
                + f'<div class="p-button"><a href="./selectBbsNttList.do?bbsNo={BOARD_BBS_NO}&amp;key={BOARD_KEY}" '
                + 'class="p-button list">목록</a></div>\n</div>\n</body>\n</html>\n')
    charset = item.options.get("http_charset")
    return _Response(HTTPStatus.OK, document.encode(BOARD_ENCODING),
                     f"text/html;charset={charset}" if charset else "text/html")


def _iso_date_or_none(value: str | None) -> dt.date | None:
    """A `YYYY-MM-DD` parameter; None when absent; ValueError when malformed."""
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError(value)
    return dt.date.fromisoformat(value)


# ---------------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------------


class SpecSources:
    """A local HTTP server reproducing the five real sources (module docstring: endpoints and quirks).

    host: interface to bind, default "127.0.0.1". port: default 0, a free port. service_key: the data.go.kr key
    the 중기부, K-Startup and 정부24 paths accept, default `DEFAULT_SERVICE_KEY`. bizinfo_key: the 기업마당
    `crtfcKey`, default `DEFAULT_BIZINFO_KEY`. sizes: source -> how many items it serves (its fixture's first ones,
    or all of them and generated ones after), default the fixture. daily_quota: source -> requests answered before
    the data.go.kr gateway says code 22 (중기부 and K-Startup only), default none.

    Guarantees: every request is logged before its answer is sent; the items never change while serving.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, service_key: str = DEFAULT_SERVICE_KEY,
                 bizinfo_key: str = DEFAULT_BIZINFO_KEY, sizes: Mapping[str, int] | None = None,
                 daily_quota: Mapping[str, int] | None = None) -> None:
        sizes = dict(sizes or {})
        unknown = (set(sizes) - set(SPEC_SOURCE_NAMES)) | (set(daily_quota or {}) - set(_GATEWAY_SOURCES))
        if unknown:
            raise ValueError(f"unknown or unsupported sources {sorted(unknown)}")
        self.host, self.port = host, port
        self.service_key, self.bizinfo_key = service_key, bizinfo_key
        self.daily_quota = dict(daily_quota or {})
        self._items = {source: _sized(source, sizes.get(source)) for source in SPEC_SOURCE_NAMES}
        self._served_order = {source: self._ordered(source) for source in SPEC_SOURCE_NAMES}
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._answered: Counter[str] = Counter()
        self._server: _SampleHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._routes: dict[str, Callable[[dict[str, str], dict[str, str]], _Response]] = {
            MSS_PATH: self._serve_mss,
            BIZINFO_PATH: self._serve_bizinfo,
            BIZINFO_DETAIL_PATH: self._serve_bizinfo_detail,
            KSTARTUP_PATH: self._serve_kstartup,
            GOV24_PATH: self._serve_gov24,
            BOARD_LIST_PATH: self._serve_board_list,
            BOARD_VIEW_PATH: self._serve_board_view,
            "/robots.txt": self._serve_robots,
        }

    def _ordered(self, source: str) -> list[SpecItem]:
        items = list(self._items[source])
        if source == "mss_biz":  # newest registration first
            return sorted(items, key=lambda item: (item.registered or "", item.external_id), reverse=True)
        if source == "bizinfo":  # newest creatPnttm first
            return sorted(items, key=lambda item: str(item.served["creatPnttm"]), reverse=True)
        if source in ("kstartup", "seongdong_notice"):  # newest (highest) id first
            return sorted(items, key=lambda item: int(item.served[ID_FIELDS[source]]), reverse=True)
        return items  # 정부24: the dataset's own order

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> str:
        """Start serving in a daemon thread; returns the base URL, e.g. "http://127.0.0.1:41234"."""
        if self._server is not None:
            raise RuntimeError("SpecSources is already running")
        server = _SampleHTTPServer((self.host, self.port), _SampleRequestHandler)
        server.sources = self  # type: ignore[assignment]  # the handler asks it for _route and _log_request
        self._server = server
        bound_host, bound_port = server.server_address[:2]
        self._base_url = f"http://{bound_host}:{bound_port}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="spec-sources", daemon=True)
        self._thread.start()
        log.info("spec_sources.started base_url=%s", self._base_url)
        return self._base_url

    def stop(self) -> None:
        """Stop serving and close the port; a no-op when not running."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None
        log.info("spec_sources.stopped base_url=%s", self._base_url)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The base URL, without a trailing slash; set by start() and kept after stop()."""
        if self._base_url is None:
            raise RuntimeError("SpecSources has not been started")
        return self._base_url

    def url(self, path: str) -> str:
        """Absolute URL of `path` on this server."""
        return self.base_url + path

    # -- ground truth ---------------------------------------------------------------------------------

    def items(self, source: str) -> tuple[SpecItem, ...]:
        """Every item `source` holds (fixture, then generated), in the fixture's order, not the served one."""
        return self._items[source]

    def expected(self, source: str) -> list[Mapping[str, Any]]:
        """What the shipped definition must produce from `source`: one mapping per item that has one."""
        return [item.expected for item in self._items[source] if item.expected is not None]

    def invalid(self, source: str) -> dict[str, str]:
        """external_id -> "field: why" for the items that must be refused."""
        return {item.external_id: item.invalid for item in self._items[source] if item.invalid is not None}

    def not_listed(self, source: str) -> set[str]:
        """The ids the shipped definition never asks for (K-Startup's closed announcements)."""
        return {item.external_id for item in self._items[source] if item.not_listed is not None}

    # -- request log ----------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[RequestRecord]:
        """The logged requests of exactly `path`."""
        return [record for record in self.requests if record.path == path]

    def request_counts(self) -> dict[str, int]:
        """Requests per path."""
        return dict(Counter(record.path for record in self.requests))

    def reset(self) -> None:
        """Forget the request log and the quota counts."""
        with self._lock:
            self._requests.clear()
            self._answered.clear()

    # -- serving (called by sample_sources' request handler) ------------------------------------------

    def _log_request(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> _Response:
        handler = self._routes.get(path)
        if handler is not None:
            return handler(query, headers)
        if path.startswith(_DATA_GO_KR_GATEWAY_PREFIXES):
            return _open_api_error("NO_OPENAPI_SERVICE_ERROR", 12)
        return _not_found()

    def _gateway_refusal(self, source: str, query: Mapping[str, str]) -> _Response | None:
        """The data.go.kr gateway's HTTP-200 error envelope for a wrong key or a spent quota; None to go on."""
        if query.get("serviceKey") != self.service_key:
            return _open_api_error("SERVICE_KEY_IS_NOT_REGISTERED_ERROR", 30)
        with self._lock:
            self._answered[source] += 1
            answered = self._answered[source]
        quota = self.daily_quota.get(source)
        if quota is not None and answered > quota:
            return _open_api_error("LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR", 22)
        return None

    def _serve_mss(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        refusal = self._gateway_refusal("mss_biz", query)
        if refusal is not None:
            return refusal
        try:
            page_no = _positive_int(query, "pageNo", 1)
            num_of_rows = min(_positive_int(query, "numOfRows", 10), MSS_MAX_ROWS)
            start, end = _iso_date_or_none(query.get("startDate")), _iso_date_or_none(query.get("endDate"))
        except ValueError:
            return _data_go_kr_envelope("10", "INVALID_REQUEST_PARAMETER_ERROR.", "")
        kept = [item for item in self._served_order["mss_biz"]
                if (start is None or dt.date.fromisoformat(item.registered or "0001-01-01") >= start)
                and (end is None or dt.date.fromisoformat(item.registered or "9999-12-31") <= end)]
        page = kept[(page_no - 1) * num_of_rows : page_no * num_of_rows]
        return _mss_page(page, page_no, num_of_rows, len(kept))

    def _serve_bizinfo(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        if query.get("crtfcKey") != self.bizinfo_key:
            return _json_response({"reqErr": "인증키가 유효하지 않습니다."})  # a guess: see the module docstring
        try:
            page_index = _positive_int(query, "pageIndex", 1)
            page_unit = _positive_int(query, "pageUnit", 10)
        except ValueError as error:
            return _json_response({"reqErr": str(error)})
        items = self._served_order["bizinfo"][(page_index - 1) * page_unit : page_index * page_unit]
        if query.get("dataType", "rss").lower() != "json":
            return _bizinfo_rss(items, self.base_url)
        return _json_response({"jsonArray": [dict(item.served) for item in items]})

    def _serve_bizinfo_detail(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        for item in self._items["bizinfo"]:
            if item.external_id == query.get("pblancId"):
                return _bizinfo_detail_page(item.served)
        return _not_found()

    def _serve_kstartup(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        refusal = self._gateway_refusal("kstartup", query)
        if refusal is not None:
            return refusal
        return _odcloud_page(self._served_order["kstartup"], query)

    def _serve_gov24(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        header_key = headers.get("Authorization", "").removeprefix("Infuser ").strip()
        if self.service_key not in (query.get("serviceKey"), header_key):
            return _json_response({"code": -4, "msg": "등록되지 않은 인증키 입니다."}, HTTPStatus.UNAUTHORIZED)
        return _odcloud_page(self._served_order["gov24"], query)

    def _serve_board_list(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        if query.get("bbsNo") != BOARD_BBS_NO or query.get("key") != BOARD_KEY:
            return _board_missing_post()
        try:
            page = _positive_int(query, "pageIndex", 1)
        except ValueError:
            page = 1  # boards fall back to the first page
        return _board_list(self._served_order["seongdong_notice"], page)

    def _serve_board_view(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        for item in self._items["seongdong_notice"]:
            if item.external_id == query.get("nttNo"):
                return _board_view(item)
        return _board_missing_post()

    def _serve_robots(self, query: dict[str, str], headers: dict[str, str]) -> _Response:
        return _Response(HTTPStatus.OK, b"User-agent: *\nDisallow: /mngr/\nAllow: /\n", "text/plain")


def _size_argument(text: str) -> tuple[str, int]:
    source, _, count = text.partition("=")
    if source not in SPEC_SOURCE_NAMES or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected SOURCE=N with SOURCE one of {', '.join(SPEC_SOURCE_NAMES)}")
    return source, int(count)


def main() -> None:
    """`python -m aegis_pipeline.devstack.spec_sources [--host H] [--port P] [--size gov24=10000]`: serve until
    Ctrl-C; prints the base URL and each source's path."""
    parser = argparse.ArgumentParser(description="Serve the five real sources as their specifications describe.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    parser.add_argument("--service-key", default=DEFAULT_SERVICE_KEY, help="accepted data.go.kr serviceKey")
    parser.add_argument("--bizinfo-key", default=DEFAULT_BIZINFO_KEY, help="accepted 기업마당 crtfcKey")
    parser.add_argument("--size", type=_size_argument, action="append", default=[],
                        help="SOURCE=N: serve N items of SOURCE (repeatable)")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sources = SpecSources(arguments.host, arguments.port, service_key=arguments.service_key,
                          bizinfo_key=arguments.bizinfo_key, sizes=dict(arguments.size))
    base_url = sources.start()
    print(base_url, flush=True)
    for source, path in SOURCE_PATHS.items():
        print(f"  {source}: {base_url}{path}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sources.stop()


if __name__ == "__main__":
    main()
