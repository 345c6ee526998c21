"""Generated policy announcements with realistic Korean text, for tests and benchmarks at any volume.

Deterministic for a given seed. Each record reads like a real 지원사업 공고: a program name built from real
ministries, target groups and support kinds, a 300-600 character body, an application period, regions and
industries, and a 담당자 contact line (phone and e-mail: personal data the hot path must mask).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from schemas.records import CollectionMetadata, RawPolicyData

MINISTRIES = [
    "중소벤처기업부", "고용노동부", "과학기술정보통신부", "산업통상자원부", "농림축산식품부", "문화체육관광부",
    "보건복지부", "국토교통부", "해양수산부", "환경부", "서울특별시", "부산광역시", "경기도", "창업진흥원",
    "소상공인시장진흥공단", "중소벤처기업진흥공단", "정보통신산업진흥원", "한국산업기술진흥원",
]
TARGETS = ["청년", "예비창업자", "소상공인", "중소기업", "여성기업", "장애인기업", "수출기업", "벤처기업",
           "사회적기업", "1인 창조기업", "전통시장 상인", "농업인", "스타트업"]
PROGRAMS = ["창업 지원사업", "정책자금 융자", "R&D 바우처", "수출 바우처", "스마트공장 구축 지원",
            "디지털 전환 지원", "고용 장려금", "판로 개척 지원", "해외 전시회 참가 지원", "기술 사업화 지원",
            "경영 안정 자금", "입주기업 모집", "컨설팅 지원", "인력 양성 사업", "시설 개선 지원"]
SUPPORT = ["사업화 자금 최대 1억원", "융자 한도 최대 5억원", "인건비 월 최대 80만원", "바우처 최대 3천만원",
           "컨설팅 비용의 70%", "임대료 50% 감면", "교육비 전액", "시제품 제작비 최대 5천만원"]
REGIONS = ["서울특별시", "부산광역시", "대구광역시", "인천광역시", "광주광역시", "대전광역시", "울산광역시",
           "세종특별자치시", "경기도", "강원특별자치도", "충청북도", "충청남도", "전북특별자치도", "전라남도",
           "경상북도", "경상남도", "제주특별자치도", "전국"]
INDUSTRIES = ["제조업", "정보통신업", "도소매업", "음식점업", "서비스업", "농림어업", "콘텐츠산업", "바이오",
              "에너지", "물류", "관광업", "전체"]
FUNDING = ["보조금", "융자", "바우처", "세제 지원", "현물 지원", "교육", "컨설팅"]
SENTENCES = [
    "{ministry}는 {target}의 성장 기반을 마련하기 위해 2026년 {program}을 다음과 같이 공고합니다.",
    "선정된 기업에는 {support}을 지원하며, 전문가 멘토링과 교육 프로그램을 함께 제공합니다.",
    "신청 자격은 공고일 기준 {target}으로서 사업자 등록을 마친 자이며, 국세 및 지방세 체납이 없어야 합니다.",
    "평가는 서류 평가와 발표 평가로 진행되며, 사업성, 기술성, 추진 역량을 종합적으로 심사합니다.",
    "지원 규모는 예산 범위 내에서 결정되며, 중복 지원은 제한될 수 있습니다.",
    "신청은 온라인 접수 시스템을 통해서만 가능하며, 방문 및 우편 접수는 받지 않습니다.",
    "제출 서류는 사업계획서, 사업자등록증 사본, 중소기업 확인서 등이며 세부 사항은 공고문을 참조하시기 바랍니다.",
    "협약 기간은 협약일로부터 8개월 이내이며, 최종 평가 결과에 따라 후속 지원이 연계될 수 있습니다.",
]


def _contact_line(rng: random.Random) -> str:
    phone = f"0{rng.choice([2, 31, 42, 44, 51, 53, 62])}-{rng.randint(100, 9999)}-{rng.randint(1000, 9999)}"
    user = f"{rng.choice(['kim', 'lee', 'park', 'choi', 'jung'])}{rng.randint(1, 99)}"
    mail = f"{user}@{rng.choice(['mss', 'moel', 'seoul'])}.go.kr"
    return f"문의: 담당자 {rng.choice(['김', '이', '박', '최'])}주무관 ☎ {phone}, {mail}"


def make_record(index: int, *, source: str = "synthetic", seed: int = 7, revision: int = 0,
                collected_at: datetime | None = None) -> RawPolicyData:
    """Record number `index` of source `source`; a higher `revision` changes its text (a new version)."""
    rng = random.Random(f"{seed}:{source}:{index}")
    ministry, target = rng.choice(MINISTRIES), rng.choice(TARGETS)
    program, support = rng.choice(PROGRAMS), rng.choice(SUPPORT)
    values = {"ministry": ministry, "target": target, "program": program, "support": support}
    body = [sentence.format(**values) for sentence in rng.sample(SENTENCES, k=rng.randint(4, 7))]
    if revision:
        body.append(f"(정정 공고 {revision}차: 접수 기간이 연장되었습니다.)")
    body.append(_contact_line(rng))
    start = date(2026, 1, 1) + timedelta(days=rng.randint(0, 300))
    end = start + timedelta(days=rng.randint(10, 60))
    return RawPolicyData(
        title=f"2026년 {target} {program} {'추가 ' if index % 7 == 0 else ''}공고 (제{index}호)",
        content=" ".join(body),
        issuing_organization=ministry,
        target_region=rng.sample(REGIONS, k=rng.randint(1, 3)),
        target_industry=rng.sample(INDUSTRIES, k=rng.randint(1, 2)),
        funding_type=rng.choice(FUNDING),
        application_start_date=start,
        application_end_date=end,
        original_url=f"https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/74/view.do?pblancId=PBLN_{index:012d}",
        raw_data={"pblancId": f"PBLN_{index:012d}", "source_fields": {"hashtags": f"{target},{program}"}},
        collection_metadata=CollectionMetadata(
            source=source, external_id=f"PBLN_{index:012d}",
            collected_at=collected_at or datetime.now(UTC),
        ),
    )


def make_records(count: int, *, source: str = "synthetic", seed: int = 7, start: int = 0) -> list[RawPolicyData]:
    return [make_record(index, source=source, seed=seed) for index in range(start, start + count)]


def synthetic_embedding(key: str, dimension: int = 384) -> list[float]:
    """A deterministic unit vector for `key` (e.g. a text hash): stands in for a model's embedding where encoding
    every text would take too long (tests, benchmarks). Not semantically meaningful."""
    rng = random.Random(key)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimension)]
    norm = sum(value * value for value in vector) ** 0.5
    return [value / norm for value in vector]
