"""State for late consumers (issue 25): a consumer that starts after 1,000 changes reads the compacted catalogue
topic from its beginning to its end and holds exactly the active policies PostgreSQL holds (ids and versions),
then follows on from those offsets and sees the next changes. On the real embedded stack: records stored as the
hot path stores them, decided by the cold path, sent by the outbox relay, read back from the broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aegis_pipeline.cold_path.run import run_cold_path
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import outbox, postgres
from aegis_pipeline.stores.catalogue import Catalogue, CatalogueReader, LeftCatalogue, policy_state_events

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()
RECORDS = 700      # every tenth unusable (rejected)
COPIES = 30        # the same announcements again under other ids: rejected as duplicates of their originals
REVISED = 150      # active ones changed (a new version), decided again
BROKEN = 60        # active ones changed into unusable ones: rejected, leave the catalogue
FIXED = 40         # unusable ones corrected: enter the catalogue
ARCHIVED = 50      # active ones archived (as the lifecycle sweep does, through `policy_state_events`)


def announcement(source: str, index: int, *, revision: int = 0, unusable: bool = False,
                 external_id: str | None = None) -> RawPolicyData:
    """A generated announcement, open now (its period around today: the lifecycle sweep leaves it alone)."""
    record = make_record(index, source=source, revision=revision)
    update: dict[str, Any] = {"application_start_date": TODAY - timedelta(days=5),
                              "application_end_date": TODAY + timedelta(days=40)}
    if unusable:
        update["title"] = "제목 없음"
    if external_id is not None:
        update["collection_metadata"] = CollectionMetadata(source=source, external_id=external_id,
                                                           collected_at=datetime.now(UTC))
    return record.model_copy(update=update)


async def store(settings: Settings, records: list[RawPolicyData]) -> dict[str, str]:
    """Store as the hot path does (a new or changed record: pending_validation); external id -> policy id."""
    pool = await postgres.create_pool(settings)
    try:
        outcome = await PolicyStore(pool).store_batch([normalize_record(record) for record in records],
                                                      lambda stored: [])
    finally:
        await pool.close()
    return {item.policy.external_id: item.policy_id for item in outcome.stored}


async def decide_and_send(settings: Settings, source: str) -> None:
    await run_cold_path(settings, source=source)
    await outbox.send_pending_events(settings)


async def statuses(settings: Settings, source: str) -> dict[str, tuple[str, int]]:
    """policy id -> (status, version) of every policy of `source`."""
    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch("SELECT id::text, status, version FROM policies WHERE source_system = $1",
                                      source)
    return {row["id"]: (row["status"], row["version"]) for row in rows}


def active_versions(stored: dict[str, tuple[str, int]]) -> dict[str, int]:
    return {policy_id: version for policy_id, (status, version) in stored.items() if status == "active"}


def active_ids(stored: dict[str, tuple[str, int]], external: dict[str, str]) -> list[str]:
    """External ids of the active policies, in index order."""
    return [external_id for external_id, policy_id in external.items() if stored[policy_id][0] == "active"]


async def archive(settings: Settings, policy_ids: list[str]) -> None:
    """Archive as the lifecycle sweep does: the status and the catalogue's tombstones in one transaction."""
    async with postgres.connect(settings.postgres_dsn()) as connection, connection.transaction():
        rows = await connection.fetch(
            "UPDATE policies SET status = 'archived', archived_reason = 'closed', archived_at = now(), "
            "updated_at = now() WHERE id = ANY($1::uuid[]) RETURNING id::text AS id, archived_at",
            policy_ids)
        await outbox.enqueue(connection, policy_state_events(
            settings, [LeftCatalogue(policy_id=row["id"], status="archived", left_at=row["archived_at"])
                       for row in rows]))
    await outbox.send_pending_events(settings)


async def changes_until(reader: CatalogueReader, catalogue: Catalogue, wanted: set[str],
                        timeout_seconds: float = 20.0) -> dict[str, dict[str, Any] | None]:
    """Follow until every policy of `wanted` changed: policy id -> its last state (None: left)."""
    seen: dict[str, dict[str, Any] | None] = {}
    deadline = time.monotonic() + timeout_seconds
    while not wanted <= set(seen) and time.monotonic() < deadline:
        for change in await reader.changes(catalogue, timeout_seconds=0.5):
            seen[change.policy_id] = change.state
    return seen


