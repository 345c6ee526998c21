"""Every PostgreSQL read and write of the cold path, in one place.

A batch is claimed (`FOR UPDATE SKIP LOCKED`, so two workers never take the same record) and written back in one
transaction. Workers validate and score their batches side by side; from reading the duplicate candidates to
commit, batches take turns on an advisory lock, so duplicate detection sees every decision committed before it
(two workers deciding two copies of one program at once would keep both). The transaction writes: status, score
and reasons on `policies`, `quality_metrics`, `processing_history`, `audit_logs` for each status change, duplicate
links, fingerprints (of active records only), the `data.quality_updated` events and each decided policy's state on
the catalogue topic (outbox; `stores.catalogue`: its document when active, a tombstone otherwise). A crash rolls the
whole batch back; the next run takes it again.

Every score is stored with the version of the rules that decided it (`cold_path.scoring_rules`;
`policies.rules_version`, `quality_metrics.rules_version`, `scoring_rules_versions`). A batch is claimed from the
records waiting for a score first; with `older_rules`, and none waiting, from the decided records of an older
rules version, oldest first (background rescoring, `cold_path.run`).

Everything a `data.quality_updated` event says is stored with the scoring, so that the broker watch can build the
same event again after a broker lost it (`schemas.fact_events.QualityScoring`): the status, the reasons as
announced and the scored version on `policies`, the scores in `quality_metrics`, and one time for both,
`policies.scored_at` = `quality_metrics.calculated_at` = the event's `updated_at` (`ClaimedBatch.scored_at`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from aegis_pipeline.cold_path.duplicates import SCHEME as FINGERPRINT_SCHEME
from aegis_pipeline.cold_path.duplicates import DuplicateFeatures, block_keys, features
from aegis_pipeline.cold_path.records import PolicyRecord
from aegis_pipeline.cold_path.status import Decision
from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS, DataStatus, content_from_columns
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import outbox, postgres
from aegis_pipeline.stores.catalogue import LeftCatalogue, PolicyState, policy_state_events
from aegis_pipeline.stores.outbox import OutboxEvent

# Every field of `PolicyRecord`: its id, the policy's content columns and the store's own.
_RECORD_COLUMNS = ("collected_at", "created_at", "updated_at", "version", "status")
_POLICY_COLUMNS = "p.id::text AS id, " + ", ".join(
    f"p.{name}" for name in (*POLICY_CONTENT_COLUMNS, *_RECORD_COLUMNS))

# Records waiting for a score, or changed since their last one (a writer other than the hot path may change a
# record without resetting its status: the version says it). The first part is idx_policies_needs_scoring's.
_NEEDS_SCORE = """(p.status = 'pending_validation' OR p.scored_version IS DISTINCT FROM p.version)
  AND p.status <> 'archived'"""
CLAIM_CHANGED_SQL = f"""
SELECT {_POLICY_COLUMNS} FROM policies p
WHERE {_NEEDS_SCORE}
  AND ($1::text IS NULL OR p.source_system = $1) AND NOT (p.id = ANY($2::uuid[]))
ORDER BY p.updated_at, p.id LIMIT $3
FOR UPDATE OF p SKIP LOCKED
"""  # noqa: S608 (a constant column list, no input)
# What a record's last score said (`PreviousScore`), read with the records a run scores again: a scored record
# (active or rejected, its current version scored) of older rules is counted as rescored, and a background rescore
# that changes nothing is told apart (`ClaimedBatch.unchanged`).
_PREVIOUS_SCORE = """p.rules_version AS previous_rules_version, p.quality_score AS previous_score,
       p.status_reasons AS previous_reasons,
       (p.status IN ('active', 'rejected') AND p.scored_version IS NOT DISTINCT FROM p.version) AS previous_scored"""
# --rescore-all: every record not archived that this run has not scored yet.
CLAIM_ALL_SQL = f"""
SELECT {_POLICY_COLUMNS}, {_PREVIOUS_SCORE} FROM policies p
WHERE p.status <> 'archived' AND (p.scored_at IS NULL OR p.scored_at < $4)
  AND ($1::text IS NULL OR p.source_system = $1) AND NOT (p.id = ANY($2::uuid[]))
