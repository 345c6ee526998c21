"""Generated policy announcements with realistic Korean text, for tests and benchmarks at any volume.

Deterministic for a given seed. Each record reads like a real 지원사업 공고: a program name built from real
ministries, target groups and support kinds, a 300-600 character body, an application period, regions and
industries, and a 담당자 contact line (phone and e-mail: personal data the hot path must mask).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData

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


def make_large_record(index: int, *, source: str = "synthetic", size_bytes: int = 990_000,
                      collected_at: datetime | None = None) -> RawPolicyData:
    """Record `index` of `make_record` grown to about `size_bytes` as JSON (within 1%, never more): a long 공고
    whose body (at most 200,000 characters, the model's limit) repeats its sentences with a 담당자 contact line in
    each paragraph, and whose `raw_data` holds the text of its attachments as the source delivered it (one string
    per page, each with contacts). Valid to the model; every page and paragraph has personal data to mask, so the
    hot path's cleaning works on all of it. For floods of large records (tests, `bench/hot_path.py`)."""
    record = make_record(index, source=source, collected_at=collected_at)
    rng = random.Random(f"large:{source}:{index}")
    paragraph = record.content
    content_chars = min(199_000, size_bytes // 6)  # about half the bytes: Korean text is 3 bytes a character
    paragraphs: list[str] = []
    while sum(map(len, paragraphs)) + len(paragraphs) < content_chars:
        paragraphs.append(f"{paragraph} {_contact_line(rng)}")
    content = "\n".join(paragraphs)[:content_chars].strip()
    grown = record.model_copy(update={"content": content})
    room = size_bytes - len(grown.model_dump_json().encode()) - 100  # the attachments key and brackets
    pages: list[str] = []
    while room > 0:
        page = f"{paragraph} {_contact_line(rng)}"
        cost = len(page.encode()) + 3  # quotes and comma
        if cost > room:
            page = page.encode()[:max(0, room - 3)].decode("utf-8", "ignore")
            cost = room
        pages.append(page)
        room -= cost
    return grown.model_copy(update={"raw_data": {**record.raw_data, "attachments": pages}})


def synthetic_embedding(key: str, dimension: int) -> list[float]:
    """A deterministic unit vector for `key` (e.g. a text hash): stands in for a model's embedding where encoding
    every text would take too long (tests, benchmarks). Not semantically meaningful."""
    rng = random.Random(key)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimension)]
    norm = sum(value * value for value in vector) ** 0.5
    return [value / norm for value in vector]


# --- a national catalogue: templated titles, labelled cross-source copies -------------------------------------