async def test_a_consumer_started_after_1000_changes_holds_exactly_the_active_set_then_follows(
        own_topics: Any) -> None:
    settings: Settings = await own_topics(partitions=3)
    source = f"late_{uuid.uuid4().hex[:6]}"

    # 1. 700 announcements, every tenth unusable: most enter the catalogue. Then 30 copies of active ones under
    #    other ids: rejected as duplicates of their originals.
    external = await store(settings, [announcement(source, index, unusable=index % 10 == 0)
                                      for index in range(RECORDS)])
    await decide_and_send(settings, source)
    copied = [index for index in range(1, RECORDS) if index % 10][:COPIES]
    copies = await store(settings, [announcement(source, index, external_id=f"COPY-{index}") for index in copied])
    external |= copies
    await decide_and_send(settings, source)
    first = await statuses(settings, source)
    active = [external_id for external_id in active_ids(first, external) if external_id.startswith("PBLN_")]
    assert len(active) > RECORDS // 2
    assert {first[policy_id][0] for policy_id in copies.values()} == {"rejected"}

    # 2. Changes: revised (a new version, decided again), broken (a new version, rejected: among them originals
    #    of copies, whose copies are then requeued and take their place), fixed (rejected before, active now).
    index_of = {f"PBLN_{index:012d}": index for index in range(RECORDS)}
    originals_of_copies = [f"PBLN_{index:012d}" for index in copied[:BROKEN // 3]]
    broken = originals_of_copies + [external_id for external_id in active
                                    if external_id not in copies and index_of[external_id] not in copied
                                    ][:BROKEN - len(originals_of_copies)]
    revised = [external_id for external_id in active
               if external_id not in broken and index_of[external_id] not in copied][:REVISED]
    fixed = [f"PBLN_{index:012d}" for index in range(0, RECORDS, 10)][:FIXED]
    await store(settings, [announcement(source, index_of[external_id], revision=1) for external_id in revised]
                + [announcement(source, index_of[external_id], revision=1, unusable=True) for external_id in broken]
                + [announcement(source, index_of[external_id], revision=1) for external_id in fixed])
    await decide_and_send(settings, source)
    second = await statuses(settings, source)
    assert {second[external[external_id]] for external_id in broken} == {("rejected", 2)}
    assert {second[external[external_id]] for external_id in revised} == {("active", 2)}
    assert {second[copies[f"COPY-{index}"]][0] for index in copied[:BROKEN // 3]} == {"active"}  # requeued

    # 3. Archived: 50 active ones leave the catalogue.
    archived = [external[external_id] for external_id in active_ids(second, external)
                if external_id not in revised][-ARCHIVED:]
    await archive(settings, archived)

    expected = active_versions(await statuses(settings, source))
    changes = len(external) + len(revised) + len(broken) + len(fixed) + len(archived)
    assert changes >= 1000
    assert 2 in expected.values() and len(expected) > RECORDS // 2  # revised versions are in it

    # The late consumer: from the beginning of the topic to its end, latest value per key, tombstones applied.
    async with CatalogueReader(settings, validate=True) as reader:
        catalogue = await reader.load()

        assert catalogue.versions() == expected
        assert sum(catalogue.offsets.values()) >= changes  # it read every change that was announced
        assert {state["source_system"] for state in catalogue.policies.values()} == {source}

        # Then it follows on from those offsets: a revised policy (its new version), one broken (it leaves).
        revised_now = revised[0]
        broken_now = next(external_id for external_id in active_ids(await statuses(settings, source), external)
                          if external_id in index_of and external_id not in revised)
        await store(settings, [announcement(source, index_of[revised_now], revision=2),
                               announcement(source, index_of[broken_now], revision=2, unusable=True)])
        await outbox.send_pending_events(settings)
        # Changed but not decided yet: the catalogue keeps the version it had (nothing is announced).
        assert await reader.changes(catalogue, timeout_seconds=0.5) == []
        await decide_and_send(settings, source)

        seen = await changes_until(reader, catalogue, {external[revised_now], external[broken_now]})
        assert seen[external[broken_now]] is None
        assert seen[external[revised_now]] is not None and seen[external[revised_now]]["version"] == 3
        assert catalogue.versions() == active_versions(await statuses(settings, source))

    # The command a user runs: the same catalogue, as JSON, with the offsets to follow on from.
    environment = {**os.environ, "KAFKA_TOPIC_POLICY_STATE": settings.kafka_topic_policy_state,
                   "LOG_LEVEL": "WARNING"}
    as_json, as_text = [await asyncio.to_thread(
        subprocess.run, [str(Path(sys.executable).with_name("aegis-pipeline")), "catalogue", "dump", *options],
        env=environment, capture_output=True, text=True, timeout=60, check=False) for options in (["--json"], [])]
    assert as_json.returncode == 0, as_json.stderr
    dumped = json.loads(as_json.stdout)
    assert {state["policy_id"]: state["version"] for state in dumped["policies"]} == catalogue.versions()
    assert {int(partition): offset for partition, offset in dumped["offsets"].items()} == catalogue.offsets
    assert as_text.returncode == 0, as_text.stderr
    *lines, summary = as_text.stdout.splitlines()
    assert len(lines) == len(catalogue.policies) and all(line.split()[0] in catalogue.policies for line in lines)
    assert summary == (f"{len(catalogue.policies)} active policies on {settings.kafka_topic_policy_state}; follow on "
                       f"from offsets " + ", ".join(f"{partition}:{offset}"
                                                    for partition, offset in sorted(catalogue.offsets.items())))