ORDER BY p.updated_at, p.id LIMIT $3
FOR UPDATE OF p SKIP LOCKED
"""  # noqa: S608 (a constant column list, no input)
WAITING_CHANGED_SQL = f"""
SELECT count(*) FROM policies p WHERE {_NEEDS_SCORE} AND ($1::text IS NULL OR p.source_system = $1)
"""  # noqa: S608 (a constant predicate, no input)
WAITING_ALL_SQL = """
SELECT count(*) FROM policies p
WHERE p.status <> 'archived' AND (p.scored_at IS NULL OR p.scored_at < $2)
  AND ($1::text IS NULL OR p.source_system = $1)
"""
# Background rescoring (cold_path.scoring_rules): decided records (active or rejected) whose rules version is an
# older one than the run's, one version at a time, oldest first (`scoring_rules_versions.first_used_at`; NULL,
# scored before versions existed, before every other), each read in the order of idx_policies_rules_version, so
# that a batch costs the rows it takes, not the version's (no other condition on the row: with `scored_version =
# version`, which the planner guesses matches 1 row in 200, it sorted every row of the version for each batch). A
# changed record among them waits for a score anyway (CLAIM_CHANGED_SQL, which goes first); taken here, it is
# scored all the same.
_SCORED = "p.status IN ('active', 'rejected')"
CLAIM_UNVERSIONED_SQL = f"""
SELECT {_POLICY_COLUMNS}, {_PREVIOUS_SCORE} FROM policies p
WHERE p.rules_version IS NULL AND {_SCORED}
  AND ($1::text IS NULL OR p.source_system = $1) AND NOT (p.id = ANY($2::uuid[]))
ORDER BY p.rules_version, p.id LIMIT $3
FOR UPDATE OF p SKIP LOCKED
"""  # noqa: S608 (constant column lists and predicate, no input)
CLAIM_OLDER_RULES_SQL = f"""
SELECT {_POLICY_COLUMNS}, {_PREVIOUS_SCORE} FROM policies p
WHERE p.rules_version = $4 AND {_SCORED}
  AND ($1::text IS NULL OR p.source_system = $1) AND NOT (p.id = ANY($2::uuid[]))
ORDER BY p.rules_version, p.id LIMIT $3
FOR UPDATE OF p SKIP LOCKED
"""  # noqa: S608 (constant column lists and predicate, no input)
OLDER_RULES_SQL = "SELECT version FROM scoring_rules_versions WHERE version <> $1 ORDER BY first_used_at, version"
# Scored records per source, and how many of them are of other rules than $1 (a full read of the partial index:
# once per worker and run).
STALE_BY_SOURCE_SQL = f"""
SELECT p.source_system, count(*) FILTER (WHERE p.rules_version IS DISTINCT FROM $1) AS stale
FROM policies p WHERE {_SCORED} GROUP BY p.source_system
"""  # noqa: S608 (a constant predicate, no input)
REGISTER_RULES_SQL = """
INSERT INTO scoring_rules_versions (version, parameters) VALUES ($1, $2::jsonb) ON CONFLICT (version) DO NOTHING
"""
# Candidates in two steps, each with only linear plans to choose from. The keys that match come from the GIN index
# alone: with no statistics yet (a backfill into a new table), the planner once chose to walk the active policies
# and test `band_keys && <thousands of probes>` on each (an O(keys x probes) comparison per row: seconds per
# batch), so sequential and plain index scans are off for that one statement and a bitmap scan of the GIN index is
# all that is left. Then the policies by primary key. Only active records keep fingerprints (a rejected record is
# never a canonical one), so blocks hold candidates only; the status is checked again in case one just changed.
MATCHING_FINGERPRINTS_SQL = "SELECT policy_id, band_keys FROM policy_fingerprints WHERE band_keys && $1::bigint[]"
ONLY_BITMAP_SCANS = "SELECT set_config('enable_seqscan', $1, true), set_config('enable_indexscan', $1, true)"
CANDIDATES_SQL = f"""
SELECT {_POLICY_COLUMNS} FROM policies p
WHERE p.id = ANY($1::uuid[]) AND p.status = 'active' AND NOT (p.id = ANY($2::uuid[]))
"""  # noqa: S608 (a constant column list, no input)
UPDATE_POLICIES_SQL = """
UPDATE policies p SET status = d.status, quality_score = d.quality_score, scored_version = p.version,
       scored_at = $2, status_reasons = d.reasons, rules_version = $3