# Programme names as ministries and agencies coin them, each with the ministry that runs it.
FIELDS = {
    "스마트 제조혁신": "중소벤처기업부", "수출 초보기업 육성": "중소벤처기업부", "탄소중립 전환": "환경부",
    "디지털 마케팅": "중소벤처기업부", "친환경 농업": "농림축산식품부", "관광 벤처": "문화체육관광부",
    "콘텐츠 제작": "문화체육관광부", "의료기기 인증": "보건복지부", "인공지능 바우처": "과학기술정보통신부",
    "데이터 바우처": "과학기술정보통신부", "클라우드 전환": "과학기술정보통신부", "로컬 크리에이터": "중소벤처기업부",
    "전통시장 활성화": "중소벤처기업부", "청년 일경험": "고용노동부", "재창업 재도전": "중소벤처기업부",
    "폐업 소상공인 재기": "중소벤처기업부", "공유주방 운영": "중소벤처기업부", "해외 규격 인증": "산업통상자원부",
    "특허 출원 비용": "산업통상자원부", "신제품 개발": "산업통상자원부", "공정 개선": "산업통상자원부",
    "물류 효율화": "국토교통부", "온라인 판로 개척": "중소벤처기업부", "라이브커머스 입점": "중소벤처기업부",
    "메타버스 콘텐츠": "과학기술정보통신부", "웹툰 제작": "문화체육관광부", "게임 수출": "문화체육관광부",
    "바이오 헬스 실증": "보건복지부", "수소 산업 육성": "산업통상자원부", "이차전지 소재": "산업통상자원부",
    "반도체 설계 인력": "산업통상자원부", "드론 실증": "국토교통부", "자율주행 실증": "국토교통부",
    "스마트팜 보급": "농림축산식품부", "어촌 신활력": "해양수산부", "수산 가공 설비": "해양수산부",
    "임업 소득 증대": "농림축산식품부", "귀농 창업": "농림축산식품부", "농촌 체험 관광": "농림축산식품부",
    "치유농업 확산": "농림축산식품부", "공예 창작": "문화체육관광부", "문화예술 교육": "문화체육관광부",
    "지역 축제 육성": "문화체육관광부", "관광 두레": "문화체육관광부", "의료 관광 유치": "보건복지부",
    "노인 돌봄": "보건복지부", "장애인 고용 장려": "고용노동부", "경력단절 여성 재취업": "고용노동부",
    "중장년 재도전": "고용노동부", "사회적경제 기업 성장": "고용노동부", "마을기업 육성": "행정안전부",
    "협동조합 설립": "기획재정부", "소셜벤처 육성": "중소벤처기업부", "ESG 경영 전환": "중소벤처기업부",
    "산업 안전 설비": "고용노동부", "에너지 효율 개선": "산업통상자원부", "태양광 설치": "산업통상자원부",
    "전기차 충전 기반": "환경부", "노후 설비 교체": "중소벤처기업부", "작업환경 개선": "고용노동부",
    "근로자 건강 증진": "고용노동부", "직업훈련 과정": "고용노동부", "기술 인력 양성": "중소벤처기업부",
    "디자인 개발": "산업통상자원부", "브랜드 개발": "중소벤처기업부", "포장 디자인 개선": "중소벤처기업부",
    "홍보 영상 제작": "중소벤처기업부", "해외 전시회 참가": "산업통상자원부", "수출 물류비": "산업통상자원부",
    "해외 지사화": "중소벤처기업부", "글로벌 강소기업": "중소벤처기업부", "혁신 바우처": "중소벤처기업부",
    "기술 보호": "중소벤처기업부", "기술 임치": "중소벤처기업부", "연구장비 활용": "과학기술정보통신부",
    "시험 인증 비용": "산업통상자원부", "표준 개발": "산업통상자원부",
}
KINDS = ["지원사업", "바우처", "육성사업", "보조금 지원", "정책자금 융자", "컨설팅 지원", "교육 과정",
         "공모전", "입주기업 모집", "시범사업", "실증 지원", "지원금", "장려금", "사업화 지원", "멘토링"]
CATALOGUE_YEARS = list(range(2014, 2028))
# How titles name a 시·도 (the short form most boards use, the long one some APIs use); 전국 names none.
PROVINCE_WORDS = {"서울특별시": "서울", "부산광역시": "부산", "대구광역시": "대구", "인천광역시": "인천",
                  "광주광역시": "광주", "대전광역시": "대전", "울산광역시": "울산", "세종특별자치시": "세종",
                  "경기도": "경기", "강원특별자치도": "강원", "충청북도": "충북", "충청남도": "충남",
                  "전북특별자치도": "전북", "전라남도": "전남", "경상북도": "경북", "경상남도": "경남",
                  "제주특별자치도": "제주", "전국": ""}
ROUND_WORDS = ["", "2차 ", "3차 ", "추가 ", "하반기 "]
# Agencies that publish their ministry's programmes under their own name, and the press's short names.
AGENCY_OF = {"중소벤처기업부": "창업진흥원", "산업통상자원부": "한국산업기술진흥원",
             "과학기술정보통신부": "정보통신산업진흥원", "고용노동부": "한국산업인력공단",
             "문화체육관광부": "한국콘텐츠진흥원", "농림축산식품부": "농림수산식품교육문화정보원"}
