"""Dead-letter retries: a letter that is valid now is stored and resolved; one still invalid is counted
and, after the third failed retry, exhausted and no longer offered."""

from __future__ import annotations

import uuid

import pytest

from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.hot_path.cache import PolicyCache
from aegis_pipeline.hot_path.dead_letter_retry import retry_hot_letter
from aegis_pipeline.hot_path.processor import HotPathProcessor
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache, kafka, postgres
from aegis_pipeline.stores.dead_letters import DeadLetter, DeadLetterQueue, DeadLetterStore
from aegis_pipeline.stores.outbox import OutboxRelay

pytestmark = pytest.mark.integration


async def test_retry_resolves_what_is_valid_now_and_exhausts_the_rest(stack: Settings) -> None:
    source = f"dlq_{uuid.uuid4().hex[:6]}"
    fixed = make_record(1, source=source).model_dump(mode="json")  # e.g. refused earlier, valid since a fix
    broken = {**make_record(2, source=source).model_dump(mode="json"), "title": ""}
    pool = await postgres.create_pool(stack)
    redis_client = cache.create_client(stack.redis_url)
    try:
        queue = DeadLetterQueue(pool, None, stack.kafka_topic_dlq)
        await queue.send([
            DeadLetter(stage="hot", error_code=ErrorCode.VALIDATION_FAILED, error_message="was invalid",
                       record_key=f"{source}:fixed", payload=fixed),
            DeadLetter(stage="hot", error_code=ErrorCode.VALIDATION_FAILED, error_message="title: too short",
                       record_key=f"{source}:broken", payload=broken),
        ])
        letters = DeadLetterStore(pool)
        ours = {letter.record_key: letter for letter in await letters.retriable(limit=100_000)
                if (letter.record_key or "").startswith(source)}
        assert set(ours) == {f"{source}:fixed", f"{source}:broken"}
        processor = HotPathProcessor(stack, PolicyStore(pool), PolicyCache(redis_client, ttl_seconds=60), queue)

        assert await retry_hot_letter(ours[f"{source}:fixed"], processor, letters) == "resolved"
        broken_letter = ours[f"{source}:broken"]
        statuses = []
        for _ in range(3):
            statuses.append(await retry_hot_letter(broken_letter, processor, letters))
        assert statuses == ["pending", "pending", "exhausted"]
        assert await letters.retriable(ids=[broken_letter.id, ours[f"{source}:fixed"].id]) == []

        async with postgres.connect(stack.postgres_dsn()) as connection:
            stored = await connection.fetchval("SELECT count(*) FROM policies WHERE source_system = $1", source)
            rows = await connection.fetch("SELECT record_key, status, retry_count FROM dead_letters "
                                          "WHERE record_key LIKE $1 ORDER BY record_key", f"{source}:%")
        assert stored == 1
        # The stored policy is announced like any other: its event is in the outbox, and the relay sends it.
        producer = kafka.create_producer(stack)
        await producer.start()
        try:
            assert await OutboxRelay(pool, producer).drain() >= 1
        finally:
            await producer.stop()
        assert [(row["record_key"], row["status"], row["retry_count"]) for row in rows] == [
            (f"{source}:broken", "exhausted", 3), (f"{source}:fixed", "resolved", 0)]
    finally:
        await redis_client.aclose()
        await pool.close()


def test_retry_of_an_id_that_is_not_a_letter_id_is_a_usage_error() -> None:
    """An id that cannot be a letter's (not a UUID) is refused before anything is read, with the option named."""
    from click.testing import CliRunner

    from aegis_pipeline.cli.main import main

    result = CliRunner().invoke(main, ["dlq", "retry", "--id", "not-a-uuid"])
    assert result.exit_code == 2
    assert "Invalid value for '--id'" in result.output and "not a valid UUID" in result.output
