"""The `data.quality_updated`, `data.sync_completed` and `policy.archived` events, each built by one function from
what PostgreSQL stores of the fact it announces: one scoring of one policy version, one recorded sync run, one
archiving of a policy.

The writer that stores the fact builds its event with that function from the very values it stores (the cold
path, `cold_path/run.py`; the sync run, `sync/run.py`). After a broker lost its data, the hot path's broker watch
(`hot_path/broker_watch.py`) reads the stored row back and builds the event again with the same function. Same
function, same values: the same envelope, so a consumer that de-duplicates on `event_id` drops the repeat. For
that, nothing in the envelope may depend on the moment it is built:

- `event_id` is derived from the fact (`events.fact_event_id`, a UUID5), never drawn at random.
  `data.quality_updated`: the policy id, the scored version and the time of the scoring. The time is part of
  it because a version can be scored again (`cold-path run --rescore-all`, a duplicate whose canonical record
  went away) with another result, which is a new fact and must be a new event.
  `data.sync_completed`: the sync run id and the time the run finished. The time is part of it because an
  Airflow retry of the sync task runs again under the same run id and records a second run with its own
  results: with the run id alone, consumers would drop the retry's event as a repeat of the failed attempt's.
- `occurred_at` is the fact's stored time (`updated_at` of the scoring, `synced_at` of the run), not the send's.

Only `producer` can differ from the first send: it names the release that built the envelope.

May import: the standard library, `schemas.events`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from aegis_pipeline.schemas.events import EventType, build_event, fact_event_id

# The components of `data.quality_updated`'s `quality_score`, in the order they are written (the columns of
# `quality_metrics` by the same names).
QUALITY_SCORE_FIELDS = ("total_score", "completeness", "accuracy", "consistency", "timeliness")


def _instant(value: datetime) -> str:
    """One spelling per instant, whatever the time zone it was read back in: an id must not depend on it."""
    if value.utcoffset() is None:
        raise ValueError(f"{value!r} is a naive datetime: give an aware one")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


# --- data.quality_updated -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityScoring:
    """One scoring of one policy version, as the cold path stores it (`cold_path/store.py`): on `policies`,
    `status`, `status_reasons`, `scored_version` and `scored_at`; the scores in the `quality_metrics` row written
    with them (its `calculated_at` is the same `scored_at`)."""

    policy_id: str
    version: int                  # the version scored
    status: str                   # "active" or "rejected"
    scores: Mapping[str, float]   # each of QUALITY_SCORE_FIELDS
    reasons: Sequence[str]        # for people; a rejection's start with its DP code
    scored_at: datetime           # when the status and score were stored (the database's clock)


def quality_updated_event_id(policy_id: str, version: int, scored_at: datetime) -> str:
    """The event id of one scoring: the same every time that scoring is announced, another for a new scoring."""
    return fact_event_id(EventType.DATA_QUALITY_UPDATED, policy_id, version, _instant(scored_at))


def quality_updated_envelope(scoring: QualityScoring, *, producer: str) -> dict[str, Any]:
    """The `data.quality_updated` envelope of `scoring` (checked against its schema)."""
    data = {
        "policy_id": scoring.policy_id,
        "quality_score": {name: scoring.scores[name] for name in QUALITY_SCORE_FIELDS},
        "status": scoring.status,
        "updated_at": scoring.scored_at,
        "reasons": list(scoring.reasons),
        "version": scoring.version,
    }
    return build_event(EventType.DATA_QUALITY_UPDATED, data, producer=producer,
                       event_id=quality_updated_event_id(scoring.policy_id, scoring.version, scoring.scored_at),
                       occurred_at=scoring.scored_at)


# --- data.sync_completed ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncRunRecord:
    """One sync run as `sync/run.py` records it in `pipeline_metadata` (`metadata.kind` = "sync"): its id
    (`pipeline_run_id`), one result per target (`metadata.results`, each a `TargetResult.as_dict()`: of which
    `store`, `success`, `upserted`, `deleted` and `error` are read here), how many policies it synced
    (`records_processed`) and when it finished (`completed_at`)."""

    sync_id: str
    results: Sequence[Mapping[str, Any]]
    policies_synced: int
    finished_at: datetime


def sync_completed_event_id(sync_id: str, finished_at: datetime) -> str:
    """The event id of one recorded sync run: the same every time it is announced; a retry recorded under the
    same run id finishes at another time, hence another event."""
    return fact_event_id(EventType.DATA_SYNC_COMPLETED, sync_id, _instant(finished_at))


def sync_completed_envelope(run: SyncRunRecord, *, producer: str) -> dict[str, Any]:
    """The `data.sync_completed` envelope of `run` (checked against its schema)."""
    results = []
    for result in run.results:
        item: dict[str, Any] = {"target_db": result["store"], "success": result["success"],
                                "records_synced": result["upserted"] + result["deleted"]}
        if result.get("error"):
            item["errors"] = [result["error"]]
        results.append(item)
    data = {
        "sync_id": run.sync_id,
        "target_databases": [result["store"] for result in run.results],
        "policies_synced": run.policies_synced,
        "sync_results": results,
        "synced_at": run.finished_at,
    }
    return build_event(EventType.DATA_SYNC_COMPLETED, data, producer=producer,
                       event_id=sync_completed_event_id(run.sync_id, run.finished_at), occurred_at=run.finished_at)


# --- policy.archived ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Archiving:
    """One archiving of one policy version, as the cold path stores it (`cold_path/lifecycle.py`): on `policies`,
    `status = 'archived'`, `archived_reason` and `archived_at`."""

    policy_id: str
    version: int
    reason: str                   # "closed" or "withdrawn"
    source_system: str
    external_id: str
    application_end_date: date | None
    archived_at: datetime


def policy_archived_envelope(archiving: Archiving, *, producer: str) -> dict[str, Any]:
    """The `policy.archived` envelope of `archiving` (checked against its schema). Its id: the policy, the version
    and the time, since a version archived, brought back and archived again is a new fact."""
    data = {
        "policy_id": archiving.policy_id, "version": archiving.version, "reason": archiving.reason,
        "source_system": archiving.source_system, "external_id": archiving.external_id,
        "application_end_date": archiving.application_end_date, "archived_at": archiving.archived_at,
    }
    event_id = fact_event_id(EventType.POLICY_ARCHIVED, archiving.policy_id, archiving.version,
                             _instant(archiving.archived_at))
    return build_event(EventType.POLICY_ARCHIVED, data, producer=producer, event_id=event_id,
                       occurred_at=archiving.archived_at)
