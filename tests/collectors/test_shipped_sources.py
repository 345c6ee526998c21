"""Contract tests of THE SHIPPED sources file (helm/aegis-data-pipeline/files/sources.yaml) against
devstack/spec_sources.py, which serves the five real APIs at their real paths as their specifications describe them.

The file is loaded as deployed (`load_sources`-style validation, keys from the environment), only each `url`'s
scheme and host are pointed at the local server (and the board's politeness delay set to 0), then every source is
read through the collector's own code (`devstack.source_reading.read_source`: the same listings, pagination, HTTP
client, envelope checks, board crawler as `collect_source`) and every item mapped with
`collectors.mapping.build_record`. Each fixture item must come out exactly as its expected mapping says, ill-formed
ones refused with InvalidDataError, K-Startup's closed announcements never asked for. A wrong path in the file is
caught by the same check.

Pure HTTP and parsing: no Kafka, PostgreSQL or Redis.
"""

from __future__ import annotations

import copy
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from aegis_pipeline.collectors.definitions import SourceDefinition, parse_sources
from aegis_pipeline.collectors.incremental import Checkpoint
from aegis_pipeline.collectors.parsing.dates import KST
from aegis_pipeline.common.errors import RateLimitedError, SourceConfigError
from aegis_pipeline.devstack.source_reading import Collected, read_source
from aegis_pipeline.devstack.spec_sources import (
    BIZINFO_PATH,
    BOARD_LIST_PATH,
    BOARD_VIEW_PATH,
    DEFAULT_BIZINFO_KEY,
    DEFAULT_SERVICE_KEY,
    GOV24_PATH,
    KSTARTUP_PATH,
    MSS_PATH,
    REAL_ORIGINS,
    SOURCE_PATHS,
    SPEC_SOURCE_NAMES,
    SpecSources,
)
from aegis_pipeline.domain.records import RawPolicyData

SHIPPED_FILE = Path(__file__).parents[2] / "helm" / "aegis-data-pipeline" / "files" / "sources.yaml"
ENVIRONMENT = {"DATA_GO_KR_SERVICE_KEY": DEFAULT_SERVICE_KEY, "BIZINFO_API_KEY": DEFAULT_BIZINFO_KEY}
# What must never be left in a mapped title or content: markup, entities, CDATA.
LEFTOVER_MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]*>|&(?:[a-zA-Z]+|#[0-9]+);|<!\[CDATA\[")
COMPARED_FIELDS = ("title", "issuing_organization", "target_region", "target_industry", "funding_type",
                   "application_start_date", "application_end_date", "original_url")


def shipped_document() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED_FILE.read_text(encoding="utf-8"))


def pointed_at(document: dict[str, Any], base_url: str,
               environment: dict[str, str] | None = None) -> dict[str, SourceDefinition]:
    """The file's sources with each url's scheme and host replaced by `base_url` (path and query kept) and the
    board's politeness delay at 0; validated as the file is when deployed."""
    document = copy.deepcopy(document)
    for entry in document["sources"]:
        parts = urlsplit(entry["url"])
        entry["url"] = base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        if "html" in entry:
            entry["html"]["download_delay_seconds"] = 0
    parsed = parse_sources(document, ENVIRONMENT if environment is None else environment, origin=str(SHIPPED_FILE))
    return {source.name: source for source in parsed.sources}


def _localised(url: str | None, source: str, base_url: str) -> str | None:
    # Links relative to the source (bizinfo pblancUrl, the board's posts) resolve against the local server.
    real = REAL_ORIGINS[source]
    return base_url + url[len(real):] if url is not None and url.startswith(real + "/") else url


def _actual(record: RawPolicyData) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in COMPARED_FIELDS}
    for name in ("application_start_date", "application_end_date"):
        values[name] = values[name].isoformat() if values[name] else None
    return values