FROM jsonb_to_recordset($1::jsonb) AS d(id uuid, status text, quality_score double precision, reasons jsonb)
WHERE p.id = d.id
"""
INSERT_METRICS_SQL = """
INSERT INTO quality_metrics (policy_id, total_score, completeness, accuracy, consistency, timeliness,
                             calculation_method, run_id, calculated_at, rules_version)
SELECT id, total_score, completeness, accuracy, consistency, timeliness, $2, $3, $4, $5
FROM jsonb_to_recordset($1::jsonb) AS m(id uuid, total_score double precision, completeness double precision,
     accuracy double precision, consistency double precision, timeliness double precision)
"""
INSERT_HISTORY_SQL = """
INSERT INTO processing_history (policy_id, processing_path, status, quality_score, validation_errors,
                                processing_time_ms, run_id)
SELECT id, 'cold', status, quality_score, details, processing_time_ms, $2
FROM jsonb_to_recordset($1::jsonb) AS h(id uuid, status text, quality_score double precision, details jsonb,
     processing_time_ms integer)
"""
INSERT_AUDIT_SQL = """
INSERT INTO audit_logs (entity_type, entity_id, action, actor, changes, metadata)
SELECT 'policy', entity_id, action, $2, changes, metadata
FROM jsonb_to_recordset($1::jsonb) AS a(entity_id text, action text, changes jsonb, metadata jsonb)
"""
# A record decided again loses its old link first (two statements: a CTE's DELETE is not seen by its INSERT).
CLEAR_LINKS_SQL = "DELETE FROM policy_duplicates WHERE policy_id = ANY($1::uuid[])"
INSERT_LINKS_SQL = """
INSERT INTO policy_duplicates (policy_id, canonical_id, similarity, method, run_id)
SELECT policy_id, canonical_id, similarity, method, $2
FROM jsonb_to_recordset($1::jsonb) AS l(policy_id uuid, canonical_id uuid, similarity double precision, method text)
"""
UPSERT_FINGERPRINTS_SQL = """
INSERT INTO policy_fingerprints (policy_id, band_keys, scheme)
SELECT id, ARRAY(SELECT jsonb_array_elements_text(keys)::bigint), $2
FROM jsonb_to_recordset($1::jsonb) AS f(id uuid, keys jsonb)
ON CONFLICT (policy_id) DO UPDATE SET band_keys = EXCLUDED.band_keys, scheme = EXCLUDED.scheme, computed_at = now()
"""
DELETE_FINGERPRINTS_SQL = "DELETE FROM policy_fingerprints WHERE policy_id = ANY($1::uuid[])"
# Active records filed under another blocking scheme (a release changed it): their keys are computed again.
STALE_FINGERPRINTS_SQL = f"""
SELECT {_POLICY_COLUMNS} FROM policies p LEFT JOIN policy_fingerprints f ON f.policy_id = p.id
WHERE p.status = 'active' AND f.scheme IS DISTINCT FROM $1 LIMIT $2
"""  # noqa: S608 (a constant column list, no input)
# Duplicates whose canonical record was rejected or archived since: unlinked and scored again (they may be the
# program's best record now). A canonical record waiting for its own new score keeps its links.
REQUEUE_ORPHANS_SQL = """
WITH orphans AS (
    DELETE FROM policy_duplicates d USING policies c
    WHERE c.id = d.canonical_id AND c.status IN ('rejected', 'archived')
    RETURNING d.policy_id, d.canonical_id, c.status AS canonical_status
)
UPDATE policies p SET status = 'pending_validation', scored_version = NULL, scored_at = NULL, updated_at = now()
FROM orphans o WHERE p.id = o.policy_id AND p.status = 'rejected'
RETURNING p.id::text AS id, o.canonical_id::text AS canonical_id, o.canonical_status
"""
FEATURES_CACHE_SIZE = 5_000  # canonical records whose duplicate features a run keeps (~30 KB each: ~150 MB)
BATCH_LOCK_KEY = 0x61656769735F6370  # "aegis_cp": the advisory lock that serialises cold-path batches
RESOLVE_LETTERS_SQL = """
UPDATE dead_letters SET status = 'resolved', last_retry_at = now()
WHERE stage = 'cold' AND status IN ('pending', 'exhausted') AND record_key = ANY($1::text[])
"""


def _json(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def record_of(row: asyncpg.Record) -> PolicyRecord:
    """A row read with `_POLICY_COLUMNS` as the record the pure modules work on."""
    return PolicyRecord(id=row["id"], **content_from_columns(row), **{name: row[name] for name in _RECORD_COLUMNS})


@dataclass(frozen=True)
class RunRow:
    """What the end of a run reads back from `processing_history`: one row per record it decided."""

    source_system: str
    status: str
    quality_score: float | None
    error_code: str | None
    rescored: bool = False  # scored before under older rules (cold_path.scoring_rules), scored again by this run


@dataclass(frozen=True)
class PreviousScore:
    """What a record's last score said, read with it when a run scores it again (`_PREVIOUS_SCORE`)."""

    rules_version: str | None
    quality_score: float | None
    reasons: list[str]
    scored: bool  # active or rejected, and its current version was scored: a score stands


