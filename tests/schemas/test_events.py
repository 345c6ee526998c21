"""Unit tests of the event contracts: schemas/events.py, schemas/event_schemas/*.json and docs/events.md."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.domain.hashing import published_hash
from aegis_pipeline.domain.policy import ProcessingPath
from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData
from aegis_pipeline.schemas import events
from aegis_pipeline.schemas.events import (
    FORMAT_CHECKER,
    SCHEMA_PACKAGE,
    SCHEMA_VERSION,
    EventSchemaError,
    EventType,
    build_event,
    encode_event,
    event_key,
    fact_event_id,
    load_schema,
    validate_event,
)

KST = timezone(timedelta(hours=9))
PRODUCER = "data-pipeline/1.0.0"
POLICY_ID = "3f1c2b7e-8a4d-4c1e-9b2f-6d5e4a3b2c1d"
EVENT_ID = "9b0e5f4a-2c3d-4e8f-a1b2-c3d4e5f6a7b8"
DOC = (Path(__file__).parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
DELETE = object()  # a mutation value: remove the field


def policy_validated_data() -> dict[str, Any]:
    return {
        "policy_id": POLICY_ID,
        "title": "2026년 스마트공장 보급·확산사업 공고",
        "content": "중소·중견 제조기업의 스마트공장 구축을 지원합니다. 기초 단계 최대 1억 원(총사업비의 50% 이내).",
        "issuing_organization": "중소벤처기업부",
        "processing_path": "hot",
        "source_system": "bizinfo",
        "external_id": "PBLN_000000000112233",
        "version": 1,
        "content_hash": "67560d2d64b19630406965691536bc5125d6ef96a433b9a8db0297e8c7ebde1d",
        "collected_at": datetime(2026, 3, 2, 9, 0, 12, 345678, tzinfo=KST),
        "validated_at": datetime(2026, 3, 2, 0, 0, 12, 912034, tzinfo=UTC),
        "target_region": ["서울특별시", "경기도"],
        "target_industry": ["제조업"],
        "funding_type": "보조금",
        "application_start_date": date(2026, 3, 3),
        "application_end_date": date(2026, 3, 31),
        "original_url": "https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/74/view.do?pblancId=PBLN_000000000112233",
    }


def quality_updated_data() -> dict[str, Any]:
    return {
        "policy_id": POLICY_ID,
        "quality_score": {
            "total_score": 0.87,
            "completeness": 0.9,
            "accuracy": 0.95,
            "consistency": 0.8,
            "timeliness": 0.75,
        },
        "status": "active",
        "updated_at": "2026-03-02T01:05:41.198830Z",
        "reasons": ["신청 기간 종료일이 30일 이내입니다"],
        "version": 1,
    }


def sync_completed_data() -> dict[str, Any]:
    return {
        "sync_id": "sync__2026-03-02T01:10:00Z",
        "target_databases": ["milvus", "neo4j", "elasticsearch"],
        "policies_synced": 128,
        "sync_results": [
            {"target_db": "milvus", "success": True, "records_synced": 128},
            {"target_db": "neo4j", "success": True, "records_synced": 128},
            {"target_db": "elasticsearch", "success": False, "records_synced": 126, "errors": ["DP_3003: 매핑 충돌"]},
        ],
        "synced_at": datetime(2026, 3, 2, 1, 10, 3, tzinfo=UTC),
    }


def policy_archived_data() -> dict[str, Any]:
    return {
        "policy_id": POLICY_ID, "version": 2, "reason": "closed", "source_system": "kstartup",
        "external_id": "175032", "application_end_date": "2026-11-20", "archived_at": "2026-12-06T01:00:02.411250Z",
    }


def policy_state_data() -> dict[str, Any]:
    data = {name: value for name, value in policy_validated_data().items()
            if name not in ("processing_path", "collected_at", "validated_at")}
    return {**data, "version": 2, "status": "active", "quality_score": 0.87,
            "updated_at": datetime(2026, 3, 2, 1, 5, 41, 198830, tzinfo=UTC)}


PAYLOADS: dict[EventType, Callable[[], dict[str, Any]]] = {
    EventType.POLICY_VALIDATED: policy_validated_data,
    EventType.DATA_QUALITY_UPDATED: quality_updated_data,
    EventType.DATA_SYNC_COMPLETED: sync_completed_data,
    EventType.POLICY_ARCHIVED: policy_archived_data,
    EventType.POLICY_STATE: policy_state_data,
}


def mutated(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `data` with the dotted `path` (list indexes as numbers) set to `value` or deleted."""
    result = copy.deepcopy(data)
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    target: Any = result
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return result


