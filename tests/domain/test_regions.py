"""Unit tests of the regions (domain/regions.py): one canonical name per 시·도, whatever way a source writes it."""

from __future__ import annotations

import unicodedata

import pytest

from aegis_pipeline.domain.regions import NATIONWIDE, PROVINCES, canonical_region, region_as_in_table

REGIONS = [
    ("서울", "서울특별시"), ("서울시", "서울특별시"), ("서울특별시", "서울특별시"), ("서울 특별시", "서울특별시"),
    ("11", "서울특별시"), ("1100000000", "서울특별시"),
    ("부산", "부산광역시"), ("부산시", "부산광역시"), ("부산광역시", "부산광역시"), ("26", "부산광역시"),
    ("대구", "대구광역시"), ("대구시", "대구광역시"), ("27", "대구광역시"),
    ("인천", "인천광역시"), ("인천광역시", "인천광역시"), ("28", "인천광역시"),
    ("광주", "광주광역시"), ("광주광역시", "광주광역시"), ("29", "광주광역시"),
    ("대전", "대전광역시"), ("대전시", "대전광역시"), ("30", "대전광역시"),
    ("울산", "울산광역시"), ("울산광역시", "울산광역시"), ("31", "울산광역시"),
    ("세종", "세종특별자치시"), ("세종시", "세종특별자치시"), ("세종특별자치시", "세종특별자치시"),
    ("36", "세종특별자치시"),
    ("경기", "경기도"), ("경기도", "경기도"), ("41", "경기도"),
    ("강원", "강원특별자치도"), ("강원도", "강원특별자치도"), ("강원특별자치도", "강원특별자치도"),
    ("42", "강원특별자치도"), ("51", "강원특별자치도"),
    ("충북", "충청북도"), ("충청북도", "충청북도"), ("43", "충청북도"),
    ("충남", "충청남도"), ("충청남도", "충청남도"), ("44", "충청남도"),
    ("전북", "전북특별자치도"), ("전라북도", "전북특별자치도"), ("전북특별자치도", "전북특별자치도"),
    ("45", "전북특별자치도"), ("52", "전북특별자치도"),
    ("전남", "전라남도"), ("전라남도", "전라남도"), ("46", "전라남도"),
    ("경북", "경상북도"), ("경상북도", "경상북도"), ("47", "경상북도"),
    ("경남", "경상남도"), ("경남도", "경상남도"), ("경상남도", "경상남도"), ("48", "경상남도"),
    ("제주", "제주특별자치도"), ("제주도", "제주특별자치도"), ("제주특별자치도", "제주특별자치도"),
    ("50", "제주특별자치도"),
    ("전국", "전국"),
    (unicodedata.normalize("NFD", "서울"), "서울특별시"),
    # Kept as written: not a 시·도, ambiguous, or unknown.
    ("광주시", "광주시"),  # also 경기도 광주시
    ("제주시", "제주시"),  # a city inside 제주특별자치도
    ("성동구", "성동구"), ("수원시", "수원시"), ("99", "99"), ("해외", "해외"), ("Seoul", "Seoul"),
]


@pytest.mark.parametrize(("value", "expected"), REGIONS, ids=[f"{value}->{expected}" for value, expected in REGIONS])
def test_regions_have_one_canonical_name(value: str, expected: str) -> None:
    assert canonical_region(value) == expected


def test_every_province_has_a_code_and_a_canonical_name() -> None:
    codes = ["11", "26", "27", "28", "29", "30", "31", "36", "41", "43", "44", "46", "47", "48", "50", "51", "52"]
    assert len({canonical_region(code) for code in codes}) == 17
    assert {canonical_region(code) for code in codes} == {
        "서울특별시", "부산광역시", "대구광역시", "인천광역시", "광주광역시", "대전광역시", "울산광역시",
        "세종특별자치시", "경기도", "강원특별자치도", "충청북도", "충청남도", "전북특별자치도", "전라남도",
        "경상북도", "경상남도", "제주특별자치도",
    }



def test_the_province_table_and_the_fast_lookup_agree_with_canonical_region() -> None:
    assert len(PROVINCES) == 17 and NATIONWIDE == "전국"
    assert all(canonical_region(province) == province for province in PROVINCES)
    assert region_as_in_table("서울") == "서울특별시" == canonical_region("서울")
    assert region_as_in_table("서울 특별시") is None and canonical_region("서울 특별시") == "서울특별시"
    assert region_as_in_table("성동구") is None
