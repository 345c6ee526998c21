"""The catalogue topic's messages without a broker: the `policy.state` document (schemas/policy_state.py), the
outbox events that carry it or a tombstone (stores/catalogue.py, stores/outbox.py) and how a reader applies them.
The real topic, end to end: tests/end_to_end/test_late_consumer.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from aegis_pipeline.domain.hashing import content_hash
from aegis_pipeline.domain.policy import PolicyContent
from aegis_pipeline.schemas.events import validate_event
from aegis_pipeline.schemas.policy_state import LeftCatalogue, PolicyState, policy_state_envelope
from aegis_pipeline.settings import CoreSettings
from aegis_pipeline.stores.catalogue import Catalogue, policy_state_events

POLICY_ID = "3f1c2b7e-8a4d-4c1e-9b2f-6d5e4a3b2c1d"
DECIDED_AT = datetime(2026, 12, 6, 1, 5, 41, 198830, tzinfo=UTC)
SETTINGS = CoreSettings(kafka_topic_policy_state="state-test")
POLICY = PolicyContent(
    source_system="bizinfo", external_id="PBLN_000000000112233", title="2026년 스마트공장 보급·확산사업 공고",
    content="중소·중견 제조기업의 스마트공장 구축을 지원합니다.", issuing_organization="중소벤처기업부",
    target_region=("전국",), target_industry=(), funding_type=None, application_start_date=date(2026, 12, 1),
    application_end_date=None, original_url="https://www.bizinfo.go.kr/a")


def state(**changes: Any) -> PolicyState:
    values: dict[str, Any] = {"policy_id": POLICY_ID, "version": 2, "policy": POLICY, "quality_score": 0.87,
                              "decided_at": DECIDED_AT, **changes}
    return PolicyState(**values)


def test_the_state_document_is_complete_and_valid() -> None:
    envelope = policy_state_envelope(state(), producer="data-pipeline/1.0.0")

    validate_event(envelope)
    data = envelope["data"]
    assert data["status"] == "active" and data["version"] == 2 and data["quality_score"] == 0.87
    assert data["target_industry"] == [] and data["funding_type"] is None and data["application_end_date"] is None
    assert data["content_hash"] == content_hash(POLICY)
    assert data["updated_at"] == envelope["occurred_at"] == "2026-12-06T01:05:41.198830Z"


def test_the_same_decision_is_the_same_document_and_another_decision_another() -> None:
    kst = timezone(timedelta(hours=9))
    first = policy_state_envelope(state(), producer="data-pipeline/1.0.0")
    # Read back from PostgreSQL in another time zone, by another release: the same document.
    again = policy_state_envelope(state(decided_at=DECIDED_AT.astimezone(kst)), producer="data-pipeline/1.1.0")

    assert again["event_id"] == first["event_id"] and again["data"] == first["data"]
    assert policy_state_envelope(state(version=3), producer="x/1")["event_id"] != first["event_id"]
    later = DECIDED_AT + timedelta(hours=1)
    assert policy_state_envelope(state(decided_at=later), producer="x/1")["event_id"] != first["event_id"]


def test_a_policy_that_left_is_a_tombstone_a_null_value_whose_row_keeps_an_envelope() -> None:
    kept, left = policy_state_events(SETTINGS, [
        state(), LeftCatalogue(policy_id=POLICY_ID, status="archived", left_at=DECIDED_AT)])

    assert (kept.topic, kept.key, kept.event_type) == ("state-test", POLICY_ID, "policy.state")
    assert kept.value == kept.payload and orjson.loads(kept.payload) == kept.envelope
    assert (left.topic, left.key, left.event_type) == ("state-test", POLICY_ID, "policy.state.tombstone")
    assert left.value is None  # what the relay sends
    assert left.envelope["data"] == {"policy_id": POLICY_ID, "status": "archived"}  # what the outbox row keeps
    assert left.event_id != kept.event_id


def record(offset: int, key: str, value: dict[str, Any] | None, partition: int = 0) -> ConsumerRecord:
    return ConsumerRecord(topic="state-test", partition=partition, offset=offset, timestamp=0, timestamp_type=0,
                          key=key.encode(), value=None if value is None else orjson.dumps(value), checksum=None,
                          serialized_key_size=0, serialized_value_size=0, headers=())


def test_the_reader_keeps_the_last_value_of_each_key_and_drops_what_it_cannot_read() -> None:
    document = policy_state_envelope(state(), producer="data-pipeline/1.0.0")
    other = "9b0e5f4a-2c3d-4e8f-a1b2-c3d4e5f6a7b8"
    catalogue = Catalogue("state-test")

    catalogue.apply(record(0, POLICY_ID, document), validate=True)
    catalogue.apply(record(1, other, {**document, "data": {**document["data"], "policy_id": other}}))
    catalogue.apply(record(2, POLICY_ID, None))                                           # it left
    assert catalogue.apply(record(0, other, {**document, "schema_version": "2.0"}, partition=1)) is None

    assert catalogue.versions() == {other: 2}
    assert catalogue.offsets == {0: 3, 1: 1}
