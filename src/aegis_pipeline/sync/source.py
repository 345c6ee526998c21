"""What the sync reads from and writes to PostgreSQL: changed policies, watermarks, checksums, the run record.

The checksum of a policy covers everything its documents are made of: the stored content (`content_hash`, the
hot path's SHA-256 of what it stored), the version, the quality score and the duplicate link, including whether
that link is one the graph can hold (its canonical policy `active`; see `sync.targets.graph`). It is computed
here, in SQL, once for the sync and the consistency check alike. The not-active marker is NULL for every other
policy, and `concat_ws` skips NULLs: their checksums are what they were before it existed (nothing to rewrite).
The same holds for the archived marker: an archived policy's checksum differs from its active one, so the graph,
which keeps it (`targets.base.KEPT_STATUSES`), is found stale until it holds it marked archived.

Change tracking (migration 0005): each write stamps the row with its transaction id (`sync_xid`); a target's
watermark is the snapshot xmin taken before its last successful read, so late commits are never skipped. A
canonical policy that becomes active or stops being active stamps its active duplicates too (migration 0009):
their checksums changed with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg

from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS, content_from_columns
from aegis_pipeline.stores import postgres
from aegis_pipeline.sync.targets.base import SyncDocument

CHECKSUM_SQL = ("md5(concat_ws('|', p.id::text, p.version::text, p.content_hash, "
                "coalesce(p.quality_score::text, ''), coalesce(d.canonical_id::text, ''), "
                "CASE WHEN d.canonical_id IS NOT NULL AND c.id IS NULL THEN 'canonical-not-active' END, "
                "CASE WHEN p.status = 'archived' THEN 'archived' END))")

_CONTENT_COLUMNS = ", ".join(f"p.{name}" for name in POLICY_CONTENT_COLUMNS)  # the policy's content
_DOCUMENT_COLUMNS = f"""
    p.id::text AS id, p.sync_xid, p.status, p.version, {_CONTENT_COLUMNS},
    p.quality_score, d.canonical_id::text AS canonical_id, c.id::text AS duplicate_of,
    ARRAY(SELECT x.policy_id::text FROM policy_duplicates x WHERE x.canonical_id = p.id ORDER BY 1) AS duplicate_ids,
    {CHECKSUM_SQL} AS checksum