def jsonschema_accepts(event: dict[str, Any]) -> bool:
    """The plain jsonschema verdict, without the module's fast path."""
    envelope = Draft202012Validator(load_schema("envelope"), format_checker=FORMAT_CHECKER)
    if not envelope.is_valid(event):
        return False
    payload = Draft202012Validator(load_schema(event["event_type"]), format_checker=FORMAT_CHECKER)
    return payload.is_valid(event["data"])


def refusal(call: Callable[[], object]) -> EventSchemaError:
    with pytest.raises(EventSchemaError) as caught:
        call()
    return caught.value


# --- building valid events -----------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", list(EventType), ids=[t.value for t in EventType])
def test_each_event_type_builds_and_validates(event_type: EventType) -> None:
    event = build_event(event_type, PAYLOADS[event_type](), producer=PRODUCER)

    assert set(event) == {"event_id", "event_type", "schema_version", "occurred_at", "producer", "data"}
    assert event["event_type"] == event_type.value
    assert event["schema_version"] == SCHEMA_VERSION == "1.0"
    assert event["producer"] == PRODUCER
    assert uuid.UUID(event["event_id"]).version == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["occurred_at"])
    validate_event(event)
    validate_event(json.loads(encode_event(event)))  # as a consumer reads it
    assert jsonschema_accepts(event)


def test_values_are_made_json_ready() -> None:
    data = policy_validated_data() | {"policy_id": uuid.UUID(POLICY_ID), "processing_path": ProcessingPath.HOT}
    data["target_region"] = ("서울특별시", "경기도")
    event = build_event(
        EventType.POLICY_VALIDATED, data, producer=PRODUCER, occurred_at=datetime(2026, 3, 2, 9, 0, tzinfo=KST)
    )
    payload = event["data"]

    assert event["occurred_at"] == "2026-03-02T00:00:00.000000Z"
    assert payload["collected_at"] == "2026-03-02T00:00:12.345678Z"  # KST converted to UTC
    assert payload["validated_at"] == "2026-03-02T00:00:12.912034Z"
    assert payload["application_start_date"] == "2026-03-03"
    assert payload["policy_id"] == POLICY_ID and type(payload["policy_id"]) is str
    assert payload["processing_path"] == "hot" and type(payload["processing_path"]) is str
    assert payload["target_region"] == ["서울특별시", "경기도"]
    assert json.loads(json.dumps(event)) == event


def test_build_event_copies_and_never_changes_its_input() -> None:
    data = sync_completed_data()
    before = copy.deepcopy(data)
    event = build_event(EventType.DATA_SYNC_COMPLETED, data, producer=PRODUCER)
    event["data"]["sync_results"][0]["records_synced"] = 0

    assert data == before


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("quality_score.total_score", 0),
        ("quality_score.total_score", 1),
        ("quality_score.timeliness", 0.0),
        ("reasons", []),
        ("version", DELETE),
        ("reasons", DELETE),
    ],
    ids=["score-int-0", "score-int-1", "score-float-0", "no-reasons", "without-version", "without-reasons"],
)
def test_quality_updated_boundaries_and_optional_fields_are_accepted(path: str, value: Any) -> None:
    build_event(EventType.DATA_QUALITY_UPDATED, mutated(quality_updated_data(), path, value), producer=PRODUCER)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("funding_type", None),
        ("application_start_date", None),
        ("application_end_date", None),
        ("original_url", None),
        ("target_region", []),
        ("target_industry", DELETE),
        ("funding_type", DELETE),
        ("original_url", "http://www.k-startup.go.kr/web/contents/bizpbanc-ongoing.do"),
        ("processing_path", "cold"),
    ],
    ids=[
        "funding-null",
        "start-null",
        "end-null",
        "url-null",
        "regions-empty",
        "industries-absent",
        "funding-absent",
        "url-http",
        "cold-path",
    ],
)
def test_policy_validated_optional_fields_may_be_null_or_absent(path: str, value: Any) -> None:
    build_event(EventType.POLICY_VALIDATED, mutated(policy_validated_data(), path, value), producer=PRODUCER)


