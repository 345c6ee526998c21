"""The dead-letter queue: records no stage could process, kept in two places.

The `dead_letters` table is the durable copy that `aegis-pipeline dlq list | retry | purge` works on; the
`data-pipeline-dlq` topic tells downstream consumers as it happens. The row is written first: if the topic send
fails, the letter is still kept (and is re-announced by a later retry), never lost.

A letter is refused input, so it may hold anything: every text and JSON value is made storable before it is
written (NUL and lone surrogates removed, NaN and infinities written as text), so the queue itself never refuses
a letter. Personal contact data in the message, details, payload and payload text is always masked
(`domain.masking.mask_text`, imported here, so no caller can forget it) in the table and on the topic alike: the
queue is read by people (`dlq list`) and by other services. A topic message that would be larger than
`TOPIC_MESSAGE_LIMIT_BYTES` goes without its `original_data` (the table keeps it).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import ErrorCode, PipelineError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.domain.masking import mask_text
from aegis_pipeline.stores import kafka, postgres

log = get_logger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    stage: str                      # collect | hot | cold | sync
    error_code: ErrorCode
    error_message: str
    source_system: str | None = None
    record_key: str | None = None
    error_details: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] | None = None  # the record as received, when it was JSON
    payload_text: str | None = None        # otherwise the raw text (truncated), so nothing is silently dropped

    @classmethod
    def from_error(cls, stage: str, error: PipelineError, **fields: Any) -> DeadLetter:
        return cls(stage=stage, error_code=error.code, error_message=str(error.args[0]),
                   error_details=error.details, **fields)


TOPIC_MESSAGE_LIMIT_BYTES = 900_000  # under Kafka's default message.max.bytes (1,048,588)
# PostgreSQL text and jsonb refuse NUL; UTF-8 (the wire encoding) cannot carry lone surrogates.
_NOT_STORABLE = re.compile(r"[\x00\ud800-\udfff]")


def _storable(value: Any, *, masked: bool = True) -> Any:
    if isinstance(value, str):
        storable = _NOT_STORABLE.sub("", value)
        return mask_text(storable) if masked else storable
    if isinstance(value, dict):
        return {_NOT_STORABLE.sub("", str(key)): _storable(item, masked=masked) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item, masked=masked) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinities are not JSON
    return value


class DeadLetterQueue:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer | None, topic: str) -> None:
        self._pool = pool
        self._producer = producer
        self._topic = topic

    def _prepared(self, letter: DeadLetter) -> DeadLetter:
        # The source and the record key identify the letter (and the record it holds): kept as they are.
        return DeadLetter(
            stage=letter.stage, error_code=letter.error_code,
            error_message=_storable(letter.error_message),
            source_system=_storable(letter.source_system, masked=False),
            record_key=_storable(letter.record_key, masked=False),
            error_details=_storable(letter.error_details),
            payload=_storable(letter.payload),
            payload_text=_storable(letter.payload_text),
        )

    async def refresh_unresolved_gauge(self) -> None:
        """`refresh_unresolved_gauge` on this queue's database (for `OpsServer(before_scrape=...)`)."""
        await refresh_unresolved_gauge(self._pool)

    async def send(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        letters = [self._prepared(letter) for letter in letters]
        rows = [
            (letter.stage, letter.source_system, letter.record_key, letter.error_code.value, letter.error_message,
             json.dumps(letter.error_details, ensure_ascii=False, default=str),
             None if letter.payload is None else json.dumps(letter.payload, ensure_ascii=False, default=str),
             letter.payload_text)
            for letter in letters
        ]
        with postgres.translate_errors("dead letter insert"):
            await self._pool.executemany(
                """
                INSERT INTO dead_letters (stage, source_system, record_key, error_code, error_message,
                                          error_details, payload, payload_text)
                VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)
                """,
                rows,
            )
        for letter in letters:
            metrics.dead_letters_total.labels(stage=letter.stage, error_code=letter.error_code.value).inc()
            log.warning("dead_lettered", stage=letter.stage, source=letter.source_system,
                        record_key=letter.record_key, error_code=letter.error_code.value,
                        reason=letter.error_message)
        if self._producer is None:
            return
        with kafka.translate_errors("dead letter send"):
            for letter in letters:
                message = {
                    "stage": letter.stage, "source_system": letter.source_system, "record_key": letter.record_key,
                    "error_code": letter.error_code.value, "error_message": letter.error_message,
                    "error_details": letter.error_details, "original_data": letter.payload,
                }
                value = json.dumps(message, ensure_ascii=False, default=str).encode("utf-8")
                if len(value) > TOPIC_MESSAGE_LIMIT_BYTES:
                    message.update(original_data=None, original_data_omitted="too large; kept in dead_letters")
                    value = json.dumps(message, ensure_ascii=False, default=str).encode("utf-8")
                await self._producer.send(self._topic, value, key=(letter.record_key or "unknown").encode("utf-8"))
            await self._producer.flush()


async def refresh_unresolved_gauge(pool: asyncpg.Pool) -> None:
    """Set `dead_letters_unresolved{stage,status}` from the table (the ops server calls this on each scrape).

    Every stage and status seen is set, and those that emptied since the last refresh drop to 0.
    """
    with postgres.translate_errors("count unresolved dead letters"):
        rows = await pool.fetch(
            "SELECT stage, status, count(*) AS n FROM dead_letters "
            "WHERE status IN ('pending', 'exhausted') GROUP BY stage, status"
        )
    counts = {(row["stage"], row["status"]): row["n"] for row in rows}
    for stage, status in {*_UNRESOLVED_SEEN, *counts}:
        metrics.dead_letters_unresolved.labels(stage=stage, status=status).set(counts.get((stage, status), 0))
    _UNRESOLVED_SEEN.update(counts)


_UNRESOLVED_SEEN: set[tuple[str, str]] = {(stage, status) for stage in ("collect", "hot", "cold", "sync")
                                          for status in ("pending", "exhausted")}


MAX_RETRIES = 3  # design §6.2.2: a letter is retried at most three times, then it waits for a person


@dataclass(frozen=True)
class StoredLetter:
    id: str
    stage: str
    source_system: str | None
    record_key: str | None
    error_code: str
    error_message: str
    payload: dict[str, Any] | None
    payload_text: str | None
    retry_count: int
    status: str
    first_failed_at: Any
    last_failed_at: Any


class DeadLetterStore:
    """The `dead_letters` table as `aegis-pipeline dlq` works on it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def list(self, *, statuses: list[str], limit: int = 100) -> list[StoredLetter]:
        with postgres.translate_errors("list dead letters"):
            rows = await self._pool.fetch(
                """
                SELECT id::text, stage, source_system, record_key, error_code, error_message, payload::text,
                       payload_text, retry_count, status, first_failed_at, last_failed_at
                FROM dead_letters WHERE status = ANY($1::text[]) ORDER BY last_failed_at DESC LIMIT $2
                """,
                statuses, limit,
            )
        return [_letter(row) for row in rows]

    async def retriable(self, *, ids: list[str] | None = None, limit: int = 1000) -> list[StoredLetter]:
        """Pending letters with retries left, oldest failure first (only those `ids`, when given)."""
        with postgres.translate_errors("list retriable dead letters"):
            rows = await self._pool.fetch(
                """
                SELECT id::text, stage, source_system, record_key, error_code, error_message, payload::text,
                       payload_text, retry_count, status, first_failed_at, last_failed_at
                FROM dead_letters
                WHERE status = 'pending' AND retry_count < $1 AND ($2::uuid[] IS NULL OR id = ANY($2::uuid[]))
                ORDER BY last_failed_at LIMIT $3
                """,
                MAX_RETRIES, ids, limit,
            )
        return [_letter(row) for row in rows]

    async def resolve(self, letter_id: str) -> None:
        with postgres.translate_errors("resolve dead letter"):
            await self._pool.execute(
                "UPDATE dead_letters SET status = 'resolved', last_retry_at = now() WHERE id = $1::uuid", letter_id
            )

    async def retry_failed(self, letter_id: str, error_message: str) -> str:
        """Count a failed retry; returns the new status (`exhausted` after the last allowed retry)."""
        with postgres.translate_errors("count dead letter retry"):
            return await self._pool.fetchval(
                """
                UPDATE dead_letters SET retry_count = retry_count + 1, error_message = $2,
                       last_failed_at = now(), last_retry_at = now(),
                       status = CASE WHEN retry_count + 1 >= $3 THEN 'exhausted' ELSE 'pending' END
                WHERE id = $1::uuid RETURNING status
                """,
                letter_id, error_message[:2000], MAX_RETRIES,
            )

    async def count_purgeable(self, *, statuses: list[str], older_than_days: float = 0) -> int:
        """How many letters `purge` with the same arguments would delete now."""
        with postgres.translate_errors("count dead letters to purge"):
            return int(await self._pool.fetchval(
                "SELECT count(*) FROM dead_letters WHERE status = ANY($1::text[]) "
                "AND last_failed_at <= now() - make_interval(secs => $2)",
                statuses, older_than_days * 86400,
            ))

    async def purge(self, *, statuses: list[str], older_than_days: float = 0) -> int:
        with postgres.translate_errors("purge dead letters"):
            result = await self._pool.execute(
                "DELETE FROM dead_letters WHERE status = ANY($1::text[]) "
                "AND last_failed_at <= now() - make_interval(secs => $2)",
                statuses, older_than_days * 86400,
            )
        return int(result.split()[-1])

    async def counts(self) -> dict[str, int]:
        with postgres.translate_errors("count dead letters"):
            rows = await self._pool.fetch("SELECT status, count(*) AS n FROM dead_letters GROUP BY status")
        return {row["status"]: row["n"] for row in rows}


def _letter(row: asyncpg.Record) -> StoredLetter:
    return StoredLetter(**{**dict(row), "payload": json.loads(row["payload"]) if row["payload"] else None})
