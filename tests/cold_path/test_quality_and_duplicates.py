"""The cold path's pure logic on handcrafted records: full validation, each quality dimension, and duplicate
detection on pairs written like real cross-source duplicates and like near misses (different programs)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from aegis_pipeline.cold_path import duplicates
from aegis_pipeline.cold_path.records import PolicyRecord
from aegis_pipeline.cold_path.scoring import QualityWeights, completeness, consistency, score, timeliness
from aegis_pipeline.cold_path.validation import validate

TODAY = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WEIGHTS = QualityWeights(completeness=0.3, accuracy=0.3, consistency=0.2, timeliness=0.2)

GOOD_CONTENT = (
    "중소벤처기업부는 혁신적인 기술창업 아이디어를 보유한 예비창업자의 성공적인 창업을 위해 2026년 예비창업패키지 "
    "참여자를 다음과 같이 모집합니다. 선정된 예비창업자에게는 사업화 자금 최대 1억원(평균 5천만원)과 창업교육, "
    "전담 멘토링을 지원합니다. 신청 자격은 공고일 기준 사업자 등록이 없는 자이며, 신청은 K-Startup 누리집에서 "
    "온라인으로만 받습니다."
)


def policy(**fields: Any) -> PolicyRecord:
    """A complete, valid, open announcement; `fields` override any field."""
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()), "source_system": "bizinfo", "external_id": f"PBLN_{uuid.uuid4().hex[:12]}",
        "title": "2026년 예비창업패키지 예비창업자 모집 공고", "content": GOOD_CONTENT,
        "issuing_organization": "중소벤처기업부", "target_region": ("전국",), "target_industry": ("전체",),
        "funding_type": "창업", "application_start_date": date(2026, 2, 24),
        "application_end_date": date(2026, 3, 17),
        "original_url": "https://www.k-startup.go.kr/web/contents/bizpbanc-ongoing.do?pbancSn=171234",
        "collected_at": NOW, "created_at": NOW, "updated_at": NOW, "version": 1, "status": "pending_validation",
    }
    values.update(fields)
    values["target_region"] = tuple(values["target_region"])
    values["target_industry"] = tuple(values["target_industry"])
    return PolicyRecord(**values)


def scored(record: PolicyRecord):
    return score(record, validate(record, today=TODAY), today=TODAY, weights=WEIGHTS)


# --- validation ---------------------------------------------------------------------------------------------


def test_a_complete_open_announcement_is_valid_and_scores_full_marks() -> None:
    record = policy()
    assert validate(record, today=TODAY).errors == ()
    quality = scored(record)
    assert (quality.completeness, quality.accuracy, quality.consistency, quality.timeliness) == (1, 1, 1, 1)
    assert quality.total_score == 1.0
    assert quality.reasons == ()


@pytest.mark.parametrize(("fields", "check"), [
    ({"title": "제목 없음"}, "title_unusable"),
    ({"title": "-- !"}, "title_unusable"),
    ({"content": "추후 공지"}, "content_unusable"),
    ({"issuing_organization": "미정"}, "organization_unusable"),
    ({"application_end_date": date(2206, 3, 17)}, "date_implausible"),
    ({"application_start_date": date(1996, 2, 24)}, "date_implausible"),
    ({"original_url": "https:///view.do?id=1"}, "url_invalid"),
    ({"content": "2026년 예비창업패키지 예비창업자 모집 공고"}, "content_unusable"),
    ({"content": "[공고] 2026년 예비창업패키지 예비창업자 모집 공고 안내"}, "content_unusable"),
], ids=["placeholder-title", "punctuation-title", "no-body", "no-organisation", "typo-year-2206",
        "year-1996", "url-without-host", "body-is-the-title", "body-is-the-title-and-a-word"])
def test_unusable_records_fail_validation(fields: dict[str, Any], check: str) -> None:
    validation = validate(policy(**fields), today=TODAY)
    assert not validation.is_valid
    assert [finding.check for finding in validation.errors] == [check]
    assert scored(policy(**fields)).accuracy == 0.0


# --- each dimension -----------------------------------------------------------------------------------------


def test_completeness_counts_each_missing_field_by_its_weight() -> None:
    assert completeness(policy())[0] == pytest.approx(1.0)
    # What some source kinds cannot give is not demanded: a web board has no region, industry or funding type, a
    # feed no application period, 상시 접수 no dates.
    board_post = policy(target_region=(), target_industry=(), funding_type=None)
    undated = policy(application_start_date=None, application_end_date=None)
    assert completeness(board_post) == completeness(undated) == (pytest.approx(1.0), [])
    no_link = policy(original_url=None)
    assert completeness(no_link)[0] == pytest.approx(0.8)
    publisher_only = policy(issuing_organization="정책브리핑")
    assert completeness(publisher_only)[0] == pytest.approx(0.8)
    short = "청년 창업자에게 사업화 자금 최대 1억원 지원"  # 19 meaningful characters
    value, reasons = completeness(policy(content=short, original_url=None))
    assert value == pytest.approx(1 - 0.2 - 0.5 * (1 - 19 / 30))
    assert "원문 링크" in reasons[0] and "본문" in reasons[0]


def test_text_that_cannot_be_shown_counts_as_missing() -> None:
    record = policy(content=GOOD_CONTENT + " &lt;br&gt;")
    value, reasons = completeness(record, validate(record, today=TODAY))
    assert value == pytest.approx(0.4)  # organisation and link; no title, no body
    assert "깨진 글자 또는 HTML" in reasons[0] and len(reasons) == 1


@pytest.mark.parametrize(("fields", "accuracy"), [
    ({}, 1.0),
    ({"content": GOOD_CONTENT + " &nbsp;<br>"}, 0.5),
    ({"content": GOOD_CONTENT + " ¿¡ÀÌ ÇÁ·Î±×·¥"}, 0.5),           # EUC-KR read as Latin-1
    ({"content": GOOD_CONTENT + " ì\x9d´"}, 0.5),                    # UTF-8 read as Latin-1
    ({"content": GOOD_CONTENT + " \ufffd\ufffd\ufffd"}, 0.5),        # decoded with the wrong character set
    ({"content": GOOD_CONTENT.replace("다.", "\ufffd.", 1)}, 0.9),     # one byte lost: a minor defect
    ({"original_url": "http://www.k-startup.go.kr/view.do?id=1"}, 0.95),
    ({"target_region": ("99",)}, 0.85),
    ({"content": GOOD_CONTENT + " <p>&amp;</p> ÀÌ¹ÌÁö"}, 0.0),       # markup and mojibake together
    # Not defects: angle brackets around words, R&D, a row of middle dots or multiplication signs.
    ({"content": GOOD_CONTENT + " <KOTRA 공고> R&D 과제 ····· 홍×× 주무관 ×××××"}, 1.0),
], ids=["clean", "markup", "mojibake", "utf8-as-latin1", "replacement-characters", "one-lost-character", "http",
        "unknown-region-code", "markup-and-mojibake", "look-alikes"])
def test_accuracy_loses_each_warnings_penalty(fields: dict[str, Any], accuracy: float) -> None:
    assert scored(policy(**fields)).accuracy == pytest.approx(accuracy)


@pytest.mark.parametrize(("fields", "value"), [
    ({}, 1.0),
    # Applying in December for next year's program is normal.
    ({"application_start_date": date(2025, 12, 1), "application_end_date": date(2025, 12, 20)}, 1.0),
    ({"title": "2024년 예비창업패키지 예비창업자 모집 공고"}, 0.0),
    # A year named as a reference point is not the programme's year.
    ({"title": "2019년 이후 창업한 예비창업패키지 졸업기업 후속 지원"}, 1.0),
    ({"title": "2026년 부산 해양관광 스타트업 육성사업", "target_region": ("대구광역시",)}, 0.6),
    ({"title": "2026년 부산 해양관광 스타트업 육성사업", "target_region": ("부산광역시",)}, 1.0),
    ({"title": "2026년 부산 해양관광 스타트업 육성사업", "target_region": ("전국",)}, 1.0),
    ({"application_start_date": date(2026, 1, 1), "application_end_date": date(2027, 6, 30)}, 0.8),
    ({"title": "2024년 대구 뿌리산업 지원", "target_region": ("부산광역시",),
      "application_start_date": date(2026, 1, 1), "application_end_date": date(2027, 6, 30)}, 0.0),
], ids=["consistent", "december-for-next-year", "title-year-not-in-period", "reference-year",
        "title-region-not-targeted",
        "title-region-targeted", "nationwide", "period-over-a-year", "everything-disagrees"])
def test_consistency_loses_each_disagreements_penalty(fields: dict[str, Any], value: float) -> None:
    assert consistency(policy(**fields))[0] == pytest.approx(value)


@pytest.mark.parametrize(("fields", "value"), [
    ({}, 1.0),                                                                     # open until 03-17
    ({"application_start_date": date(2026, 4, 1), "application_end_date": date(2026, 4, 30)}, 1.0),  # upcoming
    ({"application_end_date": date(2026, 3, 1)}, 0.8 * (1 - 1 / 365)),           # closed yesterday
    ({"application_start_date": date(2025, 1, 2), "application_end_date": date(2025, 3, 2)}, 0.0),  # a year ago
    ({"application_start_date": None, "application_end_date": None}, 0.7),        # 상시 접수, collected today
    ({"application_start_date": None, "application_end_date": None,
      "collected_at": datetime(2025, 3, 2, tzinfo=UTC)}, 0.7 - 0.3 * (365 - 30) / 335),
    # A 2025 notice with 2026 dates: not trusted to be open; closed since the end of 2025 (61 days).
    ({"title": "2025년 예비창업패키지 예비창업자 모집 공고"}, 0.8 * (1 - 61 / 365)),
    ({"title": "2024년 예비창업패키지 예비창업자 모집 공고"}, 0.0),
], ids=["open", "upcoming", "closed-yesterday", "closed-a-year-ago", "no-dates-fresh", "no-dates-a-year-old",
        "title-a-year-before-the-period", "title-two-years-before-the-period"])
def test_timeliness_follows_the_application_period(fields: dict[str, Any], value: float) -> None:
    assert timeliness(policy(**fields), TODAY)[0] == pytest.approx(value)


def test_total_is_the_weighted_sum_and_a_weak_record_falls_below_the_threshold() -> None:
    weak = policy(target_region=(), target_industry=(), funding_type=None, original_url=None,
                  application_start_date=None, application_end_date=date(2025, 9, 1),
                  content=GOOD_CONTENT[:80] + " &nbsp;")
    quality = scored(weak)
    expected = (0.3 * quality.completeness + 0.3 * quality.accuracy + 0.2 * quality.consistency
                + 0.2 * quality.timeliness)
    assert quality.total_score == pytest.approx(expected, abs=1e-4)
    assert quality.total_score < 0.7 <= scored(policy()).total_score
    assert any("누락" in reason for reason in quality.reasons)
    heavier_timeliness = QualityWeights(completeness=0.1, accuracy=0.1, consistency=0.1, timeliness=0.7)
    reweighted = score(weak, validate(weak, today=TODAY), today=TODAY, weights=heavier_timeliness)
    assert reweighted.timeliness == quality.timeliness and reweighted.total_score != quality.total_score


# --- duplicates ---------------------------------------------------------------------------------------------

RSS_BODY = ("중소벤처기업부와 창업진흥원은 2026년 예비창업패키지에 참여할 예비창업자를 모집한다고 밝혔다. 선정되면 "
            "최대 1억원의 사업화 자금과 창업교육, 멘토링을 받는다. 신청은 3월 17일까지 K-Startup에서 받는다.")

# (first, second) written as two sources publish the same program: other wording, other organisation name,
# markup or the year in another place.
DUPLICATE_PAIRS = {
    "bizinfo-vs-kstartup-agency": (
        policy(),
        policy(source_system="kstartup", title="[창업진흥원] 2026년도 예비창업패키지 예비창업자 모집",
               issuing_organization="창업진흥원", content=RSS_BODY, funding_type="사업화"),
    ),
    "datagokr-vs-press-release-without-dates": (
        policy(title="2026년 청년창업사관학교 입교생 모집 공고",
               content="만 39세 이하 청년 창업자를 대상으로 창업 공간, 사업화 자금 최대 1억원, 교육과 코칭을 "
                       "패키지로 지원하는 청년창업사관학교 입교생을 모집합니다."),
        policy(source_system="korea_kr_rss", title="중기부, 청년창업사관학교 신규 입교자 모집",
               issuing_organization="정책브리핑", application_start_date=None, application_end_date=None,
               target_region=(), target_industry=(), funding_type=None,
               content="중소벤처기업부는 청년창업사관학교 신규 입교자를 모집한다. 만 39세 이하 청년 창업자에게 "
                       "사업화 자금 최대 1억원과 창업 공간, 교육과 코칭을 지원한다."),
    ),
    "odcloud-vs-bizinfo-spacing": (
        policy(source_system="odcloud", title="2026년 소공인 특화지원사업 공고",
               issuing_organization="소상공인시장진흥공단",
               content="제조업 소공인의 경쟁력 강화를 위해 스마트 기술 보급, 판로 개척, 기술 개발을 지원합니다."),
        policy(title="2026년 소공인특화지원사업 참여기업 모집", issuing_organization="중소벤처기업부",
               content="소공인 경쟁력 강화 지원: 스마트 기술 보급과 판로 개척, 기술 개발 비용을 지원합니다."),
    ),
    "board-vs-city-department": (
        policy(source_system="seongdong_board", title="2026년 성동구 청년 창업지원센터 입주기업 모집",
               issuing_organization="성동구", target_region=("서울특별시",),
               content="성동구 청년 창업지원센터에 입주할 청년 창업기업을 모집합니다. 입주 기간 최대 2년, "
                       "사무공간과 교육, 멘토링을 제공합니다."),
        policy(source_system="seoul_api", title="성동구 청년창업지원센터 입주기업 모집 공고 (2026)",
               issuing_organization="서울특별시 성동구", target_region=("서울",),
               content="성동구 청년창업지원센터 입주기업 모집. 입주 기간은 최대 2년이며 사무공간, 교육, 멘토링 제공."),
    ),
    "city-abbreviation": (
        policy(title="2026년 서울시 청년수당 참여자 모집", issuing_organization="서울특별시",
               target_region=("서울특별시",),
               content="서울에 거주하는 미취업 청년에게 월 50만원씩 최대 6개월 청년수당을 지급합니다."),
        policy(source_system="seoul_youth", title="2026 서울 청년수당 신청 안내", issuing_organization="서울시",
               target_region=("서울",),
               content="서울 거주 미취업 청년 대상 청년수당 월 50만원, 최대 6개월 지급. 온라인 신청."),
    ),
    "exact-copy-on-two-portals": (
        policy(source_system="data_go_kr", title="2026년 스마트공장 구축 및 고도화 지원사업 공고"),
        policy(source_system="odcloud", title="2026년 스마트공장 구축 및 고도화 지원사업 공고"),
    ),
    "year-moved-to-the-end": (
        policy(title="2026년 수출바우처사업 참여기업 모집(제조 분야)", issuing_organization="산업통상자원부",
               target_industry=("제조업",),
               content="수출 초보부터 수출 강소기업까지 해외 마케팅, 통번역, 해외 인증 등 수출 지원 서비스를 "
                       "바우처 방식으로 지원합니다."),
        policy(title="수출바우처 제조분야 참여기업 모집 공고(2026)", issuing_organization="산업부",
               target_industry=("제조",),
               content="해외 마케팅, 통번역, 해외 인증 등 수출 지원 서비스를 바우처로 지원합니다. 제조 분야."),
    ),
    "ministry-vs-its-agency-ampersand": (
        policy(title="2026년 중소기업 R&D 바우처 지원사업 공고", issuing_organization="과학기술정보통신부",
               content="중소기업이 필요한 연구개발 서비스를 바우처로 구매할 수 있도록 기업당 최대 1억원을 지원합니다."),
        policy(title="중소기업 R&D바우처 지원사업(2026년) 공고", issuing_organization="정보통신산업진흥원",
               content="연구개발 서비스 구매 바우처, 기업당 최대 1억원 지원. 중소기업 대상."),
    ),
    "nationwide-scope-in-the-title": (
        policy(title="2026년 혁신 바우처 지원사업 모집 (전국)", issuing_organization="중소벤처기업부",
               target_region=("전국",)),
        policy(source_system="korea_kr_rss", title="중기부, 2026년 혁신 바우처 지원사업 모집",
               issuing_organization="정책브리핑", target_region=(), application_start_date=None,
               application_end_date=None),
    ),
    "notice-number-on-one-side-only": (
        policy(title="중소벤처기업부 공고 제2026-112호 2026년 예비창업패키지 예비창업자 모집 공고"),
        policy(source_system="kstartup", title="2026년 예비창업패키지 예비창업자 모집", content=RSS_BODY,
               issuing_organization="창업진흥원"),
    ),
}

# Same or nearly the same title, but another program: another year, region, organisation, round or call.
DIFFERENT_PAIRS = {
    "another-year": (
        policy(),
        policy(title="2025년 예비창업패키지 예비창업자 모집 공고", application_start_date=date(2025, 2, 20),
               application_end_date=date(2025, 3, 14)),
    ),
    "another-region": (
        policy(title="2026년 소상공인 경영안정자금 융자 지원", issuing_organization="부산광역시",
               target_region=("부산광역시",)),
        policy(title="2026년 소상공인 경영안정자금 융자 지원", issuing_organization="대구광역시",
               target_region=("대구광역시",)),
    ),
    "another-district": (
        policy(title="2026년 청년 창업지원센터 입주기업 모집", issuing_organization="서울특별시 성동구",
               target_region=("서울특별시",)),
        policy(title="2026년 청년 창업지원센터 입주기업 모집", issuing_organization="서울특별시 강남구",
               target_region=("서울특별시",)),
    ),
    "another-ministry": (
        policy(title="2026년 청년 일자리 지원사업 공고", issuing_organization="고용노동부"),
        policy(title="2026년 청년 일자리 지원사업 공고", issuing_organization="농림축산식품부"),
    ),
    "another-field-and-call": (
        policy(title="2026년 수출바우처사업 참여기업 모집(제조 분야)", issuing_organization="산업통상자원부",
               target_industry=("제조업",), application_start_date=date(2026, 2, 16),
               application_end_date=date(2026, 3, 6)),
        policy(title="2026년 수출바우처사업 서비스 분야 참여기업 모집", issuing_organization="산업통상자원부",
               target_industry=("서비스", "정보통신"), application_start_date=date(2026, 4, 6),
               application_end_date=date(2026, 4, 17)),
    ),
    "first-and-second-half": (
        policy(title="2026년 상반기 소상공인 경영환경 개선사업 참여자 모집", issuing_organization="성동구"),
        policy(title="2026년 하반기 소상공인 경영환경 개선사업 참여자 모집", issuing_organization="성동구"),
    ),
    "second-round": (
        policy(title="2026년 1차 스마트공장 구축 지원사업 공고"),
        policy(title="2026년 2차 스마트공장 구축 지원사업 공고"),
    ),
    "additional-call": (
        policy(title="농식품부, 2026년 청년농업인 영농정착지원사업 모집", issuing_organization="정책브리핑"),
        policy(title="농식품부, 2026년 청년농업인 영농정착지원사업 추가 모집", issuing_organization="정책브리핑"),
    ),
    "same-title-next-years-dates": (
        policy(title="청년도전 지원사업 참여자 모집", issuing_organization="고용노동부",
               application_start_date=date(2025, 3, 3), application_end_date=date(2025, 3, 31)),
        policy(title="청년도전 지원사업 참여자 모집", issuing_organization="고용노동부",
               application_start_date=date(2026, 3, 3), application_end_date=date(2026, 3, 31)),
    ),
    "operators-versus-participants": (
        policy(title="2026년 청년 일경험 지원사업 운영기관 모집", issuing_organization="고용노동부",
               content="미취업 청년에게 기업 현장의 일경험 기회를 제공할 운영기관을 모집합니다. 운영기관에는 "
                       "운영비와 프로그램 개발비를 지원합니다."),
        policy(title="2026년 청년 일경험 지원사업 참여자 모집", issuing_organization="고용노동부",
               content="만 15~34세 미취업 청년은 일경험 프로그램에 참여할 수 있으며 월 최대 50만원의 "
                       "참여수당을 받습니다."),
    ),
    "other-notice-number": (
        policy(title="2026년 청년 창업 지원사업 공고 (제12호)"),
        policy(title="2026년 청년 창업 지원사업 공고 (제873호)"),
    ),
    "same-kind-other-name-boilerplate-body": (  # one body template for both: only the names tell them apart
        policy(title="2024년 2차 사회적기업 신제품 개발 컨설팅 지원 모집", issuing_organization="제주특별자치도",
               target_region=("제주특별자치도",)),
        policy(title="2024년 2차 사회적기업 직업훈련 과정 컨설팅 지원 모집", issuing_organization="제주특별자치도",
               target_region=("제주특별자치도",)),
    ),
    "similar-words-other-program": (
        policy(title="2026년 중소기업 기술보호 역량강화 지원사업", issuing_organization="중소벤처기업부",
               content="기술 유출 피해를 막기 위해 중소기업에 보안 컨설팅과 기술임치 비용을 지원합니다."),
        policy(title="2026년 중소기업 기술혁신 역량강화 지원사업", issuing_organization="중소벤처기업부",
               content="혁신형 중소기업의 연구개발 과제 기획과 기술사업화를 지원합니다."),
    ),
}
THRESHOLD = 0.55


def verdict(first: PolicyRecord, second: PolicyRecord) -> float:
    value, _ = duplicates.similarity(duplicates.features(first), duplicates.features(second))
    return value


@pytest.mark.parametrize("name", DUPLICATE_PAIRS)
def test_cross_source_duplicates_are_found(name: str) -> None:
    first, second = DUPLICATE_PAIRS[name]
    assert verdict(first, second) >= THRESHOLD
    assert verdict(second, first) == verdict(first, second)


@pytest.mark.parametrize("name", DIFFERENT_PAIRS)
def test_near_misses_are_different_programs(name: str) -> None:
    first, second = DIFFERENT_PAIRS[name]
    assert verdict(first, second) < THRESHOLD


def keys_of(record: PolicyRecord) -> duplicates.BlockKeys:
    return duplicates.block_keys(duplicates.features(record))


def test_every_duplicate_pair_is_found_by_blocking_whichever_comes_first() -> None:
    for name, (first, second) in DUPLICATE_PAIRS.items():
        assert set(keys_of(first).probes) & set(keys_of(second).stored), name
        assert set(keys_of(second).probes) & set(keys_of(first).stored), name


# Records that have or lack a year and a 시·도: blocking must find every pair the guards let through.
YEAR_REGION_VARIANTS = {
    "both": policy(title="2026년 서울 청년 창업 지원사업 공고", target_region=("서울특별시",)),
    "year only": policy(title="2026년 청년 창업 지원사업 공고", target_region=()),
    "region only": policy(title="서울 청년 창업 지원사업 공고", target_region=("서울특별시",)),
    "neither": policy(title="청년 창업 지원사업 공고", target_region=()),
    "other year": policy(title="2025년 서울 청년 창업 지원사업 공고", target_region=("서울특별시",)),
    "other region": policy(title="2026년 부산 청년 창업 지원사업 공고", target_region=("부산광역시",)),
    "two regions": policy(title="2026년 청년 창업 지원사업 공고", target_region=("서울특별시", "부산광역시")),
    "other round": policy(title="2026년 서울 청년 창업 지원사업 2차 공고", target_region=("서울특별시",)),
}


@pytest.mark.parametrize("first", YEAR_REGION_VARIANTS)
@pytest.mark.parametrize("second", YEAR_REGION_VARIANTS)
def test_blocking_finds_every_pair_no_year_region_or_round_guard_tells_apart(first: str, second: str) -> None:
    a, b = (duplicates.features(YEAR_REGION_VARIANTS[name]) for name in (first, second))
    guarded = duplicates.different_programs(a, b) in ("years differ", "regions differ", "rounds differ")
    shares = bool(set(duplicates.block_keys(a).probes) & set(duplicates.block_keys(b).stored))
    assert shares or guarded, (first, second)
    # Two records that both have a year and a 시·도 share a key only when no guard tells them apart: that is what
    # keeps their blocks small. (A wildcard is compared with more than it could match; the guards sort it out.)
    pinned = {"both", "other year", "other region", "other round"}
    if {first, second} <= pinned:
        assert shares is not guarded, (first, second)


def test_a_record_with_year_and_region_files_and_probes_two_keys_a_band() -> None:
    pinned = keys_of(YEAR_REGION_VARIANTS["both"])
    assert len(pinned.stored) == len(pinned.probes) == duplicates.BANDS * 2
    # A record with neither is compared with every record of its round in the band, whatever it has.
    bare = set(keys_of(YEAR_REGION_VARIANTS["neither"]).probes)
    for name, record in YEAR_REGION_VARIANTS.items():
        assert bool(bare & set(keys_of(record).stored)) is (name != "other round"), name


def test_every_region_a_record_can_name_is_one_that_blocking_enumerates() -> None:
    from aegis_pipeline.cold_path.features import _PROVINCE_NAMES, PROVINCE_SCOPES, province_scope, provinces_in

    assert {region for name in _PROVINCE_NAMES for region in provinces_in(name)} <= set(PROVINCE_SCOPES)
    assert province_scope([*_PROVINCE_NAMES, "전국", "성동구"]) <= set(PROVINCE_SCOPES)


def test_exact_copies_are_named_exact_and_keys_are_stable() -> None:
    first, second = DUPLICATE_PAIRS["exact-copy-on-two-portals"]
    assert duplicates.similarity(duplicates.features(first), duplicates.features(second)) == (1.0, "exact")
    # Stored keys must not depend on the process (no salted hash()): recomputing gives the same list.
    assert keys_of(first) == keys_of(second)


def index_of(*canonical: PolicyRecord) -> duplicates.CanonicalIndex:
    index = duplicates.CanonicalIndex()
    for record in canonical:
        item = duplicates.features(record)
        index.add(item, duplicates.block_keys(item).stored)
    return index


def best_match(index: duplicates.CanonicalIndex, record: PolicyRecord) -> duplicates.Match | None:
    item = duplicates.features(record)
    return index.best_match(item, duplicates.block_keys(item).probes, THRESHOLD)


def test_the_index_returns_the_most_similar_canonical_record() -> None:
    canonical, reworded = DUPLICATE_PAIRS["bizinfo-vs-kstartup-agency"]
    index = index_of(canonical, DIFFERENT_PAIRS["another-year"][1])
    match = best_match(index, reworded)
    assert match is not None and match.canonical_id == canonical.id
    # no shared key: never compared
    assert index.best_match(duplicates.features(reworded), [], THRESHOLD) is None


def test_a_press_copy_is_linked_to_its_nationwide_original_not_to_a_regional_look_alike() -> None:
    original, press_copy = DUPLICATE_PAIRS["nationwide-scope-in-the-title"]
    look_alike = policy(title="2026년 혁신 바우처 바우처 모집 (대구)", issuing_organization="중소벤처기업부",
                        target_region=("대구광역시",))
    match = best_match(index_of(look_alike, original), press_copy)
    assert match is not None and match.canonical_id == original.id


def test_quality_weights_must_add_up_to_one() -> None:
    from aegis_pipeline.settings import SettingsError, load_core_settings

    defaults = load_core_settings()
    assert (defaults.quality_weight_completeness, defaults.quality_weight_accuracy,
            defaults.quality_weight_consistency, defaults.quality_weight_timeliness) == (0.3, 0.3, 0.2, 0.2)
    with pytest.raises(SettingsError, match=r"QUALITY_WEIGHT_COMPLETENESS.*add up to 1\.2"):
        load_core_settings(quality_weight_accuracy=0.5)
    load_core_settings(quality_weight_accuracy=0.1, quality_weight_timeliness=0.4)  # 0.3 + 0.1 + 0.2 + 0.4


def test_a_canonical_record_keeps_its_place_when_scored_again_beside_a_better_copy() -> None:
    from aegis_pipeline.cold_path.status import assess, decide

    canonical = policy(status="active", original_url=None)  # a little less complete: a lower score
    better_copy = policy(source_system="odcloud", status="rejected")
    newcomer = policy(source_system="data_go_kr")
    assessed = [assess(record, today=TODAY, weights=WEIGHTS) for record in (better_copy, newcomer, canonical)]
    assert assessed[0].quality.total_score > assessed[2].quality.total_score

    decisions = {d.record.id: d for d in decide(assessed, [], quality_threshold=0.7, duplicate_threshold=THRESHOLD)}
    assert decisions[canonical.id].status == "active" and decisions[canonical.id].duplicate_of is None
    for record in (better_copy, newcomer):
        assert decisions[record.id].outcome == "duplicate"
        assert decisions[record.id].duplicate_of.canonical_id == canonical.id
        assert decisions[record.id].error_code == "DP_2003"
    # Without an active record among them, the best-scoring new record becomes canonical.
    fresh = [assess(policy(source_system=name), today=TODAY, weights=WEIGHTS) for name in ("a_src", "b_src")]
    weaker = assess(policy(source_system="c_src", original_url=None), today=TODAY, weights=WEIGHTS)
    outcomes = {d.record.source_system: d.outcome
                for d in decide([weaker, *fresh], [], quality_threshold=0.7, duplicate_threshold=THRESHOLD)}
    assert sorted(outcomes.values()) == ["active", "duplicate", "duplicate"] and outcomes["c_src"] == "duplicate"