PRESS_NAME_OF = {"중소벤처기업부": "중기부", "산업통상자원부": "산업부", "과학기술정보통신부": "과기정통부",
                 "고용노동부": "고용부", "문화체육관광부": "문체부", "농림축산식품부": "농식품부",
                 "보건복지부": "복지부", "국토교통부": "국토부", "해양수산부": "해수부", "환경부": "환경부",
                 "행정안전부": "행안부", "기획재정부": "기재부"}
ORIGINAL_SOURCES = ["mss_biz", "bizinfo", "local_boards"]
COPY_DELAY, COPY_WINDOW = 1000, 5000  # a copy comes 1,000 to 6,000 records after its original


@dataclass(frozen=True)
class CatalogueRecord:
    """A generated record and its label: records with the same `programme` announce one programme (one is the
    original, the others are `copy` records another source published later), so linking them is right and
    linking records of two programmes is a false duplicate; `name` is the programme's name, which its look-alike
    siblings (other years, 시·도 and rounds) share."""

    record: RawPolicyData
    programme: int
    name: str
    copy: bool


def make_catalogue(count: int, *, seed: int = 11, copy_share: float = 0.05) -> list[CatalogueRecord]:
    """`count` records of a national catalogue in the order they are collected: each copy after its original.

    Originals are distinct programmes drawn without repetition from every (name, year, 시·도, round): titles
    follow the templates real boards use ("2026년 서울 청년 스마트 제조혁신 바우처 공고"), so one programme name
    recurs across years, regions and rounds by the hundred (the look-alike siblings duplicate detection must
    tell apart). A `copy_share` of records republish an original as another source words it: the agency's name
    for the ministry, other title words and spacing, some body sentences, dates a few days off; a third of them as
    press releases with no region, dates or industries."""
    rng = random.Random(seed)
    names, provinces = list(FIELDS), list(PROVINCE_WORDS)
    cells = len(names) * len(CATALOGUE_YEARS) * len(provinces) * len(ROUND_WORDS)
    copies = int(count * copy_share)
    originals = count - copies
    if originals > cells or copies > originals - COPY_DELAY - COPY_WINDOW // 2:
        raise ValueError(f"{originals} programmes with {copies} copies asked: at most {cells} distinct programmes, "
                         f"and copies of programmes {COPY_DELAY + COPY_WINDOW // 2} records before the end")
    catalogue: list[CatalogueRecord] = []
    for programme, cell in enumerate(rng.sample(range(cells), originals)):
        cell, round_index = divmod(cell, len(ROUND_WORDS))
        cell, province_index = divmod(cell, len(provinces))
        name_index, year_index = divmod(cell, len(CATALOGUE_YEARS))
        catalogue.append(CatalogueRecord(_original(
            programme, rng, name=names[name_index], kind=rng.choice(KINDS), year=CATALOGUE_YEARS[year_index],
            province=provinces[province_index], round_word=ROUND_WORDS[round_index]), programme, names[name_index],
            copy=False))
    # Each copy comes in a later collection than its original (another source picks the programme up within
    # days): never in the same hot-path batch, and spread over the run as the originals are.
    latest = max(copies, originals - COPY_DELAY - COPY_WINDOW // 2)
    for number, position in enumerate(sorted(rng.sample(range(latest), copies), reverse=True)):
        original = catalogue[position]
        later = min(len(catalogue), position + COPY_DELAY + rng.randint(0, COPY_WINDOW))
        catalogue.insert(later, CatalogueRecord(_copy(original.record, number, rng), original.programme,
                                                original.name, copy=True))
    return catalogue


def _original(programme: int, rng: random.Random, *, name: str, kind: str, year: int, province: str,
              round_word: str) -> RawPolicyData:
    ministry, target = FIELDS[name], rng.choice(TARGETS)
    regional = province != "전국"
    organisation = province if regional and rng.random() < 0.5 else ministry
    word = PROVINCE_WORDS[province]
    template = rng.randrange(3)
    if template == 0:
        title = f"{year}년 {word} {target} {name} {kind} {round_word}공고"
    elif template == 1:
        title = f"[{word or '전국'}] {year}년 {round_word}{target} {name} {kind} 모집"
    else:
        title = f"{year}년 {round_word}{name} {kind} 모집 ({word or '전국'})"
    support = rng.choice(SUPPORT)
    values = {"ministry": organisation, "target": target, "program": f"{name} {kind}", "support": support}
    body = [sentence.format(**values) for sentence in rng.sample(SENTENCES, k=rng.randint(5, 8))]
    body.append(f"본 사업은 {word or '전국'} 지역 {target}의 {name} 역량을 높이기 위한 {kind}입니다.")
    body.append(_contact_line(rng))
    start = date(year, 1, 5) + timedelta(days=rng.randint(0, 320))
    source = ORIGINAL_SOURCES[programme % len(ORIGINAL_SOURCES)]
    external_id = f"PRG-{programme:07d}"
    return RawPolicyData(
        title=" ".join(title.split()), content=" ".join(body).replace("2026년", f"{year}년"),
        issuing_organization=organisation, target_region=[province],
        target_industry=rng.sample(INDUSTRIES[:-1], k=rng.randint(1, 2)), funding_type=rng.choice(FUNDING),
        application_start_date=start, application_end_date=start + timedelta(days=rng.randint(14, 60)),
        original_url=f"https://www.{source}.go.kr/notice/view.do?id={external_id}",
        raw_data={"id": external_id},
        collection_metadata=CollectionMetadata(source=source, external_id=external_id,
                                               collected_at=datetime.now(UTC)),
    )


def _copy(original: RawPolicyData, number: int, rng: random.Random) -> RawPolicyData:
    """`original` as another source publishes it (module docstring of `make_catalogue`)."""
    title = original.title
    year = title[:4] if title[:4].isdigit() else title.split("년 ")[0][-4:]
    ministry = original.issuing_organization if original.issuing_organization in FIELDS.values() else None
    sentences = [part for part in original.content.split(". ") if part]
    body = ". ".join(rng.sample(sentences, k=max(3, len(sentences) * 2 // 3)))
    shift = timedelta(days=rng.randint(0, 5))
    style = number % 3
    update: dict[str, object] = {"content": body}
    if style == 0:  # a portal: the agency's name, 년도, words run together
        organisation = AGENCY_OF.get(original.issuing_organization, original.issuing_organization)
        update |= {"title": title.replace(f"{year}년", f"{year}년도").replace(" 공고", " 참여자 모집 공고"),
                   "issuing_organization": organisation,
                   "application_start_date": original.application_start_date + shift,
                   "application_end_date": original.application_end_date + shift}
    elif style == 1:  # a ministry board: the title's words in another order, the year at the end
        words = [word for word in title.split() if year not in word and word not in ("공고", "모집")]
        update |= {"title": " ".join(words) + f" 모집 공고({year})"}
    else:  # a press release: the ministry's short name first, no region, dates or industries
        press = PRESS_NAME_OF.get(ministry or "", "")
        words = [word for word in title.split()
                 if word.strip("[]()") not in PROVINCE_WORDS.values() and word.strip("[]()") != "전국"]
        update |= {"title": (f"{press}, " if press else "") + " ".join(words),
                   "issuing_organization": "정책브리핑" if press else original.issuing_organization,
                   "target_region": [], "target_industry": [],
                   "application_start_date": None, "application_end_date": None}
    source = f"copy_{style}"
    external_id = f"CPY-{number:07d}"
    update |= {"original_url": f"https://www.{source}.go.kr/view?id={external_id}", "raw_data": {"id": external_id},
               "collection_metadata": CollectionMetadata(source=source, external_id=external_id,
                                                         collected_at=datetime.now(UTC))}
    return original.model_copy(update=update)