def _previous_score(row: asyncpg.Record) -> PreviousScore:
    reasons = row["previous_reasons"]
    return PreviousScore(rules_version=row["previous_rules_version"], quality_score=row["previous_score"],
                         reasons=list(orjson.loads(reasons) if isinstance(reasons, str | bytes) else reasons or []),
                         scored=bool(row["previous_scored"]))


class ColdPathStore:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings  # where a batch announces its policies' state (`ClaimedBatch.write`)
        # Duplicate features of canonical records by (id, version): the same candidates come back batch after
        # batch, and computing their shingles is most of a batch's work.
        self._features: dict[tuple[str, int], DuplicateFeatures] = {}

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def database_now(self) -> datetime:
        with postgres.translate_errors("read clock"):
            return await self._pool.fetchval("SELECT now()")

    async def start_run(self, run_id: str, parameters: dict[str, Any]) -> None:
        """One `pipeline_metadata` row per run id; a retried task (same run id) reuses it."""
        with postgres.translate_errors("start run"):
            async with self._pool.acquire() as connection, connection.transaction():
                updated = await connection.fetchval(
                    """
                    UPDATE pipeline_metadata SET status = 'running', completed_at = NULL,
                           metadata = coalesce(metadata, '{}'::jsonb) || jsonb_build_object(
                               'attempts', coalesce((metadata->>'attempts')::int, 1) + 1)
                    WHERE pipeline_run_id = $1 AND processing_path = 'cold' RETURNING id
                    """, run_id)
                if updated is None:
                    await connection.execute(
                        "INSERT INTO pipeline_metadata (pipeline_run_id, processing_path, status, metadata) "
                        "VALUES ($1, 'cold', 'running', $2::jsonb)",
                        run_id, _json({"parameters": parameters, "attempts": 1}))

    async def run_parameters(self, run_id: str) -> dict[str, Any]:
        """The parameters the run was started with (`start_run`)."""
        with postgres.translate_errors("read run parameters"):
            stored = await self._pool.fetchval(
                "SELECT metadata->'parameters' FROM pipeline_metadata WHERE pipeline_run_id = $1 "
                "AND processing_path = 'cold' AND metadata ? 'parameters'", run_id)
        return orjson.loads(stored) if stored else {}

    async def run_seconds(self, run_id: str) -> float:
        """Seconds since the run started."""
        with postgres.translate_errors("read run start"):
            seconds = await self._pool.fetchval(
                "SELECT extract(epoch FROM now() - started_at) FROM pipeline_metadata WHERE pipeline_run_id = $1 "
                "AND processing_path = 'cold' AND metadata ? 'parameters'", run_id)
        return float(seconds or 0.0)

    async def waiting(self, source: str | None, rescore_since: datetime | None) -> int:
        """How many records a run would score now (for its progress: other workers may take some)."""
        with postgres.translate_errors("count waiting records"):
            if rescore_since is None:
                return await self._pool.fetchval(WAITING_CHANGED_SQL, source)
            return await self._pool.fetchval(WAITING_ALL_SQL, source, rescore_since)

    async def finish_run(self, run_id: str, *, status: str, processed: int, failed: int,
                         summary: dict[str, Any]) -> None:
        with postgres.translate_errors("finish run"):
            await self._pool.execute(
                """
                UPDATE pipeline_metadata SET status = $2, completed_at = now(), records_processed = $3,
                       records_failed = $4, metadata = coalesce(metadata, '{}'::jsonb) || $5::jsonb
                WHERE pipeline_run_id = $1 AND processing_path = 'cold'
                """, run_id, status, processed, failed, _json(summary))

    async def run_rows(self, run_id: str) -> list[RunRow]:
        """The latest decision per record of this run (a retried run may have decided a record once only)."""
        with postgres.translate_errors("read run history"):
            rows = await self._pool.fetch(
                """
                SELECT DISTINCT ON (h.policy_id) p.source_system, h.status, h.quality_score,
                       h.validation_errors->>'error_code' AS error_code,
                       coalesce(h.validation_errors ? 'rescored_from_rules', false) AS rescored
                FROM processing_history h JOIN policies p ON p.id = h.policy_id
                WHERE h.run_id = $1 AND h.processing_path = 'cold'
                ORDER BY h.policy_id, h.processed_at DESC
                """, run_id)
        return [RunRow(**dict(row)) for row in rows]

    async def register_rules(self, version: str, parameters: dict[str, Any]) -> None:
        """Record a rules version and what it means (`scoring_rules_versions`), the first time it is used."""
        with postgres.translate_errors("register scoring rules"):
            await self._pool.execute(REGISTER_RULES_SQL, version, _json(parameters))

    async def stale_by_source(self, rules_version: str) -> dict[str, int]:
        """Per source with scored records: how many of them were scored under other rules than `rules_version`."""
        with postgres.translate_errors("count records of older rules"):
            rows = await self._pool.fetch(STALE_BY_SOURCE_SQL, rules_version)
        return {row["source_system"]: row["stale"] for row in rows}

    async def requeue_orphans(self, run_id: str) -> int:
        """Unlink and re-queue duplicates whose canonical record is no longer kept; returns how many. Only rejected
        records move (to pending_validation): none was in the catalogue, so none has a state to announce; the
        batch that decides it again does (`ClaimedBatch.write`)."""
        with postgres.translate_errors("requeue orphaned duplicates"):
            async with self._pool.acquire() as connection, connection.transaction():
                rows = await connection.fetch(REQUEUE_ORPHANS_SQL)
                if rows:
                    await connection.execute(INSERT_AUDIT_SQL, _json([
                        {"entity_id": row["id"], "action": "status_changed",
                         "changes": {"status": {"from": "rejected", "to": "pending_validation"}},
                         "metadata": {"run_id": run_id, "reasons": [
                             f"canonical record {row['canonical_id']} is {row['canonical_status']}"]}}
                        for row in rows]), f"cold_path:{run_id}")
        return len(rows)

    async def refresh_fingerprints(self, *, batch_size: int = 1000) -> int:
        """File again, under the current blocking scheme, every active record filed under another one; returns
        how many. A no-op (one indexed read) once every record carries the current scheme."""
        refreshed = 0
        with postgres.translate_errors("refresh fingerprints"):
            while True:
                rows = await self._pool.fetch(STALE_FINGERPRINTS_SQL, FINGERPRINT_SCHEME, batch_size)
                if not rows:
                    return refreshed
                prints = [{"id": row["id"], "keys": block_keys(features(record_of(row))).stored} for row in rows]
                await self._pool.execute(UPSERT_FINGERPRINTS_SQL, _json(prints), FINGERPRINT_SCHEME)
                refreshed += len(prints)

    async def letters_pending_for(self, record_keys: Sequence[str]) -> set[str]:
        """Record keys that already have an open cold-path dead letter (so a failing record is not letter-
        ed again every run)."""
        with postgres.translate_errors("read cold dead letters"):
            rows = await self._pool.fetch(
                "SELECT DISTINCT record_key FROM dead_letters WHERE stage = 'cold' "
                "AND status IN ('pending', 'exhausted') AND record_key = ANY($1::text[])", list(record_keys))
        return {row["record_key"] for row in rows}

    @contextlib.asynccontextmanager
    async def claim(self, *, source: str | None, exclude_ids: Sequence[str], limit: int,
                    rescore_since: datetime | None, rules_version: str | None = None,
                    older_rules: bool = False) -> AsyncIterator[ClaimedBatch]:
        """Up to `limit` records to score, locked until the block ends; the block's writes commit with it (an
        exception rolls everything back). `rescore_since`: every record not scored since then (--rescore-all).
        `rules_version`: the rules the batch is scored under (stored with its scores). `older_rules`: when no
        record waits for a score, records scored under other rules than `rules_version`, all of one version, the
        oldest version first (the batch's `rescoring` is then true)."""
        with postgres.translate_errors("cold path batch"):
            async with self._pool.acquire() as connection, connection.transaction():
                rescoring = False
                if rescore_since is None:
                    rows = await connection.fetch(CLAIM_CHANGED_SQL, source, list(exclude_ids), limit)
                    if not rows and older_rules and rules_version is not None:
                        rows = await self._claim_older_rules(connection, source, exclude_ids, limit, rules_version)
                        rescoring = bool(rows)
                else:
                    rows = await connection.fetch(CLAIM_ALL_SQL, source, list(exclude_ids), limit, rescore_since)
                # The database's clock, not this process's: --rescore-all compares scored_at with the database's
                # time at the start of the run. now() is the transaction's start, the same all through it.
                scored_at = await connection.fetchval("SELECT now()")
                previous = {row["id"]: _previous_score(row) for row in rows if "previous_scored" in row.keys()}
                yield ClaimedBatch(connection, [record_of(row) for row in rows], self._features, scored_at,
                                   rules_version=rules_version, previous=previous, rescoring=rescoring,
                                   settings=self._settings)

    @staticmethod
    async def _claim_older_rules(connection: asyncpg.Connection, source: str | None, exclude_ids: Sequence[str],
                                 limit: int, rules_version: str) -> list[asyncpg.Record]:
        """Records of the oldest rules version that has any (not locked by another worker): NULL first, then by
        `first_used_at`."""
        rows = await connection.fetch(CLAIM_UNVERSIONED_SQL, source, list(exclude_ids), limit)
        if rows:
            return rows
        for older in await connection.fetch(OLDER_RULES_SQL, rules_version):
            rows = await connection.fetch(CLAIM_OLDER_RULES_SQL, source, list(exclude_ids), limit, older["version"])
            if rows:
                return rows
        return []


