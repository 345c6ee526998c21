"""The Kafka API: producer and consumer factories, topic administration, error translation, and the broker's
view of how long a consumer group's waiting records have waited (`GroupFreshnessProbe`)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
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
from aiokafka.helpers import create_ssl_context
from aiokafka.producer.message_accumulator import BatchBuilder
from murmurhash2 import murmurhash2

from aegis_pipeline.common import metrics
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


def client_options(settings: Settings) -> dict[str, object]:
    """Where the brokers are and how to talk to them (TLS, SASL login): what every Kafka client of the pipeline is
    built with, producers, consumers and admin clients alike, so none of them connects in plaintext by mistake."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol.value,
    }
    if settings.kafka_uses_tls:
        # Checks the brokers' certificates and host names: against KAFKA_CA_FILE, else the system's CAs.
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ca_file, certfile=settings.kafka_client_cert_file,
            keyfile=settings.kafka_client_key_file)
    if settings.kafka_security_protocol.startswith("SASL_"):
        # aiokafka takes the SCRAM mechanisms' credentials under the same `sasl_plain_*` names.
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism.value,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return options


def create_admin(settings: Settings, *, request_timeout_ms: int = 10_000) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=request_timeout_ms)


def create_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas; idempotent where the broker supports it."""
    options: dict[str, object] = {
        **client_options(settings),
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
        **client_options(settings),
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


def create_reader(settings: Settings, *topics: str, **overrides: object) -> AIOKafkaConsumer:
    """A consumer of no group that reads `topics` from their beginning and commits nothing, as a downstream
    service or a benchmark looks at what was sent."""
    options: dict[str, object] = {**client_options(settings), "group_id": None, "auto_offset_reset": "earliest",
                                  "enable_auto_commit": False}
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


async def send_all(producer: AIOKafkaProducer, messages: Iterable[tuple[str, bytes, bytes | None]]) -> int:
    """Send (topic, key, value) messages and wait until the broker acknowledged every one; returns how many. A
    None value is a tombstone (a compacted topic's deletion of the key).

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


# The topic configuration of the catalogue topic (`kafka_topic_policy_state`, stores/catalogue.py): compacted, so
# that the broker keeps at least the last message of each key (the policy's latest state, or its tombstone until
# delete.retention.ms has passed). A broker that does not compact (the embedded Tansu) only keeps more than needed.
STATE_TOPIC_CONFIG: Mapping[str, str] = {"cleanup.policy": "compact"}


async def ensure_topics(settings: Settings, topics: list[str], *, partitions: int,
                        config: Mapping[str, str] | None = None) -> list[str]:
    """Create the topics that do not exist yet, with `config` (topic configuration, e.g. `STATE_TOPIC_CONFIG`);
    returns the names created. A topic that exists keeps the configuration it has."""
    admin = create_admin(settings)
    with translate_errors("create topics"):
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [name for name in topics if name not in existing]
            if missing:
                try:
                    await admin.create_topics(
                        [NewTopic(name, num_partitions=partitions, replication_factor=1,
                                  topic_configs=dict(config or {})) for name in missing]
                    )
                except TopicAlreadyExistsError:
                    pass  # another process created it between our list and create
            return missing
        finally:
            await admin.close()


async def list_topics(settings: Settings) -> set[str]:
    """The names of the topics the broker has (asks for no topic by name, so none is auto-created)."""
    admin = create_admin(settings)
    with translate_errors("list topics"):
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()


async def ping(settings: Settings) -> None:
    admin = create_admin(settings, request_timeout_ms=5_000)
    with translate_errors("ping"):
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()


async def ensure_pipeline_topics(settings: Settings) -> list[str]:
    """Create the pipeline's topics that do not exist yet, each with KAFKA_TOPIC_PARTITIONS partitions: raw,
    events, dead letters, and the catalogue topic (compacted); returns the names created."""
    topics = [settings.kafka_topic_raw_policies, settings.kafka_topic_policy_events, settings.kafka_topic_dlq]
    created = await ensure_topics(settings, topics, partitions=settings.kafka_topic_partitions)
    return created + await ensure_topics(settings, [settings.kafka_topic_policy_state],
                                         partitions=settings.kafka_topic_partitions, config=STATE_TOPIC_CONFIG)


async def with_own_topics(settings: Settings, tag: str, *, partitions: int) -> Settings:
    """`settings` with a raw, events, dead-letter and catalogue topic of their own, named after `tag` and created:
    a test, benchmark or fault scenario then reads back only its own records and events."""
    topics = {"kafka_topic_raw_policies": f"raw-{tag}", "kafka_topic_policy_events": f"events-{tag}",
              "kafka_topic_dlq": f"dlq-{tag}"}
    await ensure_topics(settings, list(topics.values()), partitions=partitions)
    state = {"kafka_topic_policy_state": f"state-{tag}"}
    await ensure_topics(settings, list(state.values()), partitions=partitions, config=STATE_TOPIC_CONFIG)
    return settings.model_copy(update={**topics, **state})


@dataclass(frozen=True)
class GroupLag:
    """What a consumer group has not committed on a topic, per partition number: `ages`, seconds its oldest such
    record has waited (0 when none); `records`, how many there are (end offset minus where the group goes on
    from). Neither is ever negative."""

    topic: str
    ages: dict[int, float]
    records: dict[int, int]

    @property
    def oldest_age(self) -> float:
        return max(self.ages.values(), default=0.0)


class GroupFreshnessProbe:
    """How long the records a consumer group has not committed yet have waited on a topic, and how many there are,
    read from the broker alone: for each partition, now minus the broker timestamp of the first record at or after
    the group's committed offset (the partition's beginning when the group never committed there), and the end
    offset minus that offset; 0 when the group has committed up to the end. The group's members are not asked, so
    the answer stands when none is running: a stopped consumer's backlog keeps ageing and growing.

    Holds an admin client (topic metadata, the group's committed offsets) and a consumer of no group (end offsets,
    and the record at each committed offset), both kept between reads: `start` once, read on every scrape, `stop`.
    Reads take turns (one consumer is seeked for each). The consumer reads as the pipeline's consumers do
    (`read_committed`), so the end of a partition is the end they see.

    The embedded broker (tansu 0.6, memory storage) answers the end of a partition as the first offset of its
    newest batch + 1: there, records after a commit inside the newest batch of a partition are not seen until the
    next batch arrives (Kafka answers the true end).
    """

    def __init__(self, settings: Settings, topic: str, group_id: str, *, read_timeout_seconds: float = 2.0) -> None:
        self.topic = topic
        self.group_id = group_id
        self._read_timeout_seconds = read_timeout_seconds
        self._admin = create_admin(settings)
        self._consumer = AIOKafkaConsumer(
            **client_options(settings), group_id=None, enable_auto_commit=False,
            isolation_level="read_committed", fetch_max_wait_ms=FETCH_MAX_WAIT_MS, request_timeout_ms=10_000,
        )
        self._turn = asyncio.Lock()
        self._exported: set[int] = set()  # partitions whose kafka_consumer_group_lag `export_metrics` set

    async def start(self) -> None:
        with translate_errors("start freshness probe"):
            await self._admin.start()
            await self._consumer.start()

    async def stop(self) -> None:
        for closing in (self._consumer.stop(), self._admin.close()):
            with contextlib.suppress(KafkaError, OSError, TimeoutError):  # stopping: nothing left to report
                await closing

    async def oldest_uncommitted_age(self) -> float:
        """Seconds the oldest record the group has not committed has waited, over all partitions; 0 when the
        group is caught up (or the topic is empty)."""
        return (await self.read()).oldest_age

    async def uncommitted_ages(self) -> dict[int, float]:
        """Per partition of the topic: seconds its oldest record the group has not committed has waited (0 when
        the group committed up to the end). Raises `StoreUnavailableError` when the broker does not answer, or
        does not know the topic."""
        return (await self.read()).ages

    async def read(self) -> GroupLag:
        """Per partition of the topic, from one read of the broker: how long the oldest record the group has not
        committed has waited, and how many records it has not committed. Raises `StoreUnavailableError` when the
        broker does not answer, or does not know the topic."""
        async with self._turn:
            with translate_errors("read group freshness"):
                partitions = await self._partitions()
                committed = await self._admin.list_consumer_group_offsets(self.group_id, partitions=partitions)
                ends = await self._consumer.end_offsets(partitions)
                beginnings = await self._consumer.beginning_offsets(partitions)
                # Where the group would go on from: its committed offset (-1 or missing: never committed; an offset
                # before the beginning: those records are gone), else the first record still on the partition.
                starts = {partition: max(committed[partition].offset if partition in committed else -1,
                                         beginnings[partition]) for partition in partitions}
                waiting = [partition for partition in partitions if starts[partition] < ends[partition]]
                firsts = await self._first_records(waiting, starts) if waiting else {}
        now_ms = time.time() * 1000
        # Never negative: a record stamped ahead of this clock (the producer's clock, or the broker's with
        # LogAppendTime, runs fast) has waited 0 s, not less; and the embedded broker answers an end that a commit
        # can be past (see above), which is no record waiting.
        return GroupLag(
            topic=self.topic,
            ages={partition.partition: max(0.0, (now_ms - firsts[partition].timestamp) / 1000)
                  if partition in firsts else 0.0 for partition in partitions},
            records={partition.partition: max(0, ends[partition] - starts[partition]) for partition in partitions})

    async def export_metrics(self, *, path: str) -> GroupLag:
        """Read the broker once and set, for the scheduler's /metrics: `pipeline_lag_seconds{path}` (the oldest
        age), `kafka_consumer_group_lag{topic,partition}` (records not committed) and
        `pipeline_lag_last_refresh_timestamp_seconds{path}`. Raises as `read` does, leaving the last values set
        and the timestamp as it was, so their age shows (the ops server logs the failure and still answers).

        The group's own lag, measured here and not by its members: a hot path that is stopped or stuck exports
        nothing fresh, and its backlog must still grow on the dashboard."""
        lag = await self.read()
        metrics.pipeline_lag_seconds.labels(path=path).set(lag.oldest_age)
        for partition in self._exported - lag.records.keys():  # a partition the topic no longer has
            metrics.kafka_consumer_group_lag.remove(self.topic, str(partition))
        for partition, records in lag.records.items():
            metrics.kafka_consumer_group_lag.labels(topic=self.topic, partition=str(partition)).set(records)
        self._exported = set(lag.records)
        metrics.pipeline_lag_last_refresh_timestamp_seconds.labels(path=path).set(time.time())
        return lag

    async def _partitions(self) -> list[TopicPartition]:
        # Metadata of every topic rather than of this one by name: a broker that creates topics on demand (tansu
        # does) would create it, and a topic the broker lost is the hot path's to create again, with its
        # partitions (hot_path/broker_watch.py).
        described = [topic for topic in await self._admin.describe_topics() if topic["topic"] == self.topic]
        if not described or not described[0]["partitions"]:
            raise StoreUnavailableError(f"kafka topic {self.topic} is not on the broker", store="kafka")
        return sorted(TopicPartition(self.topic, partition["partition"]) for partition in described[0]["partitions"])

    async def _first_records(self, partitions: list[TopicPartition],
                             starts: dict[TopicPartition, int]) -> dict[TopicPartition, ConsumerRecord]:
        """The first record at or after `starts` of each partition; `KafkaTimeoutError` when one is not read
        within the read timeout (there is one: every partition given lags)."""
        self._consumer.assign(partitions)
        try:
            for partition in partitions:
                self._consumer.seek(partition, starts[partition])
            firsts: dict[TopicPartition, ConsumerRecord] = {}
            deadline = time.monotonic() + self._read_timeout_seconds
            while len(firsts) < len(partitions):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KafkaTimeoutError(f"no record read at the committed offsets of {self.topic} in time")
                missing = [partition for partition in partitions if partition not in firsts]
                fetched = await self._consumer.getmany(*missing, timeout_ms=max(1, int(remaining * 1000)))
                for partition, records in fetched.items():
                    if records:
                        firsts.setdefault(partition, records[0])
            return firsts
        finally:
            self._consumer.unsubscribe()  # no fetching ahead between scrapes