def contract_problems(server: SpecSources, source: str, collected: Collected) -> list[str]:
    """Every way `collected` differs from what the fixture says the shipped definition must produce."""
    problems: list[str] = []
    for expected in server.expected(source):
        external_id = expected["external_id"]
        record = collected.records.get(external_id)
        if record is None:
            refusal = collected.refused.get(external_id)
            problems.append(f"{source}:{external_id}: no valid record ({refusal or 'never fetched'})")
            continue
        want = {name: expected[name] for name in COMPARED_FIELDS}
        want["original_url"] = _localised(want["original_url"], source, server.base_url)
        actual = _actual(record)
        problems.extend(f"{source}:{external_id}: {name} is {actual[name]!r}, expected {want[name]!r}"
                        for name in COMPARED_FIELDS if actual[name] != want[name])
        problems.extend(f"{source}:{external_id}: content lacks {text!r}"
                        for text in expected["content_includes"] if text not in record.content)
        for name in ("title", "content"):
            if LEFTOVER_MARKUP.search(getattr(record, name)):
                problems.append(f"{source}:{external_id}: {name} keeps markup: {getattr(record, name)[:120]!r}")
    for external_id, reason in server.invalid(source).items():
        refusal = collected.refused.get(external_id)
        wrong_field = reason.split(":")[0]
        if refusal is None:
            problems.append(f"{source}:{external_id}: should be refused ({reason}), was "
                            f"{'accepted' if external_id in collected.records else 'never fetched'}")
        elif not any(problem.startswith(wrong_field) for problem in refusal.details["field_errors"]):
            problems.append(f"{source}:{external_id}: refused for {refusal.details['field_errors']}, not {reason}")
    problems.extend(f"{source}:{external_id}: fetched, but the definition must never ask for it"
                    for external_id in server.not_listed(source) & set(collected.fetched_ids))
    repeated = {external_id for external_id in collected.fetched_ids if collected.fetched_ids.count(external_id) > 1}
    problems.extend(f"{source}:{external_id}: fetched more than once" for external_id in sorted(repeated))
    return problems


@pytest.fixture(scope="module")
def server() -> Any:
    with SpecSources() as running:
        yield running


@pytest.fixture
def spec(server: SpecSources) -> SpecSources:
    server.reset()
    return server


# --- the file as shipped ---------------------------------------------------------------------------------------


def test_the_shipped_file_names_the_real_services_and_only_the_known_keys() -> None:
    document = shipped_document()
    sources = {entry["name"]: entry for entry in document["sources"]}
    assert set(sources) == set(SPEC_SOURCE_NAMES)
    for name, entry in sources.items():
        parts = urlsplit(entry["url"])
        assert (f"{parts.scheme}://{parts.netloc}", parts.path) == (REAL_ORIGINS[name], SOURCE_PATHS[name]), name
    assert set(re.findall(r"\$\{(\w+)\}", SHIPPED_FILE.read_text(encoding="utf-8"))) == set(ENVIRONMENT)


@pytest.mark.parametrize("source", SPEC_SOURCE_NAMES)
async def test_the_shipped_definition_maps_every_item_as_its_specification_says(spec: SpecSources,
                                                                                  source: str) -> None:
    definition = pointed_at(shipped_document(), spec.base_url)[source]
    collected = await read_source(definition)
    assert contract_problems(spec, source, collected) == []
    assert len(collected.records) == len(spec.expected(source)) > 0
    assert set(collected.refused) == set(spec.invalid(source))


async def test_kstartup_asks_only_for_what_is_recruiting(spec: SpecSources) -> None:
    definition = pointed_at(shipped_document(), spec.base_url)["kstartup"]
    collected = await read_source(definition)
    assert spec.not_listed("kstartup") and not spec.not_listed("kstartup") & set(collected.fetched_ids)
    (request,) = spec.requests_for(KSTARTUP_PATH)
    assert request.query["cond[rcrt_prgs_yn::EQ]"] == "Y"
    assert {record.raw_data["rcrt_prgs_yn"] for record in collected.records.values()} == {"Y"}


# A wrong path in the file (a field the API does not return) must be caught by the same check.
WRONG_PATHS = [
    ("bizinfo", "title", {"path": "pblancNmX", "parser": "text"}, "title"),
    ("bizinfo", "target_region", {"path": "areaNm", "parser": "list"}, "target_region"),
    ("mss_biz", "original_url", {"path": "detailUrl", "parser": "url"}, "original_url"),
    ("kstartup", "application_end_date", {"path": "pbanc_rcpt_end_dtX", "parser": "date"}, "application_end_date"),
    ("gov24", "issuing_organization", {"path": "소관기관", "parser": "strip"}, "issuing_organization"),
    ("gov24", "application_end_date", {"path": "신청기한", "parser": "date_range_end"}, "application_end_date"),
    ("seongdong_notice", "content", {"path": "bodyX", "parser": "text"}, "content"),
]


@pytest.mark.parametrize(("source", "record_field", "mapping", "reported"), WRONG_PATHS,
                         ids=[f"{case[0]}-{case[1]}-{case[2]['path']}" for case in WRONG_PATHS])
