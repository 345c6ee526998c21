"""Unit tests of THE policy (domain/policy.py): its content fields are defined once, the input model names the same
fields, and every stage's view of a policy extends it and reads exactly its own fields."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest

from aegis_pipeline.cold_path import store as cold_store
from aegis_pipeline.cold_path.records import PolicyRecord
from aegis_pipeline.domain.policy import (
    POLICY_ARRAY_COLUMNS,
    POLICY_CONTENT_COLUMNS,
    CleanPolicy,
    PolicyContent,
    content_from_columns,
    content_values,
)
from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData
from aegis_pipeline.hot_path import processor
from aegis_pipeline.hot_path import store as hot_store
from aegis_pipeline.sync import source as sync_source
from aegis_pipeline.sync.targets.base import SyncDocument

# RawPolicyData carries the identity in `collection_metadata`, under these names.
IDENTITY_IN_METADATA = {"source_system": "source", "external_id": "external_id"}
RAW_ONLY = {"raw_data", "collection_metadata"}  # the source's own record, and where and when it was collected


def test_the_input_model_names_the_content_fields_and_no_other() -> None:
    """A field added to PolicyContent or to RawPolicyData only fails here: the two must agree."""
    raw_content = set(RawPolicyData.model_fields) - RAW_ONLY
    assert raw_content | set(IDENTITY_IN_METADATA) == set(POLICY_CONTENT_COLUMNS)
    assert set(IDENTITY_IN_METADATA.values()) <= set(CollectionMetadata.model_fields)
    assert not raw_content & set(IDENTITY_IN_METADATA)


def test_the_input_model_maps_every_field_onto_the_content() -> None:
    record = RawPolicyData(
        title="제목", content="내용", issuing_organization="기관", target_region=["서울특별시"],
        target_industry="제조업@정보통신업", funding_type="보조금", application_start_date=date(2026, 3, 2),
        application_end_date=date(2026, 3, 31), original_url="https://x.go.kr/1",
        collection_metadata=CollectionMetadata(source="src", external_id="1", collected_at=datetime.now(UTC)))
    content = record.policy_content()
    assert type(content) is PolicyContent
    for name in POLICY_CONTENT_COLUMNS:
        expected = getattr(record.collection_metadata, IDENTITY_IN_METADATA[name]) if name in IDENTITY_IN_METADATA \
            else getattr(record, name)
        assert getattr(content, name) == (tuple(expected) if name in POLICY_ARRAY_COLUMNS else expected), name


def test_the_column_list_is_the_content_fields_in_order() -> None:
    assert POLICY_CONTENT_COLUMNS == (
        "source_system", "external_id", "title", "content", "issuing_organization", "target_region",
        "target_industry", "funding_type", "application_start_date", "application_end_date", "original_url")
    assert POLICY_ARRAY_COLUMNS == ("target_region", "target_industry")


@pytest.mark.parametrize("view", [CleanPolicy, PolicyRecord, SyncDocument])
def test_every_view_extends_the_content_and_is_a_frozen_slotted_keyword_value(view: type) -> None:
    assert issubclass(view, PolicyContent)
    assert [field.name for field in dataclasses.fields(view)][:len(POLICY_CONTENT_COLUMNS)] == list(
        POLICY_CONTENT_COLUMNS)
    params = view.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen and "__slots__" in view.__dict__
    assert all(field.kw_only for field in dataclasses.fields(view))


def row(**extra: object) -> dict[str, object]:
    content = {"source_system": "src", "external_id": "1", "title": "제목", "content": "내용",
               "issuing_organization": "기관", "target_region": ["서울특별시"], "target_industry": None,
               "funding_type": None, "application_start_date": date(2026, 3, 2), "application_end_date": None,
               "original_url": None}
    return content | extra


def test_a_row_read_back_gives_the_content_with_arrays_as_tuples() -> None:
    content = content_from_columns(row(unrelated="ignored"))
    assert list(content) == list(POLICY_CONTENT_COLUMNS)
    assert content["target_region"] == ("서울특별시",) and content["target_industry"] == ()
    assert content_values(PolicyContent(**content)) == tuple(content.values())


def test_the_cold_path_reads_every_field_of_its_record_and_only_those() -> None:
    now = datetime.now(UTC)
    own = {"id": "7", "collected_at": now, "created_at": now, "updated_at": now, "version": 2, "status": "active"}
    assert {field.name for field in dataclasses.fields(PolicyRecord)} == set(POLICY_CONTENT_COLUMNS) | set(own)
    columns = [part.strip().split(" AS ")[-1].removeprefix("p.") for part in cold_store._POLICY_COLUMNS.split(",")]
    assert sorted(columns) == sorted(field.name for field in dataclasses.fields(PolicyRecord))
    record = cold_store.record_of(row(**own))  # type: ignore[arg-type]
    assert record.id == "7" and record.version == 2 and record.target_industry == ()


def test_the_sync_reads_the_content_and_its_own_fields() -> None:
    own = {"id": "7", "version": 2, "checksum": "c", "quality_score": 0.9, "status": "active", "canonical_id": None,
           "duplicate_ids": None, "duplicate_of": None}
    assert {field.name for field in dataclasses.fields(SyncDocument)} == set(POLICY_CONTENT_COLUMNS) | set(own)
    assert all(f"p.{name}" in sync_source._DOCUMENT_COLUMNS for name in POLICY_CONTENT_COLUMNS)
    document = sync_source._document(row(**own))  # type: ignore[arg-type]
    assert document.external_id == "1" and document.duplicate_ids == () and document.target_region == ("서울특별시",)


def test_the_hot_path_writes_and_announces_the_content_columns() -> None:
    assert hot_store._STORED_COLUMNS[:len(POLICY_CONTENT_COLUMNS)] == POLICY_CONTENT_COLUMNS
    assert set(processor.POLICY_VALIDATED_FIELDS) == {*POLICY_CONTENT_COLUMNS, "content_hash", "collected_at"}
