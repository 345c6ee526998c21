"""Real records are not rejected for the wrong reason (issue 19): records as each kind of source delivers them go
through the real field mapping and parsers (collectors), the hot path's cleaning and the cold path's validation and
score. A real, complete programme passes whatever its source kind can give and whatever date form it uses (a board
post without region, industry or funding type; 상시 접수; a K-Startup sentinel end date; 정부24 상시신청); a poor
record (empty or title-only body, mojibake, markup left, a title year the period does not cover) is rejected.

Two days: TODAY, when most sample programmes are open, and LATE, the demo's day, when most closed months ago (the
web board's posts scored 0.67-0.69 then and were rejected)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from aegis_pipeline.cold_path.records import PolicyRecord
from aegis_pipeline.cold_path.scoring import QualityScore, QualityWeights, score
from aegis_pipeline.cold_path.validation import Validation, validate
from aegis_pipeline.collectors.definitions import SourceDefinition, load_sources, parse_sources
from aegis_pipeline.collectors.mapping import build_record
from aegis_pipeline.devstack.sample_sources import SOURCE_NAMES, expected_records
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData

TODAY = date(2026, 3, 2)
LATE = date(2026, 12, 4)
WEIGHTS = QualityWeights(completeness=0.3, accuracy=0.3, consistency=0.2, timeliness=0.2)
THRESHOLD = 0.7
BASE_URL = "http://sample.test"
SAMPLE_SOURCES_FILE = Path(__file__).parents[2] / "src" / "aegis_pipeline" / "devstack" / "sample_sources.yaml"
SAMPLE_SOURCE_NAMES = {"data_go_kr": "data_go_kr", "data_go_kr_single": "data_go_kr_single", "bizinfo": "bizinfo",
                       "odcloud": "odcloud", "rss": "policy_briefing_rss", "board": "seongdong_board"}

# The real services' field names (docs: /work/shared/docs/domain.md), mapped as a sources file would.
KSTARTUP = {
    "name": "kstartup", "kind": "json_api",
    "url": "https://apis.data.go.kr/B552735/kisedKstartupService01/getAnnouncementInformation01",
    "records_path": "data", "id_field": "pbanc_sn",
    "fields": {
        "title": {"path": "biz_pbanc_nm", "parser": "text"},
        "content": {"path": "pbanc_ctnt", "parser": "text"},
        "issuing_organization": {"path": "pbanc_ntrp_nm", "parser": "strip"},
        "target_region": {"path": "supt_regin", "parser": "comma_list"},
        "funding_type": {"path": "supt_biz_clsfc", "parser": "strip"},
        "application_start_date": {"path": "pbanc_rcpt_bgng_dt", "parser": "date"},
        "application_end_date": {"path": "pbanc_rcpt_end_dt", "parser": "date"},
        "original_url": {"path": "detl_pg_url", "parser": "url"},
    },
}
GOV24 = {
    "name": "gov24", "kind": "json_api", "url": "https://api.odcloud.kr/api/gov24/v3/serviceList",
    "records_path": "data", "id_field": "서비스ID",
    "fields": {
        "title": {"path": "서비스명", "parser": "text"},
        "content": {"join": ["서비스목적요약", "지원내용"], "parser": "text"},
        "issuing_organization": {"path": "소관기관명", "parser": "strip"},
        "funding_type": {"path": "지원유형", "parser": "strip"},
        "application_start_date": {"path": "신청기한", "parser": "date_range_start"},
        "application_end_date": {"path": "신청기한", "parser": "date_range_end"},
        "original_url": {"path": "상세조회URL", "parser": "url"},
    },
}


def kstartup_item(end: str | int) -> dict[str, Any]:
    return {
        "pbanc_sn": 176002, "biz_pbanc_nm": "2026년 초기창업패키지 창업기업 모집 공고",
        "pbanc_ctnt": "<p>유망 창업아이템과 기술을 보유한 창업 3년 이내 기업에 사업화 자금 최대 1억원과 창업기업 특화 "
                      "프로그램을 지원합니다.</p><p>신청은 K-Startup 누리집에서 온라인으로 받습니다.</p>",
        "pbanc_ntrp_nm": "창업진흥원", "sprv_inst": "중소벤처기업부", "supt_biz_clsfc": "사업화", "supt_regin": "전국",
        "aply_trgt": "창업 3년 이내 기업", "pbanc_rcpt_bgng_dt": "20260216", "pbanc_rcpt_end_dt": end,
        "rcrt_prgs_yn": "Y",
        "detl_pg_url": "https://www.k-startup.go.kr/web/contents/bizpbanc-ongoing.do?schM=view&pbancSn=176002",
    }


def gov24_service(deadline: str) -> dict[str, Any]:
    return {
        "서비스ID": "WII000001234", "서비스명": "성동구 청년 월세 지원",
        "서비스목적요약": "청년의 주거비 부담을 덜기 위해 월세를 지원합니다.",
        "지원대상": "성동구에 거주하는 만 19~39세 무주택 청년", "선정기준": "기준 중위소득 150% 이하",
        "지원내용": "월 최대 20만원, 최장 12개월 지원", "신청방법": "방문 또는 온라인 신청", "신청기한": deadline,
        "상세조회URL": "https://www.gov.kr/portal/rcvfvrSvc/dtlEx/WII000001234", "소관기관명": "서울특별시 성동구",
        "소관기관코드": "3030000", "부서명": "청년정책과", "사용자구분": "개인", "서비스분야": "주거·자립",
        "지원유형": "현금", "전화문의": "02-2286-5114", "등록일시": "20260105093000", "수정일시": "20260210140000",
    }


def _definitions() -> dict[str, SourceDefinition]:
    sample = load_sources(SAMPLE_SOURCES_FILE, {"SAMPLE_SOURCES_URL": BASE_URL, "SAMPLE_SERVICE_KEY": "key"})
    inline = parse_sources({"sources": [KSTARTUP, GOV24]}, {}, origin="test")
    return {source.name: source for source in (*sample.sources, *inline.sources)}


DEFINITIONS = _definitions()


def collected_on(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, tzinfo=UTC)


def from_source(source: str, item: dict[str, Any]) -> Callable[[date], RawPolicyData]:
    """A source item through the source's mapping and parsers, as the collector does on `day`."""
    return lambda day: build_record(item, DEFINITIONS[source], collected_on(day))