def test_a_record_as_collected_fits_policy_validated() -> None:
    """The record model (domain/records.py) and the event agree on names and forms."""
    record = RawPolicyData(
        title="2026년 청년창업사관학교 입교생 모집 공고",
        content="만 39세 이하 예비창업자 및 3년 이내 창업기업 대표를 모집합니다.",
        issuing_organization="중소벤처기업진흥공단",
        target_region="서울@부산@광주",
        target_industry="전 업종",
        funding_type="사업화 자금",
        application_start_date=date(2026, 2, 1),
        application_end_date=date(2026, 2, 28),
        original_url="https://www.k-startup.go.kr/",
        collection_metadata=CollectionMetadata(
            source="k_startup", external_id="174512", collected_at=datetime(2026, 1, 31, 23, 0, tzinfo=UTC)
        ),
    )
    data = record.model_dump(exclude={"raw_data", "collection_metadata"}) | {
        "policy_id": uuid.uuid4(),
        "processing_path": ProcessingPath.HOT,
        "source_system": record.collection_metadata.source,
        "external_id": record.collection_metadata.external_id,
        "version": 1,
        "content_hash": published_hash(record),
        "collected_at": record.collection_metadata.collected_at,
        "validated_at": datetime.now(UTC),
    }
    event = build_event(EventType.POLICY_VALIDATED, data, producer=PRODUCER)

    assert event["data"]["target_region"] == ["서울", "부산", "광주"]


# --- refusals --------------------------------------------------------------------------------------------------


def _required_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every required field of a schema as a dotted path; inside arrays, of the first item (index 0)."""
    for name in schema.get("required", ()):
        yield f"{prefix}{name}"
    for name, subschema in schema.get("properties", {}).items():
        if name not in schema.get("required", ()):
            continue
        if subschema.get("type") == "object":
            yield from _required_paths(subschema, f"{prefix}{name}.")
        elif subschema.get("type") == "array" and isinstance(subschema.get("items"), dict):
            yield from _required_paths(subschema["items"], f"{prefix}{name}.0.")


REQUIRED_CASES = [(event_type, path) for event_type in EventType for path in _required_paths(load_schema(event_type))]


@pytest.mark.parametrize(("event_type", "path"), REQUIRED_CASES, ids=[f"{t.value}:{p}" for t, p in REQUIRED_CASES])
def test_every_missing_required_field_is_refused_by_name(event_type: EventType, path: str) -> None:
    data = mutated(PAYLOADS[event_type](), path, DELETE)

    error = refusal(lambda: build_event(event_type, data, producer=PRODUCER))

    assert f"data.{path}: is required" in str(error)
    assert error.details["paths"] == [f"data.{path}"]


def test_required_lists_keep_the_designs_fields() -> None:
    """Design §5.3's required lists are kept (and tightened, never loosened)."""
    design_required = {
        EventType.POLICY_VALIDATED: {"policy_id", "title", "content", "issuing_organization"},
        EventType.DATA_QUALITY_UPDATED: {"policy_id", "quality_score", "status"},
        EventType.DATA_SYNC_COMPLETED: {"sync_id", "target_databases", "policies_synced"},
    }
    for event_type, fields in design_required.items():
        assert fields <= set(load_schema(event_type)["required"]), event_type


