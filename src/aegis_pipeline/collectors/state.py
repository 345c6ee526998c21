"""What the collectors remember between runs, in PostgreSQL: a checkpoint per source (its cursor and where its
full listing stands: `collectors.incremental`) and the content hash of every record published (tables from
migrations 0002, 0012, 0013 and 0015: a web board's crawl position), and when a listing last showed each record.

The hash remembered is the content hash of the record as published (`domain.hashing.published_hash`, of the
validated record before cleaning). The hot path computes the same hash from the record it receives and stores it
as `policies.published_hash` beside the version it made of it, so "published but never stored" is one comparison
with `policies`, and the collector never cleans a record to learn how it will be stored (cleaning happens once,
in the hot path: the raw topic is the trust boundary)."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from aegis_pipeline.collectors.incremental import Checkpoint
from aegis_pipeline.stores import postgres


class CollectorState:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def known_hashes(self, source: str, external_ids: list[str]) -> dict[str, str]:
        with postgres.translate_errors("read hashes"):
            rows = await self._pool.fetch(
                "SELECT external_id, content_hash FROM collected_records "
                "WHERE source_system = $1 AND external_id = ANY($2::text[])",
                source, external_ids,
            )
        return {row["external_id"]: row["content_hash"] for row in rows}

    async def unstored(self, source: str, *, grace_seconds: float) -> set[str]:
        """External ids published more than `grace_seconds` ago whose published version is not in `policies`:
        the broker acknowledged them, but they never reached the store (a broker that lost its data). The
        collector publishes them again; the hot path's upsert makes a repeat harmless."""
        with postgres.translate_errors("read unstored records"):
            rows = await self._pool.fetch(
                """
                SELECT c.external_id FROM collected_records c
                WHERE c.source_system = $1 AND c.last_published_at < now() - make_interval(secs => $2)
                  AND NOT EXISTS (SELECT 1 FROM policies p WHERE p.source_system = c.source_system
                                  AND p.external_id = c.external_id AND p.published_hash = c.content_hash)
                """,
                source, grace_seconds,
            )
        return {row["external_id"] for row in rows}

    async def remember_published(self, source: str, hashes: dict[str, str]) -> None:
        """Record what the broker acknowledged; called only after the send succeeded."""
        if not hashes:
            return
        with postgres.translate_errors("write hashes"):
            await self._pool.execute(
                """
                INSERT INTO collected_records (source_system, external_id, content_hash)
                SELECT $1, external_id, content_hash FROM unnest($2::text[], $3::text[]) AS t(external_id, content_hash)
                ON CONFLICT (source_system, external_id)
                DO UPDATE SET content_hash = EXCLUDED.content_hash, last_published_at = now()
                """,
                source, list(hashes), list(hashes.values()),
            )

    async def mark_listed(self, source: str, external_ids: list[str], listed_at: datetime) -> None:
        """Note that a listing showed these records at `listed_at` (the mark of mark and sweep)."""
        if not external_ids:
            return
        with postgres.translate_errors("mark listed records"):
            await self._pool.execute(
                "UPDATE collected_records SET last_listed_at = greatest(last_listed_at, $3::timestamptz) "
                "WHERE source_system = $1 AND external_id = ANY($2::text[])", source, external_ids, listed_at)

    async def checkpoint(self, source: str) -> Checkpoint:
        """The source's collection state; an empty one before its first run."""
        with postgres.translate_errors("read checkpoint"):
            row = await self._pool.fetchrow(
                "SELECT cursor_value, full_listing_next_page, full_listing_completed_at, listing_started_at, "
                "last_complete_listing_at, board_next_page FROM collection_checkpoints WHERE source_system = $1",
                source
            )
        if row is None:
            return Checkpoint()
        return Checkpoint(row["cursor_value"], row["full_listing_next_page"], row["full_listing_completed_at"],
                          row["listing_started_at"], row["last_complete_listing_at"], row["board_next_page"])

    async def save_board_position(self, source: str, next_page: int | None, *, run_at: datetime) -> None:
        """Where the board's crawl resumes (None: at its first page), written as soon as a list page is published
        (migration 0015), so that a run stopped by anything, a SIGKILL included, resumes there. The only writer of
        `board_next_page`: `save_checkpoint` leaves it alone."""
        with postgres.translate_errors("write board position"):
            await self._pool.execute(
                "INSERT INTO collection_checkpoints (source_system, last_run_at, board_next_page) "
                "VALUES ($1, $2::timestamptz, $3) "
                "ON CONFLICT (source_system) DO UPDATE SET board_next_page = EXCLUDED.board_next_page",
                source, run_at, next_page,
            )

    async def save_checkpoint(
        self, source: str, *, run_at: datetime, succeeded: bool, checkpoint: Checkpoint, counts: dict[str, int]
    ) -> None:
        with postgres.translate_errors("write checkpoint"):
            await self._pool.execute(
                """
                INSERT INTO collection_checkpoints (source_system, cursor_value, last_run_at, last_success_at,
                                                    last_counts, full_listing_next_page, full_listing_completed_at,
                                                    listing_started_at, last_complete_listing_at)
                VALUES ($1, $2, $3::timestamptz, CASE WHEN $4::boolean THEN $3::timestamptz END, $5::jsonb, $6, $7,
                        $8, $9)
                ON CONFLICT (source_system) DO UPDATE SET
                    cursor_value = EXCLUDED.cursor_value,
                    last_run_at = EXCLUDED.last_run_at,
                    last_success_at = COALESCE(EXCLUDED.last_success_at, collection_checkpoints.last_success_at),
                    last_counts = EXCLUDED.last_counts,
                    full_listing_next_page = EXCLUDED.full_listing_next_page,
                    full_listing_completed_at = EXCLUDED.full_listing_completed_at,
                    listing_started_at = EXCLUDED.listing_started_at,
                    last_complete_listing_at = EXCLUDED.last_complete_listing_at
                """,
                source, checkpoint.cursor, run_at, succeeded, json.dumps(counts),
                checkpoint.full_listing_next_page, checkpoint.full_listing_completed_at,
                checkpoint.listing_started_at, checkpoint.last_complete_listing_at,
            )