"""  # noqa: S608 (constants only; values are always bound parameters)
# `c`: the canonical policy of a duplicate, when it is active (the graph's DUPLICATE_OF link exists only then).
_FROM = ("FROM policies p LEFT JOIN policy_duplicates d ON d.policy_id = p.id "
         "LEFT JOIN policies c ON c.id = d.canonical_id AND c.status = 'active'")

CHANGED_SQL = f"""
SELECT {_DOCUMENT_COLUMNS} {_FROM}
WHERE (p.sync_xid, p.id) > ($1::bigint, $2::uuid) AND p.sync_xid >= $3::bigint
ORDER BY p.sync_xid, p.id LIMIT $4
"""
KEPT_SQL = f"""
SELECT {_DOCUMENT_COLUMNS} {_FROM}
WHERE p.status = ANY($3::text[]) AND p.id > $1::uuid ORDER BY p.id LIMIT $2
"""
BY_IDS_SQL = f"SELECT {_DOCUMENT_COLUMNS} {_FROM} WHERE p.id = ANY($1::uuid[])"
KEPT_CHECKSUMS_SQL = (f"SELECT p.id::text AS id, {CHECKSUM_SQL} AS checksum {_FROM} "
                      "WHERE p.status = ANY($1::text[])")
SNAPSHOT_XMIN_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
# How many rows `changed_batches` and `kept_batches` will read, for a progress total: counts over indexes
# (idx_policies_sync_xid, idx_policies_status), a few ms for 100,000 policies. What commits after the count is
# read too, so the reads may pass it.
COUNT_CHANGED_SQL = "SELECT count(*) FROM policies WHERE sync_xid >= $1::bigint"
COUNT_KEPT_SQL = "SELECT count(*) FROM policies WHERE status = ANY($1::text[])"

MIN_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class ChangedRecord:
    sync_xid: int
    status: str
    document: SyncDocument

    def kept_by(self, statuses: frozenset[str]) -> bool:
        """Whether a target holding policies of `statuses` (`targets.base.KEPT_STATUSES`) holds this one."""
        return self.status in statuses


def _document(row: asyncpg.Record) -> SyncDocument:
    return SyncDocument(
        **content_from_columns(row), id=row["id"], version=row["version"], checksum=row["checksum"],
        quality_score=row["quality_score"], status=row["status"], canonical_id=row["canonical_id"],
        duplicate_ids=tuple(row["duplicate_ids"] or ()), duplicate_of=row["duplicate_of"],
    )


def _record(row: asyncpg.Record) -> ChangedRecord:
    return ChangedRecord(row["sync_xid"], row["status"], _document(row))


async def snapshot_xmin(pool: asyncpg.Pool) -> int:
    """Every transaction with a lower id has finished: the next watermark, taken before reading."""
    with postgres.translate_errors("read snapshot"):
        return int(await pool.fetchval(SNAPSHOT_XMIN_SQL))


async def changed_batches(pool: asyncpg.Pool, watermark: int, batch_size: int) -> AsyncIterator[list[ChangedRecord]]:
    """Policies stamped at or after `watermark`, any status, in (sync_xid, id) order, `batch_size` at a time."""
    after: tuple[int, str] = (watermark - 1, MIN_UUID)
    while True:
        with postgres.translate_errors("read changes"):
            rows = await pool.fetch(CHANGED_SQL, after[0], after[1], watermark, batch_size)
        if not rows:
            return
        yield [_record(row) for row in rows]
        after = (rows[-1]["sync_xid"], rows[-1]["id"])


async def count_changed(pool: asyncpg.Pool, watermark: int) -> int:
    """About how many policies `changed_batches` reads from `watermark`."""
    with postgres.translate_errors("count changed policies"):
        return int(await pool.fetchval(COUNT_CHANGED_SQL, watermark))


async def count_kept(pool: asyncpg.Pool, statuses: frozenset[str]) -> int:
    """About how many policies `kept_batches` reads."""
    with postgres.translate_errors("count policies"):
        return int(await pool.fetchval(COUNT_KEPT_SQL, sorted(statuses)))


async def kept_batches(pool: asyncpg.Pool, statuses: frozenset[str],
                       batch_size: int) -> AsyncIterator[list[SyncDocument]]:
    """Every policy of `statuses` in id order (a rebuild)."""
    after = MIN_UUID
    while True:
        with postgres.translate_errors("read policies to rebuild"):
            rows = await pool.fetch(KEPT_SQL, after, batch_size, sorted(statuses))
        if not rows:
            return
        yield [_document(row) for row in rows]
        after = rows[-1]["id"]


async def records_by_ids(pool: asyncpg.Pool, ids: Sequence[str]) -> list[ChangedRecord]:
    """The current state of these policies (ids not in PostgreSQL are left out)."""
    with postgres.translate_errors("read policies"):
        rows = await pool.fetch(BY_IDS_SQL, list(ids))
    return [_record(row) for row in rows]


async def kept_checksums(pool: asyncpg.Pool, statuses: frozenset[str]) -> dict[str, str]:
    """id -> checksum of every policy of `statuses`: what a target holding them should hold."""
    with postgres.translate_errors("read checksums"):
        rows = await pool.fetch(KEPT_CHECKSUMS_SQL, sorted(statuses))
    return {row["id"]: row["checksum"] for row in rows}


async def read_watermark(pool: asyncpg.Pool, target: str) -> int:
    with postgres.translate_errors("read watermark"):
        value = await pool.fetchval("SELECT watermark_xid FROM sync_watermarks WHERE target = $1", target)
    return int(value or 0)


async def write_watermark(pool: asyncpg.Pool, target: str, watermark: int, run_id: str) -> None:
    with postgres.translate_errors("write watermark"):
        await pool.execute(
            """INSERT INTO sync_watermarks (target, watermark_xid, last_run_id) VALUES ($1, $2, $3)
               ON CONFLICT (target) DO UPDATE SET watermark_xid = EXCLUDED.watermark_xid,
                   last_run_id = EXCLUDED.last_run_id, last_success_at = now()""",
            target, watermark, run_id,
        )


def target_lock(pool: asyncpg.Pool, target: str, *,
                wait_seconds: float) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
    """A session advisory lock per target: sync, rebuild and repair of one target never run at once; one waits
    for the other up to `wait_seconds` (SYNC_LOCK_WAIT_SECONDS), then `postgres.LockBusyError`."""
    return postgres.session_lock(pool, f"aegis-sync:{target}", wait_seconds=wait_seconds)
