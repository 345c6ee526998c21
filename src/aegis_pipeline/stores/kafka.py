"""The Kafka API: producer and consumer factories, topic administration, error translation."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterable, Iterator, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    BrokerNotAvailableError,
    IllegalGenerationError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    RebalanceInProgressError,
    ReplicaNotAvailableError,
    TopicAlreadyExistsError,
    UnknownMemberIdError,
)
from aiokafka.producer.message_accumulator import BatchBuilder
from murmurhash2 import murmurhash2

from aegis_pipeline.common.errors import StoreRefusedError, StoreUnavailableError
from aegis_pipeline.settings import Settings

# Errors aiokafka does not mark `retriable` although it raises them when the broker is down or busy for a while:
# transient to us.
OUTAGE_ERRORS: tuple[type[KafkaError], ...] = (
    KafkaTimeoutError,  # a batch not delivered (or no room for it) within request_timeout_ms: no broker answered
    KafkaUnavailableError,
    BrokerNotAvailableError,
    ReplicaNotAvailableError,
    # The consumer group is rebalancing: rejoined, the same request succeeds (aiokafka retries its own offset
    # commits after these three, `GroupCoordinator._is_commit_retriable`).
    RebalanceInProgressError,
    UnknownMemberIdError,
    IllegalGenerationError,
)


def is_transient(error: BaseException) -> bool:
    """Whether the same Kafka operation may succeed when tried again: aiokafka's own `retriable` flag, and the
    outages it raises unflagged (`OUTAGE_ERRORS`, the bare `KafkaError`, network errors and timeouts)."""
    if isinstance(error, OSError | TimeoutError):
        return True
    if not isinstance(error, KafkaError):
        return False
    # The bare class is what aiokafka raises for "Unable to get cluster metadata over all known brokers" (an admin
    # client started while the broker is down) and to wrap unexpected failures of a fetch or of the group: not
    # known to be permanent.
    return type(error) is KafkaError or bool(error.retriable) or isinstance(error, OUTAGE_ERRORS)


@contextlib.contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    """Kafka's errors as the pipeline's, keeping their nature: a transient one (`is_transient`: the broker is
    unreachable, slow or busy) becomes `StoreUnavailableError`, retriable; one the broker or client refuses for
    good (not authorised, a message too large, an invalid request or configuration) becomes `StoreRefusedError`,
    not retriable, so that no caller retries it forever. Both carry DP_4003 and `store="kafka"`."""
    try:
        yield
    except (KafkaError, OSError, TimeoutError) as error:
        if is_transient(error):
            raise StoreUnavailableError(f"kafka {operation} failed: {type(error).__name__}", store="kafka") from error
        # aiokafka's message names the error class and what was refused (e.g. the topic, the message's size).
        raise StoreRefusedError(f"kafka {operation} refused: {error}"[:1000], store="kafka") from error


def create_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas; idempotent where the broker supports it."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "acks": "all",
        "enable_idempotence": settings.kafka_enable_idempotence,
        "linger_ms": 5,
        "max_batch_size": 262_144,
        "partitioner": partition_for_key,
        "request_timeout_ms": 10_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


FETCH_MAX_WAIT_MS = 100


def create_consumer(settings: Settings, *topics: str, group_id: str, **overrides: object) -> AIOKafkaConsumer:
    """A consumer in `group_id` that commits offsets itself, only after its work is durable."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        # A fetch waits at most this long for new messages. Kafka answers as soon as one arrives; the embedded
        # broker (tansu) answers only when the wait runs out. At the default 500 ms that was most of the hot
        # path's latency at low rates (p50 230 ms at 100 records/s; 47 ms with 100 ms waits, measured), and at
        # high rates it handed the hot path up to half a second of records at once. Whether it also lowers p99
        # under load was not settled: the benchmark's runs went both ways on this shared host.
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


KAFKA_MURMUR2_SEED = 0x9747B28C


def partition_for_key(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """The Java client's default partitioner, as aiokafka's `DefaultPartitioner` is: murmur2 of the key, or any
    available partition for a message without one. The same partitions, with murmur2 in compiled code: aiokafka
    hashes in Python, 4.4 µs per key, a twentieth of the hot path's CPU per event (measured)."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(murmurhash2(key, KAFKA_MURMUR2_SEED) & 0x7FFFFFFF) % len(all_partitions)]


async def send_all(producer: AIOKafkaProducer, messages: Iterable[tuple[str, bytes, bytes]]) -> int:
    """Send (topic, key, value) messages and wait until the broker acknowledged every one; returns how many.

    Messages are packed into one batch per partition (`send_batch`) instead of one `send` each: the same bytes on
    the wire at half the producer's CPU per message (measured: 8.5 against 15 µs). A key goes to the partition
    `send` would give it (`partition_for_key`), so every producer of a topic keeps one key on one partition, in
    the order given. Raises `KafkaError` (or a timeout) like `send` when the broker fails.
    """
    partitions_of: dict[str, list[int]] = {}
    open_batches: dict[tuple[str, int], BatchBuilder] = {}
    deliveries: list[asyncio.Future[object]] = []
    count = 0
    for topic, key, value in messages:
        if topic not in partitions_of:
            partitions_of[topic] = sorted(await producer.partitions_for(topic))
        partition = partition_for_key(key, partitions_of[topic], partitions_of[topic])
        batch = open_batches.get((topic, partition))
        if batch is None:
            batch = open_batches[(topic, partition)] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start the next
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
            batch = open_batches[(topic, partition)] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any one message
        count += 1
    for (topic, partition), batch in open_batches.items():
        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*deliveries)
    return count


async def ensure_topics(bootstrap_servers: str, topics: list[str], *, partitions: int) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    with translate_errors("create topics"):
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [name for name in topics if name not in existing]
            if missing:
                try:
                    await admin.create_topics(
                        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in missing]
                    )
                except TopicAlreadyExistsError:
                    pass  # another process created it between our list and create
            return missing
        finally:
            await admin.close()


async def list_topics(bootstrap_servers: str) -> set[str]:
    """The names of the topics the broker has (asks for no topic by name, so none is auto-created)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    with translate_errors("list topics"):
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()


async def ping(bootstrap_servers: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5_000)
    with translate_errors("ping"):
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()


async def with_own_topics(settings: Settings, tag: str, *, partitions: int) -> Settings:
    """`settings` with a raw, events and dead-letter topic of their own, named after `tag` and created: a test,
    benchmark or fault scenario then reads back only its own records and events."""
    topics = {"kafka_topic_raw_policies": f"raw-{tag}", "kafka_topic_policy_events": f"events-{tag}",
              "kafka_topic_dlq": f"dlq-{tag}"}
    await ensure_topics(settings.kafka_bootstrap_servers, list(topics.values()), partitions=partitions)
    return settings.model_copy(update=topics)