def from_sample(sample: str, expected: dict[str, Any]) -> Callable[[date], RawPolicyData]:
    """What a correct collector makes of a demo sample record (devstack/sample_data), collected on `day`."""
    mapping = DEFINITIONS[SAMPLE_SOURCE_NAMES[sample]].fields["issuing_organization"]
    fields = {name: expected[name] for name in ("title", "content", "target_region", "target_industry",
                                                "funding_type", "application_start_date", "application_end_date",
                                                "original_url")}
    organisation = expected["issuing_organization"] or mapping.default  # a feed item without <author>
    return lambda day: RawPolicyData(
        **fields, issuing_organization=organisation,
        collection_metadata=CollectionMetadata(source=SAMPLE_SOURCE_NAMES[sample],
                                               external_id=expected["external_id"], collected_at=collected_on(day)))


def stored(raw: RawPolicyData) -> PolicyRecord:
    """The record as the cold path loads it after the hot path cleaned and stored it."""
    clean = normalize_record(raw)
    return PolicyRecord(
        id=clean.record_key, source_system=clean.source_system, external_id=clean.external_id, title=clean.title,
        content=clean.content, issuing_organization=clean.issuing_organization,
        target_region=tuple(clean.target_region), target_industry=tuple(clean.target_industry),
        funding_type=clean.funding_type, application_start_date=clean.application_start_date,
        application_end_date=clean.application_end_date, original_url=clean.original_url,
        collected_at=clean.collected_at, created_at=clean.collected_at, updated_at=clean.collected_at, version=1,
        status="pending_validation")


def assessed(record: PolicyRecord, day: date) -> tuple[Validation, QualityScore]:
    validation = validate(record, today=day)
    return validation, score(record, validation, today=day, weights=WEIGHTS)


def passes(record: PolicyRecord, day: date) -> bool:
    validation, quality = assessed(record, day)
    return validation.is_valid and quality.total_score >= THRESHOLD


SAMPLES = {f"{sample}:{expected['external_id']}": from_sample(sample, expected)
           for sample in SOURCE_NAMES for expected in expected_records(sample, BASE_URL)}


