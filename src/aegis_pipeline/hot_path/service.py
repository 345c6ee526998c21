"""`aegis-pipeline hot-path [--drain]`: the raw topic consumed as a consumer group, in batches.

For each batch: `HotPathProcessor.process` (validate, clean, store with events, cache), then the offsets are
committed: only ever after the batch is durable in PostgreSQL. A transient failure (database, broker) is
retried with backoff for as long as it lasts, without committing, so nothing is skipped. A failure that is not
transient is isolated: the batch is processed one message at a time and the message that still fails (a
poison message) goes to the dead-letter queue (DP_4003), so it cannot stall its partition.

Each batch's events are sent as soon as its transaction commits; the outbox relay runs beside the consumer
for what a failed send left behind, and so does the broker watch (`broker_watch.py`), which notices a
broker that lost its data, creates the topics again and announces again what the broker may have lost. After
a broker restart the consumer rejoins its group by itself (aiokafka reconnects; with its offsets gone it
starts from the earliest message, and a redelivered record changes nothing).

The consumer lag of the partitions it is assigned (`kafka_consumer_lag`) is refreshed beside the batches too,
every LAG_REFRESH_SECONDS, so that it keeps growing while a batch is stuck (PostgreSQL down, the store retried).
How long records wait on the raw topic (`pipeline_lag_seconds{path="hot"}`) is not measured here: a hot path
that is stopped could not report it, so the scheduler reads it from the broker (`stores.kafka.GroupFreshnessProbe`).

The event loop always answers (issue 26): a batch's validation and cleaning (`HotPathProcessor.prepare`:
pydantic, masking, normalisation, hashes), the hot path's CPU work, runs in a worker thread of its own (a batch
under PREPARE_ON_LOOP_MAX_BYTES, quick to prepare, stays on the loop), so that `/health`, fetching, storing and
relaying go on meanwhile; and a batch stops growing at HOT_PATH_BATCH_MAX_BYTES, so that what stays on the loop
per batch (the store's one JSON parameter, the events, the cache's documents) stays small. Before, a burst of
1 MB records held the loop for seconds at a time, and a liveness probe restarts such a pod.
Why a thread (measured, docs/benchmarks.md): threads do not run Python in parallel (the GIL), but a waiting thread
gets the GIL within the switch interval (5 ms), so the loop answers in milliseconds whatever the worker is doing.
A process pool cost twice the CPU per large record (each cleaned policy pickled there and unpickled on the loop,
which still stalled for a second); yielding to the loop every 20 ms of work left `/health` waiting 90 ms at the
median and as long as the slowest single record at worst, and cost throughput. One worker is enough: one batch is
prepared at a time, and replicas (processes) are what runs the hot path in parallel.

SIGTERM finishes the batch in hand, commits, relays what is pending and exits. `--drain` stops once every
assigned partition is consumed to its end (for batch use and tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import ErrorCode, PipelineError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.common.ops_server import OpsServer, ops_hosts
from aegis_pipeline.common.retry import backoff_seconds
from aegis_pipeline.hot_path.broker_watch import BrokerWatch
from aegis_pipeline.hot_path.cache import PolicyCache
from aegis_pipeline.hot_path.processor import OUTCOME_COUNTS, BatchResult, HotPathProcessor, PreparedBatch, RawMessage
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.events import EventType
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import cache, kafka, postgres
from aegis_pipeline.stores.dead_letters import DeadLetter, DeadLetterQueue
from aegis_pipeline.stores.outbox import OutboxRelay, SentEvent

log = get_logger(__name__)

LAG_REFRESH_SECONDS = 5.0
SHUTDOWN_TIMEOUT_SECONDS = 15.0
IDLE_POLL_MS = 200  # how long a fetch waits for records when no batch is being stored
TOP_UP_POLL_MS = 10  # how long a fetch waits while a batch is being stored, before looking whether it is done
# A batch of fewer message bytes is prepared on the event loop: 0.05-0.1 s for 500 records of 2 KB (55-110 µs each,
# the benchmark's host speed), 0.2 s of the costliest input found (0.2 ms a KB); handing small batches to the worker
# cost 11% more CPU per record in the benchmark's stream of small records (docs/benchmarks.md).
PREPARE_ON_LOOP_MAX_BYTES = 1_000_000


@dataclass
class HotPathSummary:
    batches: int = 0
    received: int = 0
    stored: int = 0
    unchanged: int = 0
    superseded: int = 0
    invalid: int = 0
    poison: int = 0
    events_sent: int = 0

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        for name in OUTCOME_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(result, name))


def to_raw_message(record: ConsumerRecord) -> RawMessage:
    return RawMessage(value=record.value or b"", key=record.key, partition=record.partition, offset=record.offset,
                      timestamp_ms=record.timestamp)


def observe_sent_events(events: list[SentEvent]) -> None:
    """Collection-to-event latency of each `policy.validated` the relay delivered."""
    now = datetime.now(UTC)
    latency = metrics.pipeline_processing_latency_seconds.labels(path="hot")
    for event in events:
        if event.event_type == EventType.POLICY_VALIDATED.value and event.collected_at:
            # A collector whose clock runs ahead would give a negative latency: count it as no wait at all.
            latency.observe(max(0.0, (now - datetime.fromisoformat(event.collected_at)).total_seconds()))


class HotPathService:
    def __init__(self, settings: Settings, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                 processor: HotPathProcessor, relay: OutboxRelay, dead_letters: DeadLetterQueue,
                 watch: BrokerWatch | None = None) -> None:
        self._settings = settings
        self._consumer = consumer
        self.producer = producer  # also used by `dlq retry` to republish collector letters
        self.processor = processor
        self._relay = relay
        self._watch = watch
        self.dead_letters = dead_letters  # also read by the ops server (the unresolved counts)
        self.summary = HotPathSummary()
        self.not_ready_reason: str | None = "starting"
        self._lag_partitions: set[TopicPartition] = set()  # partitions whose lag this process exports
        self._cpu: ThreadPoolExecutor | None = None  # the worker thread that prepares batches while `run` runs

    async def run(self, stop: asyncio.Event, *, drain: bool = False) -> HotPathSummary:
        """Consume until `stop`. One batch is stored while the next is fetched and prepared (its SQL runs in
        PostgreSQL while Python validates the next batch); offsets are committed in order, each after its
        batch is durable."""
        relay_stop = asyncio.Event()
        relay_task = asyncio.create_task(self._relay.run(relay_stop))
        watch_task = asyncio.create_task(self._watch.run(relay_stop)) if self._watch is not None else None
        lag_task = asyncio.create_task(self._refresh_lag_until_cancelled())
        cpu = self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hot-path-cpu")
        storing: asyncio.Task[BatchResult | None] | None = None
        stored_records: list[ConsumerRecord] = []
        try:
            while not stop.is_set():
                records = await self._next_batch(storing)
                prepared = await self._prepare([to_raw_message(record) for record in records]) if records else None
                if storing is not None:
                    if not await self._finish(storing, stored_records):
                        storing = None
                        break  # stopped while the store was unavailable: nothing committed, redelivered later
                    storing = None
                if prepared is None:
                    self.not_ready_reason = None if self._consumer.assignment() else "waiting for partitions"
                    await self.processor.refill_cache()
                    if drain and await self._caught_up():
                        break
                    continue
                storing = asyncio.create_task(self._store_until_durable(records, prepared, stop))
                stored_records = records
            if storing is not None:
                await self._finish(storing, stored_records)  # SIGTERM: the batch in hand is finished
        finally:
            cpu.shutdown(wait=False)  # idle: each batch it prepared was awaited (if cancelled, it finishes it)
            self._cpu = None
            lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag_task
            relay_stop.set()
            await relay_task
            if watch_task is not None:
                await watch_task
            await self.relay_pending()
            await self.processor.refill_cache(now=True)
            self.summary.events_sent = self._relay.sent_total
        return self.summary

    async def _prepare(self, messages: Sequence[RawMessage]) -> PreparedBatch:
        """`processor.prepare` (validation and cleaning, the hot path's CPU work) in the worker thread while `run`
        runs, so that the event loop goes on meanwhile (see the module's docstring); on the loop otherwise, and
        for a batch too small to hold it for long (PREPARE_ON_LOOP_MAX_BYTES)."""
        if self._cpu is None or sum(len(message.value) for message in messages) < PREPARE_ON_LOOP_MAX_BYTES:
            return self.processor.prepare(messages)
        return await asyncio.get_running_loop().run_in_executor(self._cpu, self.processor.prepare, messages)

    async def _next_batch(self, storing: asyncio.Task[BatchResult | None] | None) -> list[ConsumerRecord]:
        """The next batch: what has arrived, topped up for as long as the previous batch is still being stored
        (up to HOT_PATH_BATCH_SIZE records and HOT_PATH_BATCH_MAX_BYTES). Under a steady stream a batch then holds
        what came in during one store, not just one fetch's worth: the store's round trips serve more records per
        batch, so the hot path keeps up with a rate that one-fetch batches could not (measured: at 4,400 records/s,
        204 records per batch on average and latency growing without end, before). Large records stop the top-up
        early: 500 records of 1 MB made batches of 100 MB and more, whose store held the event loop for half a
        second (the JSON parameter, one C call) and would pass PostgreSQL's 256 MB limit of a jsonb value. An empty
        list: nothing arrived for IDLE_POLL_MS."""
        limit, max_bytes = self._settings.hot_path_batch_size, self._settings.hot_path_batch_max_bytes
        records: list[ConsumerRecord] = []
        size = 0
        while len(records) < limit and size < max_bytes:
            storing_now = storing is not None and not storing.done()
            if records and not storing_now:
                break
            fetched = await self._consumer.getmany(timeout_ms=TOP_UP_POLL_MS if storing_now else IDLE_POLL_MS,
                                                   max_records=limit - len(records))
            if not fetched and not storing_now:
                break
            for partition in fetched.values():
                records += partition
                size += sum(len(record.value or b"") for record in partition)
        return records

    async def _finish(self, storing: asyncio.Task[BatchResult | None], records: list[ConsumerRecord]) -> bool:
        """Wait for a batch's store, then commit its offsets; False when it was given up because of a stop."""
        result = await storing
        if result is None:
            return False
        await self._commit(records)
        self.summary.add(result)
        return True

    async def _send_events(self, result: BatchResult) -> None:
        try:
            await self._relay.send_committed(result.events)
        except PipelineError as error:  # durable in the outbox: the relay loop sends them after its grace period
            log.warning("events_left_for_relay", events=len(result.events), reason=str(error))

    async def relay_pending(self) -> None:
        """Send every unsent event in the outbox (at shutdown, and after `dlq retry`)."""
        try:
            await self._relay.drain()
        except PipelineError as error:  # they stay in the outbox; the next start relays them
            log.warning("outbox_left_for_next_start", reason=str(error))

    async def _store_until_durable(self, records: list[ConsumerRecord], prepared: PreparedBatch,
                                   stop: asyncio.Event) -> BatchResult | None:
        attempt = 0
        while True:
            try:
                result = await self.processor.store(prepared)
                self.not_ready_reason = None
                await self._send_events(result)
                return result
            except PipelineError as error:
                if not error.retriable:
                    return await self._isolate_poison([to_raw_message(record) for record in records], stop)
                attempt += 1
                self.not_ready_reason = f"retrying after {error.code.value}: {error}"
                log.warning("hot_path_batch_retry", attempt=attempt, error=str(error), records=len(records))
                if stop.is_set():
                    return None
                await asyncio.sleep(backoff_seconds(attempt, error))
            except Exception:
                log.exception("hot_path_batch_failed", records=len(records))
                return await self._isolate_poison([to_raw_message(record) for record in records], stop)

    async def _isolate_poison(self, messages: list[RawMessage], stop: asyncio.Event) -> BatchResult | None:
        """One message at a time: the ones that still fail for a reason a retry cannot fix are dead-lettered."""
        combined = BatchResult()
        for message in messages:
            attempt = 0
            while True:
                try:
                    result = await self.processor.store(await self._prepare([message]))
                    await self._send_events(result)
                    break
                except PipelineError as error:
                    if error.retriable:
                        attempt += 1
                        if stop.is_set():
                            return None
                        await asyncio.sleep(backoff_seconds(attempt, error))
                        continue
                    await self._dead_letter_poison(message, error)
                    result = BatchResult(received=1)
                    break
                except Exception as error:
                    await self._dead_letter_poison(message, error)
                    result = BatchResult(received=1)
                    break
            combined.add_counts(result)
        return combined

    async def _dead_letter_poison(self, message: RawMessage, error: BaseException) -> None:
        self.summary.poison += 1
        metrics.pipeline_processing_total.labels(path="hot", status="poison").inc()
        await self.dead_letters.send([DeadLetter(
            stage="hot", error_code=ErrorCode.BATCH_PROCESSING_ERROR,
            record_key=self.processor.record_key(message),  # no personal data in it, cut to RECORD_KEY_LIMIT
            error_message=f"could not be processed: {type(error).__name__}: {error}"[:2000],
            error_details={"partition": message.partition, "offset": message.offset},
            payload_text=message.value.decode("utf-8", "replace")[:10_000],
        )])

    async def _commit(self, records: list[ConsumerRecord]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
        try:
            await self._consumer.commit(offsets)
        except KafkaError as error:
            # The batch is durable either way: a rebalance gives its partitions to a member that finds it
            # unchanged, and after a broker hiccup the next batch's commit covers these offsets too. A crash
            # before that only redelivers. So a failed commit is reported, never fatal.
            log.warning("offset_commit_failed", error=type(error).__name__, retriable=error.retriable)

    async def _caught_up(self) -> bool:
        assigned = self._consumer.assignment()
        if not assigned:
            return False
        with kafka.translate_errors("end offsets"):
            ends = await self._consumer.end_offsets(list(assigned))
            positions = {partition: await self._consumer.position(partition) for partition in assigned}
        return all(positions[partition] >= ends[partition] for partition in assigned)

    async def _refresh_lag_until_cancelled(self) -> None:
        """`refresh_lag` every LAG_REFRESH_SECONDS, apart from the batches: a batch stuck on its store holds the
        batch loop, and the lag must still grow while the topic does (it drives KafkaConsumerLagHigh and the
        autoscaler)."""
        while True:
            await self.refresh_lag()
            await asyncio.sleep(LAG_REFRESH_SECONDS)

    async def refresh_lag(self) -> None:
        """Set `kafka_consumer_lag` of each assigned partition: its end offset minus the consumer's position, never
        below 0; then `kafka_consumer_lag_last_refresh_timestamp_seconds`, so that a lag no longer refreshed (this
        loop stalled, or the broker not answering) shows as old rather than passing for the current one."""
        try:
            assigned = list(self._consumer.assignment())
            # A partition another member took in a rebalance is that member's to report: drop its series here, or
            # the autoscaler would keep seeing this process's last value for it.
            for partition in self._lag_partitions - set(assigned):
                metrics.kafka_consumer_lag.remove(partition.topic, str(partition.partition))
            self._lag_partitions = set(assigned)
            if assigned:
                ends = await self._consumer.end_offsets(assigned)
                for partition in assigned:
                    # Never below 0: the embedded broker (tansu 0.6, memory storage) answers the end of a partition
                    # as the first offset of its newest batch + 1, so a consumer that read that whole batch is past
                    # it by the batch's size less one (and after the broker lost its data, a position is past the
                    # new, empty partition's end). Kafka answers the true end; there this changes nothing.
                    lag = max(0, ends[partition] - await self._consumer.position(partition))
                    metrics.kafka_consumer_lag.labels(topic=partition.topic,
                                                      partition=str(partition.partition)).set(lag)
            # Also with nothing assigned (a rebalance, more replicas than partitions): the refresh ran, and answered.
            metrics.kafka_consumer_lag_last_refresh_timestamp_seconds.labels(
                topic=self._settings.kafka_topic_raw_policies).set(time.time())
        except Exception as error:  # lag is for dashboards; never let it stop consumption
            log.debug("consumer_lag_unavailable", error=str(error))


@contextlib.asynccontextmanager
async def open_hot_path(settings: Settings, *, group_id: str | None = None) -> AsyncIterator[HotPathService]:
    """Connections for the hot path (group `group_id`, default KAFKA_CONSUMER_GROUP); closes them all on exit."""
    pool = await postgres.create_pool(settings)
    redis_client = cache.create_client(settings)
    producer = kafka.create_producer(settings)
    consumer = kafka.create_consumer(settings, settings.kafka_topic_raw_policies,
                                     group_id=group_id or settings.kafka_consumer_group,
                                     max_poll_records=settings.hot_path_batch_size)
    try:
        with kafka.translate_errors("start"):
            await producer.start()
            await consumer.start()
        dead_letters = DeadLetterQueue(pool, producer, settings.kafka_topic_dlq)
        processor = HotPathProcessor(
            settings, PolicyStore(pool), PolicyCache(redis_client, ttl_seconds=settings.policy_cache_ttl_seconds),
            dead_letters,
        )
        relay = OutboxRelay(pool, producer, on_sent=observe_sent_events)
        yield HotPathService(settings, consumer, producer, processor, relay, dead_letters,
                             BrokerWatch(settings, pool, relay))
    finally:
        # Bounded: a broker that never answers must not keep a stopping process alive (offsets already committed).
        for closing in (consumer.stop(), producer.stop(), redis_client.aclose(), pool.close()):
            try:
                await asyncio.wait_for(closing, SHUTDOWN_TIMEOUT_SECONDS)
            except (TimeoutError, PipelineError, OSError) as error:
                log.warning("hot_path_close_timed_out", error=type(error).__name__)


async def run_hot_path(settings: Settings, stop: asyncio.Event, *, drain: bool = False,
                       serve_ops: bool = True, group_id: str | None = None) -> HotPathSummary:
    """Run until `stop` (or, with `drain`, until the topic is consumed).

    Once started, a stop finishes the batch in hand. A stop while still starting (joining the consumer group
    waits on the broker, possibly long) cancels the start instead: nothing was consumed, so nothing is lost.
    """
    started = asyncio.Event()
    serving = asyncio.create_task(_serve(settings, stop, started, drain=drain, serve_ops=serve_ops,
                                         group_id=group_id))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not serving.done() and not started.is_set():
        serving.cancel()
        log.info("hot_path_stopped_while_starting")
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        return HotPathSummary()
    return await serving


async def _serve(settings: Settings, stop: asyncio.Event, started: asyncio.Event, *, drain: bool, serve_ops: bool,
                 group_id: str | None) -> HotPathSummary:
    async with open_hot_path(settings, group_id=group_id) as service:
        started.set()
        # Everything that lives as long as the process exists now (modules, schemas, connections): freezing it
        # keeps the collector from scanning it again and again while batches churn through short-lived objects
        # (about 10% of the hot path's CPU, measured). A batch of 1,000 records holds some 12,000 tracked objects
        # until it is stored: a young-generation collection every 700 allocations (the default) scanned them
        # again and again for nothing; one every 50,000 takes 3-4% less CPU per record (measured).
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        ops = OpsServer(settings.metrics_port, lambda: service.not_ready_reason, hosts=ops_hosts(settings),
                        before_scrape=service.dead_letters.refresh_unresolved_gauge, job="hot-path",
                        discovery_dir=settings.prometheus_file_sd_dir) if serve_ops else None
        if ops is not None:
            await ops.start()
        try:
            summary = await service.run(stop, drain=drain)
        finally:
            if ops is not None:
                await ops.stop()
    log.info("hot_path_stopped", **summary.__dict__)
    return summary
