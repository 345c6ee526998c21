"""The `policy.state` document: the current catalogue state of one active policy, the value of its key on the
compacted `policy-state` topic (docs/events.md, "The catalogue topic"). A policy that leaves the catalogue gets a
tombstone (a null value) under its key instead, which has no document.

Built by one function from what PostgreSQL stores of the decision (`policy_state_envelope`): the writer that stores
the decision builds it from the values it stores (the cold path, `cold_path/store.py`), and the broker watch builds
it again from the stored row after a broker lost its topics (`hot_path/broker_watch.py`). Same values, same
document, same `event_id` (derived from the policy, the version and the time of the decision, like
`data.quality_updated`'s): nothing in it depends on the moment it is built but `producer`.

May import: the standard library, `domain`, `schemas.events`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aegis_pipeline.domain.hashing import content_hash
from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS, DataStatus, PolicyContent
from aegis_pipeline.schemas.events import SCHEMA_VERSION, EventType, build_event, fact_event_id


@dataclass(frozen=True)
class PolicyState:
    """An active policy as the cold path decided it: its content at the decided `version` (any view of the
    policy: a `cold_path.records.PolicyRecord`, a `PolicyContent` read back from `policies`), the total score and
    when the decision was stored (`policies.scored_at`)."""

    policy_id: str
    version: int
    policy: PolicyContent
    quality_score: float
    decided_at: datetime


@dataclass(frozen=True)
class LeftCatalogue:
    """A policy that is not (or no longer) in the catalogue: its key gets a tombstone. `status` is the status it
    has now (`rejected`, `archived`), `left_at` when that was stored (the database's clock of its transaction)."""

    policy_id: str
    status: str
    left_at: datetime


def _instant(value: datetime) -> str:
    if value.utcoffset() is None:
        raise ValueError(f"{value!r} is a naive datetime: give an aware one")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def policy_state_event_id(policy_id: str, version: int, decided_at: datetime) -> str:
    """The id of one state document: the same every time that decision is announced."""
    return fact_event_id(EventType.POLICY_STATE, policy_id, version, _instant(decided_at))


def tombstone_event_id(policy_id: str, left_at: datetime) -> str:
    """The id of one tombstone (the outbox's bookkeeping: a tombstone carries no id on the topic)."""
    return fact_event_id(EventType.POLICY_STATE, policy_id, "left", _instant(left_at))


def policy_state_envelope(state: PolicyState, *, producer: str) -> dict[str, Any]:
    """The `policy.state` envelope of `state` (checked against its schema)."""
    data: dict[str, Any] = {name: getattr(state.policy, name) for name in POLICY_CONTENT_COLUMNS}
    data.update(policy_id=state.policy_id, version=state.version, status=DataStatus.ACTIVE.value,
                content_hash=content_hash(state.policy), quality_score=state.quality_score,
                updated_at=state.decided_at)
    return build_event(EventType.POLICY_STATE, data, producer=producer,
                       event_id=policy_state_event_id(state.policy_id, state.version, state.decided_at),
                       occurred_at=state.decided_at)


def tombstone_envelope(left: LeftCatalogue, *, producer: str) -> dict[str, Any]:
    """What the outbox keeps of a tombstone, for people reading the table: never sent (the relay sends a null
    value), so not a `policy.state` document and not checked against its schema."""
    return {
        "event_id": tombstone_event_id(left.policy_id, left.left_at),
        "event_type": EventType.POLICY_STATE.value,
        "schema_version": SCHEMA_VERSION,
        "occurred_at": left.left_at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "producer": producer,
        "tombstone": True,
        "data": {"policy_id": left.policy_id, "status": left.status},
    }
