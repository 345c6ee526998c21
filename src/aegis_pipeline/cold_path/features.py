"""Text features of a Korean policy announcement that scoring and duplicate detection both read: years and
provinces a title names, round markers (상반기, 2차, 추가), the organisation behind a name or an abbreviation,
and the title and body reduced to what identifies a program.

Pure: no I/O, no clock. Imports the standard library and `domain.regions` (the province table) only.
"""

from __future__ import annotations

import re
import unicodedata

from aegis_pipeline.domain.regions import NATIONWIDE, PROVINCES, canonical_region

_YEAR = re.compile(r"(?<![0-9])(20[0-9]{2}|19[0-9]{2})(?![0-9])")
_SHORT_YEAR = re.compile(r"['’‘](\d{2})(?:년|\b)")  # '26년 = 2026
# A year the title names as a reference point, not as the programme's year: "2019년 이후 창업", "2020년대",
# "1990년생", "2025년 기준", "2030년까지".
_REFERENCE_YEAR = re.compile(
    r"(?<![0-9])(?:19|20)[0-9]{2}\s*(?:년도|년)?(?:(?:대|생)(?![가-힣])|\s*(?:이후|이전|부터|까지|기준))"
)
_YEAR_WORD = re.compile(r"(?<![0-9])(?:19|20)[0-9]{2}\s*(?:년도|년)?|['’‘][0-9]{2}\s*(?:년도|년)?")
_ROUND = re.compile(r"(?<![0-9])([0-9]{1,2})\s*차(?!량)|(상반기|하반기|추가|1분기|2분기|3분기|4분기)")
_NOTICE_NUMBER = re.compile(r"제\s*([0-9][0-9\-]*)\s*호")  # 공고 제2026-112호: the issuer's number of the notice
_HTML_TAG = re.compile(r"<[^>]{1,200}>")
_NOT_WORD = re.compile(r"[^0-9a-z가-힣]+")

# Every way a title names a 시·도, read through the domain's region table (서울, 서울시, 서울특별시 ...).
_PROVINCE_NAMES = (
    "서울특별시", "서울시", "서울", "부산광역시", "부산시", "부산", "대구광역시", "대구시", "대구",
    "인천광역시", "인천시", "인천", "광주광역시", "광주", "대전광역시", "대전시", "대전", "울산광역시",
    "울산시", "울산", "세종특별자치시", "세종시", "세종", "경기도", "경기", "강원특별자치도", "강원도",
    "강원", "충청북도", "충북", "충청남도", "충남", "전북특별자치도", "전라북도", "전북", "전라남도",
    "전남", "경상북도", "경북", "경상남도", "경남", "제주특별자치도", "제주도", "제주",
)
# A province name counts when it is not glued to the next syllable of another word (대구 in 대구경북 counts,
# 경기 in 경기침체 does not): followed by a space, punctuation, 도/시 forms handled by the longer names, or the end.
_PROVINCE_IN_TEXT = re.compile(
    "(?<![가-힣])(" + "|".join(sorted(map(re.escape, _PROVINCE_NAMES), key=len, reverse=True)) + ")(?![가-힣])"
)

# 전국 as a word of its own ("(전국)", "[전국]"): the programme's scope, like a 시·도, not part of its name.
_NATIONWIDE_IN_TEXT = re.compile(f"(?<![가-힣]){NATIONWIDE}(?![가-힣])")

# Ministries as the press writes them (정책브리핑: "중기부, ..."), and agencies with the ministry they belong to:
# a program announced by 창업진흥원 on one site and by 중소벤처기업부 on another is one program.
_ORG_ALIASES = {
    "중기부": "중소벤처기업부", "중소기업벤처부": "중소벤처기업부", "고용부": "고용노동부",
    "노동부": "고용노동부", "과기정통부": "과학기술정보통신부", "과기부": "과학기술정보통신부",
    "산업부": "산업통상자원부", "산자부": "산업통상자원부", "농식품부": "농림축산식품부",
    "농림부": "농림축산식품부", "문체부": "문화체육관광부", "복지부": "보건복지부", "국토부": "국토교통부",
    "해수부": "해양수산부", "환경부": "환경부", "교육부": "교육부", "여가부": "여성가족부",
    "행안부": "행정안전부", "기재부": "기획재정부", "금융위": "금융위원회",
}
_PARENT_MINISTRY = {
    "창업진흥원": "중소벤처기업부", "소상공인시장진흥공단": "중소벤처기업부",
    "중소벤처기업진흥공단": "중소벤처기업부", "중소기업기술정보진흥원": "중소벤처기업부",
    "기술보증기금": "중소벤처기업부", "정보통신산업진흥원": "과학기술정보통신부",
    "한국지능정보사회진흥원": "과학기술정보통신부", "한국산업기술진흥원": "산업통상자원부",
    "대한무역투자진흥공사": "산업통상자원부", "kotra": "산업통상자원부", "한국고용정보원": "고용노동부",
    "한국산업인력공단": "고용노동부", "농림수산식품교육문화정보원": "농림축산식품부",
    "한국관광공사": "문화체육관광부", "한국콘텐츠진흥원": "문화체육관광부", "한국환경산업기술원": "환경부",
    "한국해양수산개발원": "해양수산부",
}
# Names that say who published the text, not who runs the program.
_PUBLISHERS = frozenset({
    "정책브리핑", "대한민국정책브리핑", "기업마당", "공공데이터포털", "보도자료", "미상", "없음", "-",
})
_ORG_NOISE = re.compile(r"\((?:재|사|주|독)\)|㈜|㈔|\s+")