ENVELOPE_FIELDS = ["event_id", "event_type", "schema_version", "occurred_at", "producer", "data"]


@pytest.mark.parametrize("field", ENVELOPE_FIELDS)
def test_every_missing_envelope_field_is_refused_by_name(field: str) -> None:
    event = build_event(EventType.DATA_QUALITY_UPDATED, quality_updated_data(), producer=PRODUCER)
    del event[field]

    error = refusal(lambda: validate_event(event))

    assert f"{field}: is required" in str(error)


BAD_DATA = [
    # (event type, dotted path in data, value, path named in the error, id)
    (EventType.POLICY_VALIDATED, "policy_id", "not-a-uuid", "data.policy_id", "policy-id-not-uuid"),
    (EventType.POLICY_VALIDATED, "policy_id", POLICY_ID.upper(), "data.policy_id", "policy-id-uppercase"),
    (EventType.POLICY_VALIDATED, "policy_id", POLICY_ID.replace("-", ""), "data.policy_id", "policy-id-no-dashes"),
    (EventType.POLICY_VALIDATED, "policy_id", 42, "data.policy_id", "policy-id-number"),
    (EventType.POLICY_VALIDATED, "content_hash", "z" * 64, "data.content_hash", "hash-not-hex"),
    (EventType.POLICY_VALIDATED, "content_hash", "ab" * 16, "data.content_hash", "hash-too-short"),
    (EventType.POLICY_VALIDATED, "content_hash", "AB" * 32, "data.content_hash", "hash-uppercase"),
    (EventType.POLICY_VALIDATED, "processing_path", "warm", "data.processing_path", "path-not-enum"),
    (EventType.POLICY_VALIDATED, "version", 0, "data.version", "version-zero"),
    (EventType.POLICY_VALIDATED, "version", "1", "data.version", "version-string"),
    (EventType.POLICY_VALIDATED, "version", True, "data.version", "version-bool"),
    (EventType.POLICY_VALIDATED, "version", 1.5, "data.version", "version-fraction"),
    (EventType.POLICY_VALIDATED, "title", "", "data.title", "title-empty"),
    (EventType.POLICY_VALIDATED, "title", "가" * 501, "data.title", "title-too-long"),
    (EventType.POLICY_VALIDATED, "source_system", "BizInfo", "data.source_system", "source-not-a-source-name"),
    (EventType.POLICY_VALIDATED, "target_region", "서울", "data.target_region", "region-not-array"),
    (EventType.POLICY_VALIDATED, "target_industry", ["제조업", 7], "data.target_industry.1", "industry-item-number"),
    (EventType.POLICY_VALIDATED, "funding_type", "", "data.funding_type", "funding-empty"),
    (EventType.POLICY_VALIDATED, "application_end_date", "2026/03/31", "data.application_end_date", "date-slashes"),
    (EventType.POLICY_VALIDATED, "application_end_date", "2026-02-30", "data.application_end_date", "date-no-day"),
    (EventType.POLICY_VALIDATED, "application_start_date", "20260303", "data.application_start_date", "date-basic"),
    (EventType.POLICY_VALIDATED, "collected_at", "2026-03-02T09:00:00+09:00", "data.collected_at", "time-not-utc"),
    (EventType.POLICY_VALIDATED, "collected_at", "2026-13-02T00:00:00Z", "data.collected_at", "time-month-13"),
    (EventType.POLICY_VALIDATED, "collected_at", "2026-03-02 00:00:00Z", "data.collected_at", "time-space"),
    (EventType.POLICY_VALIDATED, "validated_at", "어제", "data.validated_at", "time-words"),
    (EventType.POLICY_VALIDATED, "original_url", "ftp://example.go.kr/a", "data.original_url", "url-not-http"),
    (EventType.POLICY_VALIDATED, "raw_data", {"a": 1}, "data.raw_data", "unknown-payload-field"),
    (EventType.DATA_QUALITY_UPDATED, "quality_score.total_score", 1.5, "data.quality_score.total_score", "score-1.5"),
    (EventType.DATA_QUALITY_UPDATED, "quality_score.accuracy", -0.1, "data.quality_score.accuracy", "score-negative"),
    (EventType.DATA_QUALITY_UPDATED, "quality_score.consistency", "0.8", "data.quality_score.consistency", "score-str"),
    (EventType.DATA_QUALITY_UPDATED, "quality_score.freshness", 0.5, "data.quality_score.freshness", "score-extra"),
    (EventType.DATA_QUALITY_UPDATED, "quality_score", 0.87, "data.quality_score", "score-not-object"),
    (EventType.DATA_QUALITY_UPDATED, "status", "published", "data.status", "status-published"),
    (EventType.DATA_QUALITY_UPDATED, "status", "pending_validation", "data.status", "status-pending"),
    (EventType.DATA_QUALITY_UPDATED, "reasons", "중복", "data.reasons", "reasons-not-array"),
    (EventType.DATA_QUALITY_UPDATED, "updated_at", "2026-03-02", "data.updated_at", "updated-at-date-only"),
    (EventType.DATA_SYNC_COMPLETED, "sync_id", "", "data.sync_id", "sync-id-empty"),
    (EventType.DATA_SYNC_COMPLETED, "sync_id", "sync 42", "data.sync_id", "sync-id-space"),
    (EventType.DATA_SYNC_COMPLETED, "target_databases", ["mysql"], "data.target_databases.0", "target-unknown"),
    (EventType.DATA_SYNC_COMPLETED, "target_databases", [], "data.target_databases", "targets-empty"),
    (EventType.DATA_SYNC_COMPLETED, "target_databases", ["neo4j", "neo4j"], "data.target_databases", "targets-twice"),
    (EventType.DATA_SYNC_COMPLETED, "policies_synced", -1, "data.policies_synced", "synced-negative"),
    (EventType.DATA_SYNC_COMPLETED, "sync_results.0.success", "yes", "data.sync_results.0.success", "success-str"),
    (EventType.DATA_SYNC_COMPLETED, "sync_results.1.target_db", "graph", "data.sync_results.1.target_db", "db-name"),
    (EventType.DATA_SYNC_COMPLETED, "sync_results.2.records_synced", -3, "data.sync_results.2.records_synced", "neg"),
    (EventType.DATA_SYNC_COMPLETED, "sync_results.0.took_ms", 12, "data.sync_results.0.took_ms", "result-extra"),
    (EventType.DATA_SYNC_COMPLETED, "sync_results.2.errors", "실패", "data.sync_results.2.errors", "errors-str"),
    (EventType.POLICY_STATE, "status", "rejected", "data.status", "state-not-active"),
    (EventType.POLICY_STATE, "quality_score", 1.2, "data.quality_score", "state-score-above-1"),
]