@pytest.mark.parametrize("day", [TODAY, LATE], ids=["today", "demo-day"])
@pytest.mark.parametrize("name", SAMPLES)
def test_every_demo_sample_record_passes(name: str, day: date) -> None:
    record = stored(SAMPLES[name](day))
    validation, quality = assessed(record, day)
    assert validation.errors == ()
    assert quality.total_score >= THRESHOLD, quality


# One real, complete programme per source kind, in the date forms that kind uses.
REAL = {
    "board-post": from_sample("board", expected_records("board", BASE_URL)[3]),          # 50238, 판로지원 공모
    "board-post-상시-모집": from_sample("board", expected_records("board", BASE_URL)[5]),  # 50236
    "bizinfo": from_sample("bizinfo", expected_records("bizinfo", BASE_URL)[0]),
    "bizinfo-상시-접수": from_sample("bizinfo", expected_records("bizinfo", BASE_URL)[1]),
    "kstartup-end-99991231": from_source("kstartup", kstartup_item("99991231")),
    "kstartup-end-29991231": from_source("kstartup", kstartup_item("29991231")),
    "kstartup-end-00000000": from_source("kstartup", kstartup_item("00000000")),
    "kstartup-end-99991231-as-number": from_source("kstartup", kstartup_item(99991231)),
    "gov24-상시신청": from_source("gov24", gov24_service("상시신청")),
    "gov24-예산-소진-시까지": from_source("gov24", gov24_service("예산 소진 시까지")),
    "gov24-until-a-date": from_source("gov24", gov24_service("2026.12.31까지")),
}


@pytest.mark.parametrize("day", [TODAY, LATE], ids=["today", "demo-day"])
@pytest.mark.parametrize("name", REAL)
def test_a_real_complete_programme_of_every_source_kind_passes(name: str, day: date) -> None:
    record = stored(REAL[name](day))
    validation, quality = assessed(record, day)
    assert validation.errors == ()
    # Nothing is demanded that the source kind cannot give (region, industry, funding type, dates).
    assert quality.completeness == 1.0, quality.reasons
    assert quality.total_score >= THRESHOLD, quality


@pytest.mark.parametrize("name", [name for name in REAL if name.startswith(("kstartup", "gov24-상시", "gov24-예산"))])
def test_sentinel_and_free_text_deadlines_are_no_date(name: str) -> None:
    record = stored(REAL[name](TODAY))
    assert record.application_end_date is None
    assert "신청 마감 후" not in " ".join(assessed(record, TODAY)[1].reasons)


def test_a_gov24_until_date_is_the_deadline() -> None:
    record = stored(REAL["gov24-until-a-date"](TODAY))
    assert (record.application_start_date, record.application_end_date) == (None, date(2026, 12, 31))


def _with_title_year(record: PolicyRecord, year: int) -> PolicyRecord:
    title = record.title.replace("2026", str(year), 1) if "2026" in record.title else f"{year}년 {record.title}"
    return dataclasses.replace(record, title=title)


# Genuinely poor records, each made from a real one with one defect.
DEFECTS: dict[str, Callable[[PolicyRecord], PolicyRecord]] = {
    "empty-body": lambda record: dataclasses.replace(record, content="  "),
    "title-only-body": lambda record: dataclasses.replace(record, content=record.title),
    "mojibake": lambda record: dataclasses.replace(record, content=record.content + " ¿¡ÀÌ ÇÁ·Î±×·¥ Áö¿ø"),
    "markup-left": lambda record: dataclasses.replace(record, content=f"&lt;p&gt;{record.content}&lt;/p&gt;"),
    "title-year-the-period-does-not-cover": lambda record: _with_title_year(record, 2024),
}
POOR_BASES = ["board-post", "bizinfo", "kstartup-end-99991231", "gov24-상시신청"]


# 정부24 상시신청 has no application period, so no title year can contradict it: that one pair is not a case.
POOR_CASES = [(name, defect) for name in POOR_BASES for defect in DEFECTS
              if (name, defect) != ("gov24-상시신청", "title-year-the-period-does-not-cover")]


@pytest.mark.parametrize(("name", "defect"), POOR_CASES)
def test_a_poor_record_is_rejected_even_while_open(name: str, defect: str) -> None:
    record = stored(REAL[name](TODAY))
    if defect.startswith("title-year"):
        assert record.application_start_date is not None  # a period for the title's year to contradict
    assert passes(record, TODAY)
    assert not passes(DEFECTS[defect](record), TODAY)