# Words every announcement title carries: they say nothing about which program it is.
_GENERIC_TITLE_WORDS = (
    "공고", "모집", "안내", "공모", "신청", "접수", "알림", "공지", "재공고", "시행", "계획", "지원사업", "사업",
    "참여", "참가", "선정", "대상자", "및", "관련", "변경", "정정", "예고", "통합",
)
_GENERIC_IN_TITLE = re.compile("|".join(sorted(map(re.escape, _GENERIC_TITLE_WORDS), key=len, reverse=True)))


# Every value `provinces_in` and `province_scope` can give: a closed set, which duplicate blocking enumerates.
PROVINCE_SCOPES = (*PROVINCES, NATIONWIDE)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def years_in(text: str) -> frozenset[int]:
    """Years written in `text` (2026, '26년), as numbers."""
    years = {int(match) for match in _YEAR.findall(text)}
    years.update(2000 + int(match) for match in _SHORT_YEAR.findall(text))
    return frozenset(years)


def programme_years_in(title: str) -> frozenset[int]:
    """The years a title gives as the programme's own (``2026년 ...``), without years it names as a reference
    point (``2019년 이후 창업``, ``2020년대``, ``2025년 기준``)."""
    return years_in(_REFERENCE_YEAR.sub(" ", nfc(title)))


def rounds_in(text: str) -> frozenset[str]:
    """Round markers of an announcement: ``2차``, ``상반기``, ``추가`` ... (the same program, another call)."""
    found = set()
    for number, word in _ROUND.findall(text):
        found.add(f"{int(number)}차" if number else word)
    return frozenset(found)


def notice_numbers_in(text: str) -> frozenset[str]:
    """The issuer's notice numbers in a text (``공고 제2026-112호`` -> {"2026-112"})."""
    return frozenset(_NOTICE_NUMBER.findall(nfc(text)))


def provinces_in(text: str) -> frozenset[str]:
    """Canonical names of the 시·도 a text names (``서울 캠퍼스타운`` -> {서울특별시})."""
    return frozenset(canonical_region(match) for match in _PROVINCE_IN_TEXT.findall(nfc(text)))


def province_scope(regions: tuple[str, ...] | list[str]) -> frozenset[str]:
    """The 시·도 (or 전국) among stored target regions; sub-province names (성동구) are not a scope."""
    canonical = {canonical_region(region) for region in regions}
    return frozenset(region for region in canonical if region == NATIONWIDE or provinces_in(region) == {region})


def organisation_family(organisation: str, title: str = "") -> str | None:
    """Who runs the program, as one comparable name: abbreviations spelled out, an agency as its ministry, a
    city or province by its canonical name. A publisher (정책브리핑) is not an organisation: then a ministry
    named at the start of the title (``중기부, 2026년 ...``) is used, else None (unknown)."""
    name = _ORG_NOISE.sub("", nfc(organisation)).lower()
    if not name or name in _PUBLISHERS:
        prefix = re.match(r"\s*\[?([가-힣a-z]{2,12})[\],]", nfc(title).lower())
        if prefix is None:
            return None
        name = prefix.group(1)
        if name not in _ORG_ALIASES and name not in _PARENT_MINISTRY and not provinces_in(name):
            return None
    name = _ORG_ALIASES.get(name, name)
    name = _PARENT_MINISTRY.get(name, name)
    return canonical_region(name)


def is_publisher(organisation: str) -> bool:
    """The name says who published the text (정책브리핑, 기업마당), not who runs the programme."""
    return _ORG_NOISE.sub("", nfc(organisation)).lower() in _PUBLISHERS


def organisations_related(first: str | None, second: str | None) -> bool:
    """Same family, or one is a department of the other (``서울특별시경제정책실`` and ``서울특별시``); an unknown
    side cannot tell them apart."""
    if first is None or second is None:
        return True
    return first == second or first in second or second in first


def industry_scope(industries: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Industries without their suffixes (제조업 -> 제조, 관광산업 -> 관광); 전체 and 기타 say nothing."""
    scope = set()
    for industry in industries:
        name = _NOT_WORD.sub("", nfc(industry).lower())
        for suffix in ("산업", "업"):
            if name.endswith(suffix) and len(name) > len(suffix) + 1:
                name = name[: -len(suffix)]
                break
        if name and name not in ("전체", "기타", "전업종", "전산업", "해당없음"):
            scope.add(name)
    return frozenset(scope)


def industries_overlap(first: frozenset[str], second: frozenset[str]) -> bool:
    if not first or not second:
        return True
    return any(a == b or a in b or b in a for a in first for b in second)


def title_identity(title: str) -> str:
    """The title reduced to what names the program: lower case, no markup, no punctuation or spaces, without
    years, round markers, province names and 전국, ministry abbreviations and the words every title has (공고,
    모집 ...)."""
    text = _HTML_TAG.sub(" ", nfc(title)).lower()
    text = _YEAR_WORD.sub(" ", text)
    text = _ROUND.sub(" ", text)
    text = _PROVINCE_IN_TEXT.sub(" ", text)
    text = _NATIONWIDE_IN_TEXT.sub(" ", text)
    for alias in _ORG_ALIASES:
        text = text.replace(alias, " ")
    text = _NOT_WORD.sub(" ", text)
    text = _GENERIC_IN_TITLE.sub(" ", text)
    return "".join(text.split())


def body_identity(content: str) -> str:
    """The body as comparable text: lower case, no markup, no punctuation, no spaces."""
    return "".join(_NOT_WORD.sub(" ", _HTML_TAG.sub(" ", nfc(content)).lower()).split())


def shingles(text: str, size: int) -> frozenset[str]:
    """Character n-grams; a text shorter than `size` is its own single shingle (none when empty)."""
    if len(text) <= size:
        return frozenset({text}) if text else frozenset()
    return frozenset(text[index : index + size] for index in range(len(text) - size + 1))