@pytest.mark.parametrize(
    ("event_type", "path", "value", "named"), [case[:4] for case in BAD_DATA], ids=[case[4] for case in BAD_DATA]
)
def test_wrong_types_enums_and_formats_are_refused(event_type: EventType, path: str, value: Any, named: str) -> None:
    data = mutated(PAYLOADS[event_type](), path, value)

    error = refusal(lambda: build_event(event_type, data, producer=PRODUCER))

    assert str(error).startswith(f"DP_4003: {event_type.value} (schema 1.0) breaks its contract: ")
    assert f"{named}: " in str(error)
    assert error.details["paths"] == [named]
    assert error.code is ErrorCode.BATCH_PROCESSING_ERROR
    assert error.retriable is False


def test_every_violation_is_named_at_once() -> None:
    data = mutated(mutated(quality_updated_data(), "status", "published"), "policy_id", DELETE)
    data["quality_score"]["total_score"] = 1.5

    error = refusal(lambda: build_event(EventType.DATA_QUALITY_UPDATED, data, producer=PRODUCER))

    assert sorted(error.details["paths"]) == ["data.policy_id", "data.quality_score.total_score", "data.status"]
    assert error.details["event_type"] == "data.quality_updated"


def test_a_huge_value_is_not_repeated_whole_in_the_message() -> None:
    data = policy_validated_data() | {"content": "가" * 200_001}

    error = refusal(lambda: build_event(EventType.POLICY_VALIDATED, data, producer=PRODUCER))

    assert "data.content: " in str(error)
    assert str(error).endswith("is too long")
    assert len(str(error)) < 400