async def test_a_wrong_path_in_the_file_is_reported(spec: SpecSources, source: str, record_field: str,
                                                    mapping: dict[str, str], reported: str) -> None:
    document = shipped_document()
    entry = next(entry for entry in document["sources"] if entry["name"] == source)
    entry["fields"][record_field] = mapping
    collected = await read_source(pointed_at(document, spec.base_url)[source])
    problems = contract_problems(spec, source, collected)
    assert problems, f"changing {source}.{record_field} to {mapping} went unnoticed"
    assert all(reported in problem or "no valid record" in problem for problem in problems), problems[:5]


# --- paging, as each API pages ---------------------------------------------------------------------------------


def with_page_size(document: dict[str, Any], source: str, page_size: int, **pagination: Any) -> dict[str, Any]:
    document = copy.deepcopy(document)
    entry = next(entry for entry in document["sources"] if entry["name"] == source)
    entry["pagination"] = {**entry["pagination"], "page_size": page_size, **pagination}
    return document


# (source, page size, requests the listing takes): 중기부 20 items (its total count given), 기업마당 19 (no total:
# a full last page costs one more, empty, request), K-Startup 13 recruiting of 17 (matchCount), 정부24 17.
PAGING = [
    ("mss_biz", 19, 2),   # 19, then a page of one <item>
    ("mss_biz", 10, 2),   # 10, 10: totalCount reached
    ("bizinfo", 10, 2),   # 10, 9 (short)
    ("bizinfo", 19, 2),   # 19, then an empty page
    ("kstartup", 13, 1),  # 13 = matchCount: done
    ("kstartup", 5, 3),   # 5, 5, 3
    ("gov24", 6, 3),      # 6, 6, 5 (short)
    ("gov24", 17, 1),     # 17 = matchCount: done
]


@pytest.mark.parametrize(("source", "page_size", "requests"), PAGING,
                         ids=[f"{source}-{size}" for source, size, _ in PAGING])
async def test_small_pages_read_the_same_records_in_as_many_requests_as_the_api_needs(
        spec: SpecSources, source: str, page_size: int, requests: int) -> None:
    definition = pointed_at(with_page_size(shipped_document(), source, page_size), spec.base_url)[source]
    collected = await read_source(definition)
    assert contract_problems(spec, source, collected) == []
    assert spec.request_counts() == {SOURCE_PATHS[source]: requests}


def test_a_page_of_one_item_is_one_xml_item_and_still_read(spec: SpecSources) -> None:
    answer = httpx.get(spec.url(MSS_PATH), params={"serviceKey": DEFAULT_SERVICE_KEY, "pageNo": 2,
                                                    "numOfRows": 19})
    assert answer.text.count("<item>") == 1 and "<totalCount>20</totalCount>" in answer.text


async def test_kstartup_stops_at_matchcount_where_totalcount_would_ask_one_page_more(spec: SpecSources) -> None:
    by_total = with_page_size(shipped_document(), "kstartup", 13, total_count_path="totalCount")
    collected = await read_source(pointed_at(by_total, spec.base_url)["kstartup"])
    assert contract_problems(spec, "kstartup", collected) == []
    assert len(spec.requests_for(KSTARTUP_PATH)) == 2  # the shipped matchCount takes 1 (PAGING above)


async def test_the_board_is_walked_to_its_end_and_each_post_read_once(spec: SpecSources) -> None:
    await read_source(pointed_at(shipped_document(), spec.base_url)["seongdong_notice"])
    list_pages = [int(request.query["pageIndex"]) for request in spec.requests_for(BOARD_LIST_PATH)]
    assert list_pages == [1, 2, 3]  # page 3 shows only the pinned notice: the end
    posts = [request.query["nttNo"] for request in spec.requests_for(BOARD_VIEW_PATH)]
    assert sorted(posts) == sorted(item.external_id for item in spec.items("seongdong_notice"))


# --- incremental collection, as each API allows it ----------------------------------------------------------------


def _listed_since(since: datetime) -> Checkpoint:
    """A checkpoint whose last complete incremental pass started at `since`, the full listing done today."""
    return Checkpoint(cursor=since.isoformat(), full_listing_completed_at=datetime.now(UTC))


async def test_mss_asks_for_the_registration_window_since_the_last_run_less_its_look_back(spec: SpecSources) -> None:
    definition = pointed_at(shipped_document(), spec.base_url)["mss_biz"]
    collected = await read_source(definition, _listed_since(datetime(2026, 3, 4, 9, tzinfo=KST)))  # 3 days' look-back
    [request] = spec.requests_for(MSS_PATH)
    today = datetime.now(KST).date().isoformat()
    assert (request.query["startDate"], request.query["endDate"]) == ("2026-03-01", today)
    registered_since = {item.external_id for item in spec.items("mss_biz") if item.registered >= "2026-03-01"}
    assert set(collected.fetched_ids) == registered_since
    assert 0 < len(registered_since) < len(spec.items("mss_biz"))


