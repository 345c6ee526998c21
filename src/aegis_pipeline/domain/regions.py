"""Regions: one canonical name per 시·도 for the many ways sources write it (names, spacing, codes).

- `canonical_region(value)`: ``서울`` / ``서울시`` / ``서울 특별시`` / ``11`` -> ``서울특별시``; ``전국`` stays
  ``전국``; anything else (a 시·군·구, an unknown code, an ambiguous ``광주시``) is returned unchanged.
- `region_as_in_table(value)`: the canonical name of a value written exactly as in the table, else ``None`` (the
  usual case, and the fastest: no normalisation).
- `PROVINCES` (the 17 시·도 by their canonical names) and `NATIONWIDE`: the cold path reads titles and target
  regions through them.

Pure: no I/O. May import the standard library and `domain.text` only.
"""

from __future__ import annotations

from aegis_pipeline.domain.text import nfc, without_whitespace

__all__ = ["NATIONWIDE", "PROVINCES", "canonical_region", "region_as_in_table"]

# One row per 시·도: canonical name, administrative codes (행정표준코드 / 법정동코드, first two digits; the
# old codes of 강원 and 전북 before they became 특별자치도 too), and the other names sources use.
# Deliberately absent: "광주시" (also 경기도 광주시) and "제주시" (a city inside 제주특별자치도), which are kept
# as written; 통계청 statistical codes (21 부산, 26 울산 ...), which collide with the administrative ones.
_PROVINCES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("서울특별시", ("11",), ("서울", "서울시")),
    ("부산광역시", ("26",), ("부산", "부산시")),
    ("대구광역시", ("27",), ("대구", "대구시")),
    ("인천광역시", ("28",), ("인천", "인천시")),
    ("광주광역시", ("29",), ("광주",)),
    ("대전광역시", ("30",), ("대전", "대전시")),
    ("울산광역시", ("31",), ("울산", "울산시")),
    ("세종특별자치시", ("36",), ("세종", "세종시", "세종특별시")),
    ("경기도", ("41",), ("경기",)),
    ("강원특별자치도", ("51", "42"), ("강원", "강원도")),
    ("충청북도", ("43",), ("충북", "충북도")),
    ("충청남도", ("44",), ("충남", "충남도")),
    ("전북특별자치도", ("52", "45"), ("전북", "전북도", "전라북도")),
    ("전라남도", ("46",), ("전남", "전남도")),
    ("경상북도", ("47",), ("경북", "경북도")),
    ("경상남도", ("48",), ("경남", "경남도")),
    ("제주특별자치도", ("50",), ("제주", "제주도")),
)
NATIONWIDE = "전국"
PROVINCES = tuple(canonical for canonical, _, _ in _PROVINCES)  # the 17 시·도 by their canonical names


def _region_lookup() -> dict[str, str]:
    lookup = {NATIONWIDE: NATIONWIDE}
    for canonical, codes, other_names in _PROVINCES:
        for name in (canonical, *other_names):
            lookup[name] = canonical
        for code in codes:
            lookup[code] = canonical
            lookup[code + "00000000"] = canonical  # the 10-digit 법정동코드 of the 시·도 itself
    return lookup


_REGION_BY_NAME_OR_CODE = _region_lookup()
region_as_in_table = _REGION_BY_NAME_OR_CODE.get


def canonical_region(value: str) -> str:
    """The canonical name of a 시·도 (``서울`` / ``서울시`` / ``서울 특별시`` / ``11`` -> ``서울특별시``).

    Names are compared without whitespace; ``전국`` stays ``전국``; anything else (a 시·군·구, an unknown code,
    an ambiguous ``광주시``) is returned unchanged.
    """
    written_as_in_table = _REGION_BY_NAME_OR_CODE.get(value)
    if written_as_in_table is not None:
        return written_as_in_table
    return _REGION_BY_NAME_OR_CODE.get(without_whitespace(nfc(value)), value)
