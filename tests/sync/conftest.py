"""A factory of `SyncDocument`s for the sync unit tests: built by keyword arguments only, so the tests do not
depend on the order of its fields nor on which class declares them (`SyncDocument` extends the domain's
`PolicyContent`). A default is passed only for a field the class has (`external_id` came with `PolicyContent`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from aegis_pipeline.sync.targets.base import SyncDocument

MakeDocument = Callable[..., SyncDocument]


def make_document(**overrides: Any) -> SyncDocument:
    fields: dict[str, Any] = {
        "id": "3f2c8a4e-0000-4000-8000-000000000001",
        "version": 3,
        "checksum": "0000002a" + "b" * 56,  # digest 0x2a = 42
        "source_system": "bizinfo",
        "external_id": "PBLN_000000000101",
        "title": "스마트공장 구축 지원사업",
        "content": "중소기업의 스마트공장 구축을 지원합니다.",
        "issuing_organization": "중소벤처기업부",
        "target_region": ("서울", "부산"),
        "target_industry": ("제조업",),
        "funding_type": "보조금",
        "application_start_date": date(2025, 3, 1),
        "application_end_date": date(2025, 4, 30),
        "original_url": "https://www.bizinfo.go.kr/p/1",
        "quality_score": 0.87,
        "status": "active",
        "canonical_id": None,
        "duplicate_ids": (),
        "duplicate_of": None,
    }
    declared = {field.name for field in dataclasses.fields(SyncDocument)}
    fields = {name: value for name, value in fields.items() if name in declared}
    fields.update(overrides)
    return SyncDocument(**fields)


@pytest.fixture
def document() -> MakeDocument:
    """`document(**overrides)`: a complete active policy as the targets receive it."""
    return make_document
