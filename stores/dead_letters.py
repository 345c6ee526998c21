"""The dead-letter queue: records no stage could process, kept in two places.

The `dead_letters` table is the durable copy that `aegis-pipeline dlq list | retry | purge` works on; the
`data-pipeline-dlq` topic tells downstream consumers as it happens. The row is written first: if the topic send
fails, the letter is still kept (and is re-announced by a later retry), never lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from common.errors import ErrorCode, PipelineError
from common.logging import get_logger
from stores import kafka, postgres

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


class DeadLetterQueue:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer | None, topic: str) -> None:
        self._pool = pool
        self._producer = producer
        self._topic = topic

    async def send(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
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
                await self._producer.send(
                    self._topic,
                    json.dumps(message, ensure_ascii=False, default=str).encode("utf-8"),
                    key=(letter.record_key or "unknown").encode("utf-8"),
                )
            await self._producer.flush()