BAD_ENVELOPES = [
    # (field, value, path named in the error, id)
    ("trace_id", "abc", "trace_id", "unknown-envelope-field"),
    ("schema_version", "2.0", "schema_version", "version-2"),
    ("schema_version", "1", "schema_version", "version-no-minor"),
    ("event_type", "policy.deleted", "event_type", "unknown-type"),
    ("event_id", "not-a-uuid", "event_id", "event-id-not-uuid"),
    ("occurred_at", "2026-03-02T09:00:00+09:00", "occurred_at", "occurred-not-utc"),
    ("occurred_at", 1772409600, "occurred_at", "occurred-epoch"),
    ("producer", "Data Pipeline", "producer", "producer-no-version"),
    ("data", [], "data", "data-not-object"),
]


@pytest.mark.parametrize(
    ("field", "value", "named"), [case[:3] for case in BAD_ENVELOPES], ids=[case[3] for case in BAD_ENVELOPES]
)
def test_bad_envelopes_are_refused(field: str, value: Any, named: str) -> None:
    event = build_event(EventType.POLICY_VALIDATED, policy_validated_data(), producer=PRODUCER)
    event[field] = value

    error = refusal(lambda: validate_event(event))

    assert named in error.details["paths"]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"event_id": "42"}, "event_id"),
        ({"producer": "data-pipeline"}, "producer"),
        ({"occurred_at": datetime(2026, 3, 2, 9, 0)}, "occurred_at"),
    ],
    ids=["event-id-not-uuid", "producer-without-version", "occurred-at-naive"],
)
def test_build_event_refuses_bad_envelope_arguments(kwargs: dict[str, Any], named: str) -> None:
    arguments = {"producer": PRODUCER} | kwargs

    error = refusal(lambda: build_event(EventType.DATA_SYNC_COMPLETED, sync_completed_data(), **arguments))

    assert error.details["paths"] == [named]


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (datetime(2026, 3, 2, 9, 0), "data.synced_at"),
        (float("nan"), "data.policies_synced"),
        (object(), "data.policies_synced"),
        ({1: "a"}, "data.sync_results"),
    ],
    ids=["naive-datetime", "nan", "object", "non-string-key"],
)
def test_values_without_a_json_form_are_refused_by_path(value: Any, named: str) -> None:
    field = named.removeprefix("data.")
    data = sync_completed_data() | {field: value}

    error = refusal(lambda: build_event(EventType.DATA_SYNC_COMPLETED, data, producer=PRODUCER))

    assert error.details["paths"] == [named]


def test_unknown_event_type_and_non_mapping_are_refused() -> None:
    assert refusal(lambda: build_event("policy.deleted", {}, producer=PRODUCER)).details["paths"] == ["event_type"]  # type: ignore[arg-type]
    assert refusal(lambda: validate_event(["not", "an", "event"])).details["paths"] == ["(event)"]  # type: ignore[arg-type]
    assert refusal(lambda: build_event(EventType.POLICY_VALIDATED, [], producer=PRODUCER)).details["paths"] == ["data"]  # type: ignore[arg-type]


# --- identity, key, encoding -----------------------------------------------------------------------------------


def test_fact_event_id_is_one_id_per_fact() -> None:
    policy_id = policy_validated_data()["policy_id"]
    first = fact_event_id(EventType.POLICY_VALIDATED, policy_id, 1)

    assert first == fact_event_id(EventType.POLICY_VALIDATED, policy_id, 1)  # announced again: the same event
    assert uuid.UUID(first).version == 5
    assert first != fact_event_id(EventType.POLICY_VALIDATED, policy_id, 2)  # another version: another event
    assert first != fact_event_id(EventType.DATA_QUALITY_UPDATED, policy_id, 1)
    built = build_event(EventType.POLICY_VALIDATED, policy_validated_data(), producer=PRODUCER, event_id=first)
    assert built["event_id"] == first


