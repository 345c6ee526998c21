"""Unit tests of the content hash (domain/hashing.py): one recipe, over a policy's content fields in column order,
for the stored policy and for the record as published."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_pipeline.domain.hashing import HASH_SCHEME, content_hash, content_hash_of_values, published_hash
from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS, PolicyContent
from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData


def policy(**changes: object) -> PolicyContent:
    values: dict[str, object] = {
        "source_system": "bizinfo", "external_id": "PBLN_1", "title": "스마트공장 구축 지원사업 공고",
        "content": "중소기업의 스마트공장 구축을 지원합니다.", "issuing_organization": "중소벤처기업부",
        "target_region": ("서울특별시", "경기도"), "target_industry": ("제조업",), "funding_type": "보조금",
        "application_start_date": date(2026, 3, 2), "application_end_date": date(2026, 3, 31),
        "original_url": "https://www.bizinfo.go.kr/view.do?id=1",
    }
    values.update(changes)
    return PolicyContent(**values)  # type: ignore[arg-type]


def documented(content: PolicyContent) -> str:
    """The recipe, spelled out: changing it changes the hash of every stored policy (one new version each)."""
    values = [getattr(content, name) for name in POLICY_CONTENT_COLUMNS]
    array = [HASH_SCHEME, *(value.isoformat() if isinstance(value, date) else value for value in values)]
    return hashlib.sha256(json.dumps(array, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def test_the_hash_is_sha256_of_the_scheme_and_the_content_columns_as_a_json_array() -> None:
    assert HASH_SCHEME == "clean-policy/1"
    assert content_hash(policy()) == documented(policy())
    assert content_hash(policy(application_end_date=None, funding_type=None)) == documented(
        policy(application_end_date=None, funding_type=None))


_TEXT = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from('"\\\x07\x1f\x7f\u2028/'), max_size=40)


@given(title=_TEXT, content=_TEXT, regions=st.lists(_TEXT, max_size=3))
@settings(max_examples=300, deadline=None)
def test_the_fast_encoding_writes_what_the_recipe_says_for_any_text(title: str, content: str,
                                                                    regions: list[str]) -> None:
    # orjson for speed; the recipe says json.dumps. One byte of difference would give every policy a new version.
    subject = policy(title=title, content=content, target_region=tuple(regions))
    assert content_hash(subject) == documented(subject)


def test_values_are_taken_in_column_order_and_lists_hash_as_tuples() -> None:
    subject = policy()
    values = [getattr(subject, name) for name in POLICY_CONTENT_COLUMNS]
    assert content_hash_of_values(values) == content_hash(subject)
    values[POLICY_CONTENT_COLUMNS.index("target_region")] = ["서울특별시", "경기도"]
    assert content_hash_of_values(values) == content_hash(subject)
    with pytest.raises(ValueError, match="content columns"):
        content_hash_of_values(values[:-1])


def test_every_content_field_counts() -> None:
    base = content_hash(policy())
    changed = {"source_system": "kstartup", "external_id": "PBLN_2", "title": "다른 공고", "content": "다른 내용",
               "issuing_organization": "고용노동부", "target_region": ("부산광역시",), "target_industry": (),
               "funding_type": None, "application_start_date": None, "application_end_date": date(2026, 4, 1),
               "original_url": None}
    assert set(changed) == set(POLICY_CONTENT_COLUMNS)
    for name, value in changed.items():
        assert content_hash(policy(**{name: value})) != base, name


def test_the_published_hash_is_the_same_recipe_over_the_record_as_published() -> None:
    record = RawPolicyData(
        title="스마트공장 구축 지원사업 공고", content="중소기업의 스마트공장 구축을 지원합니다.",
        issuing_organization="중소벤처기업부", target_region="서울특별시@경기도", target_industry=["제조업"],
        funding_type="보조금", application_start_date=date(2026, 3, 2), application_end_date=date(2026, 3, 31),
        original_url="https://www.bizinfo.go.kr/view.do?id=1", raw_data={"any": "thing"},
        collection_metadata=CollectionMetadata(source="bizinfo", external_id="PBLN_1",
                                               collected_at=datetime(2026, 3, 1, tzinfo=UTC)))
    assert published_hash(record) == content_hash(policy())
    later = record.model_copy(update={"raw_data": {}, "collection_metadata": CollectionMetadata(
        source="bizinfo", external_id="PBLN_1", collected_at=datetime(2026, 4, 1, tzinfo=UTC),
        collector_version="2.0")})
    assert published_hash(later) == published_hash(record)  # not when, not how, not the unmapped fields