async def test_gov24_asks_only_for_services_changed_since_the_last_run(spec: SpecSources) -> None:
    definition = pointed_at(shipped_document(), spec.base_url)["gov24"]
    collected = await read_source(definition, _listed_since(datetime(2026, 3, 2, 0, 0, 0, tzinfo=KST)))  # 1 day back
    [request] = spec.requests_for(GOV24_PATH)
    assert request.query["cond[수정일시::GTE]"] == "20260301000000"
    changed_since = {item.external_id for item in spec.items("gov24") if item.served["수정일시"] >= "20260301000000"}
    assert set(collected.fetched_ids) == changed_since
    assert 0 < len(changed_since) < len(spec.items("gov24"))


async def test_bizinfo_pages_newest_first_until_a_page_brings_nothing_new(spec: SpecSources) -> None:
    definition = pointed_at(with_page_size(shipped_document(), "bizinfo", 5), spec.base_url)["bizinfo"]
    first = await read_source(definition, Checkpoint())  # never listed: the full listing alone, to its end
    everything = set(first.fetched_ids)
    assert everything == {item.external_id for item in spec.items("bizinfo")}
    assert len(spec.requests_for(BIZINFO_PATH)) == 4  # 5, 5, 5, 4 (short)

    spec.reset()
    newest_two = first.fetched_ids[:2]
    older = frozenset(everything - set(newest_two))
    again = await read_source(definition, _listed_since(datetime.now(UTC)), seen=older)
    assert again.fetched_ids[:2] == newest_two
    assert [request.query["pageIndex"] for request in spec.requests_for(BIZINFO_PATH)] == ["1", "2"]

    spec.reset()
    await read_source(definition, _listed_since(datetime.now(UTC)), seen=frozenset(everything))
    assert len(spec.requests_for(BIZINFO_PATH)) == 1  # nothing new on page 1: a steady run is one request


# --- the documented quirks and errors, through the collector -----------------------------------------------------


async def test_a_wrong_data_go_kr_key_fails_the_source_and_is_never_an_empty_listing(spec: SpecSources) -> None:
    wrong = {**ENVIRONMENT, "DATA_GO_KR_SERVICE_KEY": "not-registered"}
    definitions = pointed_at(shipped_document(), spec.base_url, wrong)
    with pytest.raises(SourceConfigError, match="code 30"):  # the HTTP-200 XML envelope of the gateway
        await read_source(definitions["mss_biz"])
    with pytest.raises(SourceConfigError, match="HTTP 401"):  # odcloud: {"code": -4, ...} with 401
        await read_source(definitions["gov24"])
    # K-Startup is JSON, but the gateway answers a wrong key in XML: read as the gateway's envelope, not "not JSON".
    with pytest.raises(SourceConfigError, match=r"SERVICE_KEY_IS_NOT_REGISTERED_ERROR \(code 30\)"):
        await read_source(definitions["kstartup"])


async def test_a_spent_data_go_kr_quota_is_the_rate_limit_answer() -> None:
    with SpecSources(daily_quota={"mss_biz": 1}) as limited:
        document = with_page_size(shipped_document(), "mss_biz", 10)
        for entry in document["sources"]:
            entry["max_retries"] = 0  # the answer itself is under test, not the wait before a retry
        definition = pointed_at(document, limited.base_url)["mss_biz"]
        with pytest.raises(RateLimitedError, match="code 22"):
            await read_source(definition)
        assert len(limited.requests_for(MSS_PATH)) == 2
    with SpecSources(daily_quota={"kstartup": 0}) as limited:  # JSON, but the gateway's answer is XML
        document = copy.deepcopy(shipped_document())
        for entry in document["sources"]:
            entry["max_retries"] = 0
        with pytest.raises(RateLimitedError, match="code 22"):
            await read_source(pointed_at(document, limited.base_url)["kstartup"])


def test_mss_answers_xml_whatever_returntype_asks(spec: SpecSources) -> None:
    answer = httpx.get(spec.url(MSS_PATH), params={"serviceKey": DEFAULT_SERVICE_KEY, "returnType": "json"})
    assert answer.text.startswith("<?xml") and "<applicationEndDate/>" in answer.text
    assert "<![CDATA[" in answer.text and "&lt;p&gt;" in answer.text


