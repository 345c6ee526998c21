"""How the hot path forms its batches, without engines: topped up while the previous batch is stored, up to
HOT_PATH_BATCH_SIZE records and HOT_PATH_BATCH_MAX_BYTES bytes (issue 26: 1 MB records made 100 MB batches whose
store held the event loop, and a batch past 256 MB would have been refused by PostgreSQL's jsonb)."""

from __future__ import annotations

import asyncio

from aiokafka import ConsumerRecord, TopicPartition

from aegis_pipeline.hot_path.service import HotPathService
from aegis_pipeline.settings import Settings

PARTITIONS = (TopicPartition("raw", 0), TopicPartition("raw", 1))


def message(offset: int, size: int) -> ConsumerRecord:
    return ConsumerRecord(topic="raw", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=b"k",
                          value=b"x" * size, checksum=None, serialized_key_size=1, serialized_value_size=size,
                          headers=())


class FetchesInTurn:
    """A consumer whose fetches return, in turn, `per_fetch` messages of `size` bytes from each partition."""

    def __init__(self, *, size: int, per_fetch: int) -> None:
        self.size, self.per_fetch, self.fetches, self.offset = size, per_fetch, 0, 0

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.fetches += 1
        fetched: dict[TopicPartition, list[ConsumerRecord]] = {}
        for partition in PARTITIONS:
            count = min(self.per_fetch, max_records - sum(map(len, fetched.values())))
            fetched[partition] = [message(self.offset + index, self.size) for index in range(count)]
            self.offset += count
        return fetched


async def next_batch(settings: Settings, consumer: FetchesInTurn) -> list[ConsumerRecord]:
    service = HotPathService(settings, consumer, None, None, None, None)  # type: ignore[arg-type]
    storing = asyncio.create_task(asyncio.sleep(60))  # the previous batch is being stored: the batch is topped up
    try:
        return await service._next_batch(storing)  # type: ignore[arg-type]
    finally:
        storing.cancel()


async def test_a_batch_of_large_records_stops_growing_at_its_byte_limit() -> None:
    settings = Settings.model_construct(hot_path_batch_size=500, hot_path_batch_max_bytes=5_000_000)
    consumer = FetchesInTurn(size=990_000, per_fetch=1)  # one 1 MB message from each partition per fetch
    batch = await next_batch(settings, consumer)
    assert (len(batch), consumer.fetches) == (6, 3)  # 5.94 MB: the fetch that passed the limit ends the batch


async def test_a_batch_of_small_records_is_still_limited_by_its_count() -> None:
    settings = Settings.model_construct(hot_path_batch_size=500, hot_path_batch_max_bytes=16_000_000)
    batch = await next_batch(settings, FetchesInTurn(size=2_000, per_fetch=100))
    assert len(batch) == 500


async def test_a_message_larger_than_the_byte_limit_is_a_batch_of_its_own() -> None:
    settings = Settings.model_construct(hot_path_batch_max_bytes=1)
    consumer = FetchesInTurn(size=990_000, per_fetch=1)
    assert len(await next_batch(settings, consumer)) == 2 and consumer.fetches == 1  # one fetch, whatever its size