@settings(max_examples=500)
@given(st.lists(st.text() | st.integers(), max_size=4))
def test_fact_event_id_is_the_standard_uuid5(fact: list[str | int]) -> None:
    # The hand-rolled UUID5 must be uuid.uuid5 exactly: ids already announced must never change.
    name = ":".join([EventType.POLICY_VALIDATED.value, *(str(part) for part in fact)])
    expected = str(uuid.uuid5(events.FACT_EVENT_ID_NAMESPACE, name))
    assert fact_event_id(EventType.POLICY_VALIDATED, *fact) == expected


def test_event_id_is_kept_when_given_so_a_repeat_is_the_same_event() -> None:
    occurred = datetime(2026, 3, 2, 0, 0, 12, 913201, tzinfo=UTC)
    first = build_event(
        EventType.POLICY_VALIDATED, policy_validated_data(), producer=PRODUCER, event_id=EVENT_ID, occurred_at=occurred
    )
    repeat = build_event(
        EventType.POLICY_VALIDATED, policy_validated_data(), producer=PRODUCER, event_id=EVENT_ID, occurred_at=occurred
    )

    assert first["event_id"] == EVENT_ID
    assert encode_event(repeat) == encode_event(first)


def test_new_events_get_new_ids() -> None:
    ids = {build_event(EventType.DATA_QUALITY_UPDATED, quality_updated_data(), producer=PRODUCER)["event_id"]}
    ids.add(build_event(EventType.DATA_QUALITY_UPDATED, quality_updated_data(), producer=PRODUCER)["event_id"])
    assert len(ids) == 2


@pytest.mark.parametrize(
    ("event_type", "key"),
    [
        (EventType.POLICY_VALIDATED, POLICY_ID.encode()),
        (EventType.DATA_QUALITY_UPDATED, POLICY_ID.encode()),
        (EventType.DATA_SYNC_COMPLETED, b"sync__2026-03-02T01:10:00Z"),
    ],
    ids=["policy-validated-by-policy", "quality-updated-by-policy", "sync-completed-by-run"],
)
def test_event_key(event_type: EventType, key: bytes) -> None:
    assert event_key(build_event(event_type, PAYLOADS[event_type](), producer=PRODUCER)) == key


def test_event_key_of_an_event_without_its_key_field_is_refused() -> None:
    refusal(lambda: event_key({"event_type": "policy.validated", "data": {}}))
    refusal(lambda: event_key({"event_type": "policy.deleted", "data": {"policy_id": POLICY_ID}}))


def test_encode_event_round_trips_korean_text_as_compact_utf8() -> None:
    event = build_event(EventType.POLICY_VALIDATED, policy_validated_data(), producer=PRODUCER)

    raw = encode_event(event)

    assert "스마트공장 보급·확산사업".encode() in raw
    assert b"\\u" not in raw
    assert b'":' in raw and b'": ' not in raw and b'", "' not in raw
    assert json.loads(raw.decode("utf-8")) == event


# --- the schema files and the fast path ------------------------------------------------------------------------

SCHEMA_FILES = sorted(entry.name for entry in resources.files(SCHEMA_PACKAGE).iterdir() if entry.name.endswith(".json"))


def test_there_is_one_schema_file_per_event_type_and_the_envelope() -> None:
    expected = {"envelope.v1.json"} | {f"{event_type.value}.v1.json" for event_type in EventType}
    assert set(SCHEMA_FILES) == expected


@pytest.mark.parametrize("file_name", SCHEMA_FILES)
def test_every_schema_file_is_a_valid_draft_2020_12_schema(file_name: str) -> None:
    schema = json.loads(resources.files(SCHEMA_PACKAGE).joinpath(file_name).read_text(encoding="utf-8"))

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False