def test_mss_filters_by_the_registration_date_it_does_not_serve(spec: SpecSources) -> None:
    answer = httpx.get(spec.url(MSS_PATH), params={"serviceKey": DEFAULT_SERVICE_KEY, "numOfRows": 100,
                                                    "startDate": "2026-03-01", "endDate": "2026-03-31"})
    wanted = {item.external_id for item in spec.items("mss_biz") if item.registered >= "2026-03-01"}
    assert set(re.findall(r"<itemId>(\d+)</itemId>", answer.text)) == wanted and len(wanted) == 4
    assert f"<totalCount>{len(wanted)}</totalCount>" in answer.text
    assert "registered" not in answer.text
    bad = httpx.get(spec.url(MSS_PATH), params={"serviceKey": DEFAULT_SERVICE_KEY, "startDate": "20260301"})
    assert "<resultCode>10</resultCode>" in bad.text


def test_odcloud_conditions_filter_and_count_in_matchcount(spec: SpecSources) -> None:
    def data(path: str, **conditions: str) -> dict[str, Any]:
        return httpx.get(spec.url(path), params={"serviceKey": DEFAULT_SERVICE_KEY, "perPage": 100,
                                                 **conditions}).json()

    changed = data(GOV24_PATH, **{"cond[수정일시::GTE]": "20260301000000"})
    assert {row["서비스ID"] for row in changed["data"]} == {
        item.external_id for item in spec.items("gov24") if item.served["수정일시"] >= "20260301000000"}
    assert (changed["totalCount"], changed["matchCount"]) == (len(spec.items("gov24")), len(changed["data"]))
    assert changed["matchCount"]
    closed = data(KSTARTUP_PATH, **{"cond[rcrt_prgs_yn::EQ]": "N"})
    assert {str(row["pbanc_sn"]) for row in closed["data"]} == spec.not_listed("kstartup")
    seoul = data(GOV24_PATH, **{"cond[소관기관명::LIKE]": "서울특별시"})
    assert {row["소관기관명"] for row in seoul["data"]} == {"서울특별시", "서울특별시 성동구", "서울특별시 강남구"}
    assert httpx.get(spec.url(GOV24_PATH), params={"serviceKey": DEFAULT_SERVICE_KEY,
                                                   "cond[없는컬럼::EQ]": "x"}).status_code == 400


def test_bizinfo_lists_newest_first_and_needs_datatype_json(spec: SpecSources) -> None:
    params = {"crtfcKey": DEFAULT_BIZINFO_KEY, "pageUnit": 100}
    rows = httpx.get(spec.url(SOURCE_PATHS["bizinfo"]), params={**params, "dataType": "json"}).json()["jsonArray"]
    registered = [row["creatPnttm"] for row in rows]
    assert registered == sorted(registered, reverse=True) and len(rows) == len(spec.items("bizinfo"))
    assert all(row["pblancUrl"].startswith("/") and "areaNm" not in row for row in rows)
    assert httpx.get(spec.url(SOURCE_PATHS["bizinfo"]), params=params).text.startswith("<?xml")


def test_the_board_declares_euc_kr_in_a_meta_tag_and_once_wrongly_in_the_header(spec: SpecSources) -> None:
    listing = httpx.get(spec.url(BOARD_LIST_PATH), params={"bbsNo": "184", "key": "1473"})
    assert listing.headers["Content-Type"] == "text/html" and b'charset=euc-kr"' in listing.content
    wrong = httpx.get(spec.url(BOARD_VIEW_PATH), params={"nttNo": "312470"})
    assert wrong.headers["Content-Type"] == "text/html;charset=UTF-8"
    with pytest.raises(UnicodeDecodeError):
        wrong.content.decode("utf-8")
    assert "지구단위계획" in wrong.content.decode("cp949")


# --- size -----------------------------------------------------------------------------------------------------


async def test_a_large_catalogue_is_read_whole_in_full_pages() -> None:
    with SpecSources(sizes={"gov24": 1_200, "kstartup": 600}) as large:
        definitions = pointed_at(shipped_document(), large.base_url)
        for source in ("gov24", "kstartup"):
            collected = await read_source(definitions[source])
            assert contract_problems(large, source, collected) == []
            listed = len(large.items(source)) - len(large.not_listed(source))
            page_size = definitions[source].pagination.page_size  # type: ignore[union-attr]
            assert len(large.requests_for(SOURCE_PATHS[source])) == math.ceil(listed / page_size)
