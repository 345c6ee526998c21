"""Unit tests of schemas/fact_events.py: the ids of data.quality_updated and data.sync_completed follow the fact
(the same fact, the same id, however its time was read back; another scoring or another recorded run, another
id), and an envelope depends on nothing but the stored values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aegis_pipeline.schemas.events import EventType, fact_event_id, validate_event
from aegis_pipeline.schemas.fact_events import (
    QualityScoring,
    SyncRunRecord,
    quality_updated_envelope,
    quality_updated_event_id,
    sync_completed_envelope,
    sync_completed_event_id,
)

PRODUCER = "data-pipeline/1.0.0"
POLICY_ID = "3f1c2b7e-8a4d-4c1e-9b2f-6d5e4a3b2c1d"
SCORED_AT = datetime(2026, 3, 2, 1, 5, 41, 198830, tzinfo=UTC)
KST = timezone(timedelta(hours=9))


def scoring(**changes: object) -> QualityScoring:
    values: dict[str, object] = {
        "policy_id": POLICY_ID, "version": 2, "status": "rejected",
        "scores": {"timeliness": 0.75, "total_score": 0.41, "completeness": 0.9, "accuracy": 0.5, "consistency": 0.2},
        "reasons": ["DP_2002: 품질 점수 0.41 < 0.70"], "scored_at": SCORED_AT,
    }
    values.update(changes)
    return QualityScoring(**values)  # type: ignore[arg-type]


def sync_run(**changes: object) -> SyncRunRecord:
    values: dict[str, object] = {
        "sync_id": "airflow:scheduled__2026-03-02T01:00:00+00:00",
        "results": [
            {"target": "vectors", "store": "milvus", "success": True, "upserted": 120, "deleted": 8, "deferred": 0,
             "encoded": 3, "error_code": None, "error": None, "duration_seconds": 4.2},
            {"target": "search", "store": "elasticsearch", "success": False, "upserted": 100, "deleted": 0,
             "deferred": 0, "encoded": 0, "error_code": "DP_3003", "error": "DP_3003: index unavailable",
             "duration_seconds": 1.0},
        ],
        "policies_synced": 128, "finished_at": datetime(2026, 3, 2, 1, 10, 3, 551007, tzinfo=UTC),
    }
    values.update(changes)
    return SyncRunRecord(**values)  # type: ignore[arg-type]


def test_a_scoring_has_one_id_however_its_time_was_read_back() -> None:
    first = quality_updated_event_id(POLICY_ID, 2, SCORED_AT)

    assert uuid.UUID(first).version == 5
    assert first == quality_updated_event_id(POLICY_ID, 2, SCORED_AT.astimezone(KST))  # the same instant
    assert first == fact_event_id(EventType.DATA_QUALITY_UPDATED, POLICY_ID, 2, "2026-03-02T01:05:41.198830+00:00")
    # Scored again (same version, another time: --rescore-all), or another version: another event.
    assert first != quality_updated_event_id(POLICY_ID, 2, SCORED_AT + timedelta(microseconds=1))
    assert first != quality_updated_event_id(POLICY_ID, 3, SCORED_AT)


def test_a_naive_time_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="naive"):
        quality_updated_event_id(POLICY_ID, 2, SCORED_AT.replace(tzinfo=None))


def test_the_quality_envelope_is_built_from_the_stored_values_only() -> None:
    envelope = quality_updated_envelope(scoring(), producer=PRODUCER)

    validate_event(envelope)
    assert envelope["event_id"] == quality_updated_event_id(POLICY_ID, 2, SCORED_AT)
    assert envelope["occurred_at"] == envelope["data"]["updated_at"] == "2026-03-02T01:05:41.198830Z"
    assert list(envelope["data"]["quality_score"]) == [  # the schema's order, whatever order the row gave
        "total_score", "completeness", "accuracy", "consistency", "timeliness"]
    assert envelope["data"]["reasons"] == ["DP_2002: 품질 점수 0.41 < 0.70"]
    # Built again (the broker watch, from the row read back): the same envelope.
    assert quality_updated_envelope(scoring(reasons=("DP_2002: 품질 점수 0.41 < 0.70",),
                                            scored_at=SCORED_AT.astimezone(KST)), producer=PRODUCER) == envelope


def test_a_recorded_sync_run_has_one_id_and_a_retry_under_its_run_id_another() -> None:
    run = sync_run()
    envelope = sync_completed_envelope(run, producer=PRODUCER)

    validate_event(envelope)
    assert envelope["event_id"] == sync_completed_event_id(run.sync_id, run.finished_at)
    assert sync_completed_envelope(sync_run(), producer=PRODUCER) == envelope
    retry = sync_run(finished_at=run.finished_at + timedelta(minutes=5))
    assert sync_completed_envelope(retry, producer=PRODUCER)["event_id"] != envelope["event_id"]
    assert envelope["occurred_at"] == envelope["data"]["synced_at"] == "2026-03-02T01:10:03.551007Z"
    assert envelope["data"]["target_databases"] == ["milvus", "elasticsearch"]
    assert envelope["data"]["sync_results"] == [
        {"target_db": "milvus", "success": True, "records_synced": 128},
        {"target_db": "elasticsearch", "success": False, "records_synced": 100,
         "errors": ["DP_3003: index unavailable"]},
    ]