class _IntSubclass(int):
    pass


def _every_case() -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(id, event, whether jsonschema accepts it): the realistic events, every refusal case, and odd values."""
    for event_type, make in PAYLOADS.items():
        yield f"realistic-{event_type.value}", build_event(event_type, make(), producer=PRODUCER), True
    for event_type, path, value, _, case_id in BAD_DATA:
        event = build_event(event_type, PAYLOADS[event_type](), producer=PRODUCER)
        event["data"] = mutated(event["data"], path, value)
        yield case_id, event, False
    for field, value, _, case_id in BAD_ENVELOPES:
        event = build_event(EventType.POLICY_VALIDATED, policy_validated_data(), producer=PRODUCER)
        event[field] = value
        yield case_id, event, False
    # Values the fast path is not sure of: jsonschema decides (and accepts them).
    base = build_event(EventType.DATA_QUALITY_UPDATED, quality_updated_data(), producer=PRODUCER)
    yield "nan-score", mutated(base, "data.quality_score.total_score", float("nan")), True
    yield "int-subclass-version", mutated(base, "data.version", _IntSubclass(2)), True
    yield "integral-float-version", mutated(base, "data.version", 2.0), True


EVERY_CASE = list(_every_case())


@pytest.mark.parametrize(("event", "valid"), [case[1:] for case in EVERY_CASE], ids=[case[0] for case in EVERY_CASE])
def test_the_fast_path_accepts_only_what_jsonschema_accepts(event: dict[str, Any], valid: bool) -> None:
    assert jsonschema_accepts(event) is valid
    if events._accepted(event):
        assert valid
    if valid:
        validate_event(event)
    else:
        refusal(lambda: validate_event(event))


@pytest.mark.parametrize("event_type", list(EventType), ids=[t.value for t in EventType])
def test_realistic_events_take_the_fast_path(event_type: EventType) -> None:
    assert events._accepted(build_event(event_type, PAYLOADS[event_type](), producer=PRODUCER))


# --- the consumer documentation ----------------------------------------------------------------------------------


def _doc_section(heading_contains: str) -> str:
    sections = re.split(r"^## ", DOC, flags=re.MULTILINE)
    found = [section for section in sections if heading_contains in section.splitlines()[0]]
    assert len(found) == 1, heading_contains
    return found[0]


def _documented_names(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, subschema in schema.get("properties", {}).items():
        yield f"{prefix}{name}"
        if subschema.get("type") == "object" and "properties" in subschema:
            yield from _documented_names(subschema, f"{prefix}{name}.")
        elif subschema.get("type") == "array" and "properties" in subschema.get("items", {}):
            yield from _documented_names(subschema["items"], f"{prefix}{name}[].")


DOC_SECTIONS = [("envelope", "Envelope")] + [(event_type.value, f"`{event_type.value}`") for event_type in EventType]


@pytest.mark.parametrize(("schema_name", "heading"), DOC_SECTIONS, ids=[name for name, _ in DOC_SECTIONS])
def test_the_doc_has_a_table_row_for_every_field_of_every_schema(schema_name: str, heading: str) -> None:
    section = _doc_section(heading)
    rows = {match.group(1) for match in re.finditer(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)}
    fields = set(_documented_names(load_schema(schema_name)))

    assert fields - rows == set(), "fields missing from the doc table"
    assert rows - fields == set(), "doc rows that are not fields of the schema"
    assert f"{schema_name}.v1.json" in section


def test_the_docs_examples_are_valid_events_of_every_type() -> None:
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOC, flags=re.DOTALL)]
    for example in examples:
        validate_event(example)
        assert jsonschema_accepts(example)
    assert sorted(example["event_type"] for example in examples) == sorted(EventType)


def test_the_doc_states_the_topic_key_delivery_and_versioning_rules() -> None:
    for phrase in ("`policy-events`", "At least once", "same `event_id`", "Per-policy order", "Versioning"):
        assert phrase in DOC