class ClaimedBatch:
    """A batch of claimed records and the writes that go with it, all in one open transaction."""

    def __init__(self, connection: asyncpg.Connection, records: list[PolicyRecord],
                 features_cache: dict[tuple[str, int], DuplicateFeatures], scored_at: datetime, *,
                 rules_version: str | None = None, previous: dict[str, PreviousScore] | None = None,
                 rescoring: bool = False, settings: Settings) -> None:
        self._connection = connection
        self._settings = settings
        self._features = features_cache
        self.records = records
        # When this batch's decisions are stored: `policies.scored_at`, `quality_metrics.calculated_at` and the
        # `updated_at` of their events (which the events' ids derive from).
        self.scored_at = scored_at
        # The rules its scores are decided under (`policies.rules_version`, `quality_metrics.rules_version`).
        self.rules_version = rules_version
        # What the last score of each record scored again said (--rescore-all, background rescoring), by id.
        self.previous = previous or {}
        # Records of older rules scored again in the background (`ColdPathStore.claim(older_rules=True)`).
        self.rescoring = rescoring

    def rescored_from(self, record_id: str) -> PreviousScore | None:
        """The record's last score when it was decided under other rules than this batch's (it is rescored)."""
        previous = self.previous.get(record_id)
        if previous is None or not previous.scored or previous.rules_version == self.rules_version:
            return None
        return previous

    def unchanged(self, decision: Decision) -> bool:
        """Scored again, and its status, total score and reasons are what its last score said: nothing new to
        announce."""
        previous = self.previous.get(decision.record.id)
        return (previous is not None and previous.scored and decision.status.value == decision.record.status
                and previous.quality_score == decision.assessment.quality.total_score
                and previous.reasons == decision.stated_reasons)

    async def canonical_candidates(self, probes: Sequence[int]) -> list[tuple[DuplicateFeatures, list[int]]]:
        """Active records (not of this batch) filed under one of `probes`: (features, stored keys) each.

        Takes this batch's turn first: from here until commit no other batch reads candidates or writes decisions
        (held until the transaction ends), so what it reads includes every decision committed before."""
        connection = self._connection
        await connection.execute("SELECT pg_advisory_xact_lock($1)", BATCH_LOCK_KEY)
        if not probes:
            return []
        await connection.execute(ONLY_BITMAP_SCANS, "off")
        matching = await connection.fetch(MATCHING_FINGERPRINTS_SQL, list(probes))
        await connection.execute(ONLY_BITMAP_SCANS, "on")
        stored_keys = {str(row["policy_id"]): list(row["band_keys"]) for row in matching}
        rows = await connection.fetch(CANDIDATES_SQL, list(stored_keys), [record.id for record in self.records])
        candidates = []
        for row in rows:
            key = (row["id"], row["version"])
            if key not in self._features:
                if len(self._features) >= FEATURES_CACHE_SIZE:
                    del self._features[next(iter(self._features))]  # the oldest entry
                self._features[key] = features(record_of(row))
            candidates.append((self._features[key], stored_keys[row["id"]]))
        return candidates

    async def write(self, decisions: Sequence[Decision], *, run_id: str, method: str,
                    events: Sequence[OutboxEvent], elapsed_ms: int) -> None:
        """Everything the batch's decisions change; commits when the `claim` block ends."""
        connection = self._connection
        if not decisions:
            return
        actor = f"cold_path:{run_id}"
        policies, metrics, history, audits, links, prints = [], [], [], [], [], []
        for decision in decisions:
            record, quality = decision.record, decision.assessment.quality
            code = decision.error_code.value if decision.error_code else None
            policies.append({"id": record.id, "status": decision.status.value,
                             "quality_score": quality.total_score, "reasons": decision.stated_reasons})
            metrics.append({"id": record.id, **quality.as_event_data()})
            details = {"error_code": code, "reasons": list(decision.reasons),
                       "errors": [f.message for f in decision.assessment.validation.errors],
                       "warnings": [f.message for f in decision.assessment.validation.warnings],
                       "version": record.version, "rules_version": self.rules_version}
            rescored = self.rescored_from(record.id)
            if rescored is not None:  # scored before under older rules: the run counts it as rescored
                details["rescored_from_rules"] = rescored.rules_version
            history.append({"id": record.id, "status": decision.status.value, "quality_score": quality.total_score,
                            "processing_time_ms": elapsed_ms, "details": details})
            if decision.status.value != record.status:
                audits.append({"entity_id": record.id, "action": "status_changed",
                               "changes": {"status": {"from": record.status, "to": decision.status.value},
                                           "quality_score": quality.total_score},
                               "metadata": {"run_id": run_id, "error_code": code, "reasons": list(decision.reasons),
                                            "version": record.version}})
            if decision.duplicate_of is not None:
                match = decision.duplicate_of
                links.append({"policy_id": record.id, "canonical_id": match.canonical_id,
                              "similarity": match.similarity, "method": match.method})
                audits.append({"entity_id": record.id, "action": "duplicate_linked",
                               "changes": {"canonical_id": match.canonical_id, "similarity": match.similarity},
                               "metadata": {"run_id": run_id, "method": match.method, "version": record.version}})
            if decision.status is DataStatus.ACTIVE:
                prints.append({"id": record.id, "keys": decision.assessment.block_keys.stored})
        await connection.execute(UPDATE_POLICIES_SQL, _json(policies), self.scored_at, self.rules_version)
        await connection.execute(INSERT_METRICS_SQL, _json(metrics), method[:100], run_id, self.scored_at,
                                 self.rules_version)
        await connection.execute(INSERT_HISTORY_SQL, _json(history), run_id)
        if audits:
            await connection.execute(INSERT_AUDIT_SQL, _json(audits), actor)
        await connection.execute(CLEAR_LINKS_SQL, [d.record.id for d in decisions])
        if links:
            await connection.execute(INSERT_LINKS_SQL, _json(links), run_id)
        await connection.execute(DELETE_FINGERPRINTS_SQL, [d.record.id for d in decisions
                                                           if d.status is not DataStatus.ACTIVE])
        if prints:
            await connection.execute(UPSERT_FINGERPRINTS_SQL, _json(prints), FINGERPRINT_SCHEME)
        await connection.execute(RESOLVE_LETTERS_SQL, [d.record.record_key for d in decisions])
        await outbox.enqueue(connection, [*events, *self._state_events(decisions)])

    def _state_events(self, decisions: Sequence[Decision]) -> list[OutboxEvent]:
        """Each decided policy's state on the catalogue topic (`stores.catalogue`): its document when it is active
        now, a tombstone otherwise, whatever it was before (it may have been active at an older version: the
        catalogue keeps a policy whose content changed until it is decided again). A background rescore that
        changed nothing announces nothing, as for `data.quality_updated`: the state on the topic stands."""
        return policy_state_events(self._settings, [
            PolicyState(policy_id=decision.record.id, version=decision.record.version, policy=decision.record,
                        quality_score=decision.assessment.quality.total_score, decided_at=self.scored_at)
            if decision.status is DataStatus.ACTIVE
            else LeftCatalogue(policy_id=decision.record.id, status=decision.status.value, left_at=self.scored_at)
            for decision in decisions if not (self.rescoring and self.unchanged(decision))])
