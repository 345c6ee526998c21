"""One batch of raw records through the hot path: validate, clean, store with its events, cache.

Kept apart from the Kafka consumer so the same code serves the consumer, `dlq retry` and the benchmark.
A record that fails validation goes to the dead-letter queue (DP_2001 with every field error) and the batch
goes on; a transient store failure raises (the caller retries the whole batch, which is idempotent).

Cleaning (`domain.cleaning.normalize_record`: masking, normalisation, canonical regions, content hashes) happens
here, once per record, and nowhere else: the raw topic is the trust boundary (whatever any producer published
there passes this step before storage) and this is the last stop before storage. For the same reason, every
record's identity is made free of personal data here too, whoever published it (`validate_message`): an
`external_id`, a Kafka key or a field name of `raw_data` in which masking finds a phone number, an e-mail address
or a registration number is replaced by its keyed hash (`domain.identifiers`, IDENTIFIER_HASH_KEY), as the
collectors already did for theirs (the hash of a hash is itself).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.domain.identifiers import (
    DEVELOPMENT_KEY,
    field_names_without_personal_data,
    holds_personal_data,
    identifier_without_personal_data,
    record_key_without_personal_data,
    record_without_personal_identifiers,
)
from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS, CleanPolicy, ProcessingPath
from aegis_pipeline.domain.records import MAX_NESTING_DEPTH, SOURCE_NAME, RawPolicyData, nesting_depth
from aegis_pipeline.hot_path.cache import PolicyCache
from aegis_pipeline.hot_path.store import PolicyStore, StoredPolicy
from aegis_pipeline.schemas.events import EventType, build_event, fact_event_id
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores.dead_letters import DeadLetter, DeadLetterQueue
from aegis_pipeline.stores.outbox import OutboxEvent

PAYLOAD_TEXT_LIMIT = 10_000  # a payload too broken to parse is kept as text, up to this many characters
# A dead letter's record key is indexed (dead_letters.record_key, a B-tree: at most 2,704 bytes a key, after
# compression). The collectors' keys are source:external_id, at most 319 characters; a longer Kafka key from any
# other producer is cut to this many characters (at most 2,000 bytes of UTF-8). Uncut, 7 KB of text no compression
# shrinks made the queue's insert fail, then the poison letter's, and the hot path exited on the message, again
# after every restart.
RECORD_KEY_LIMIT = 500


@dataclass(frozen=True)
class RawMessage:
    """A message from the raw topic, as the hot path needs it (independent of the Kafka client)."""

    value: bytes
    key: bytes | None = None
    partition: int = 0
    offset: int = 0
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class PreparedBatch:
    received: int
    clean: list[CleanPolicy]
    letters: list[DeadLetter]
    started_at: datetime
    started: float  # monotonic, for the batch's duration


# What happened to a batch's records; every record ends in exactly one of stored..invalid.
OUTCOME_COUNTS = ("received", "stored", "unchanged", "superseded", "invalid")


@dataclass
class BatchResult:
    received: int = 0
    stored: int = 0
    unchanged: int = 0
    superseded: int = 0
    invalid: int = 0
    cached: int = 0
    stored_policies: list[StoredPolicy] = field(default_factory=list)
    events: list[OutboxEvent] = field(default_factory=list)  # committed in the outbox, not sent yet

    def add_counts(self, other: BatchResult) -> None:
        for name in OUTCOME_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _field_errors(error: ValidationError) -> list[str]:
    return [f"{'.'.join(str(part) for part in problem['loc']) or 'record'}: {problem['msg']}"
            for problem in error.errors()]


def record_key_of(message: RawMessage, identifier_key: bytes) -> str | None:
    """The key a message's dead letter is filed under: its Kafka key (`source:external_id`) as text, each part
    without personal data (`domain.identifiers.record_key_without_personal_data`), cut to RECORD_KEY_LIMIT."""
    if not message.key:
        return None
    return record_key_without_personal_data(message.key.decode("utf-8", "replace"), identifier_key)[:RECORD_KEY_LIMIT]


_DEVELOPMENT_IDENTIFIER_KEY = DEVELOPMENT_KEY.encode("utf-8")


def validate_message(message: RawMessage, *, max_record_bytes: int,
                     identifier_key: bytes = _DEVELOPMENT_IDENTIFIER_KEY) -> RawPolicyData | DeadLetter:
    """Basic validation (size, required fields, types, lengths of RawPolicyData, a source named as sources are);
    a refusal (DP_2001) names every problem. Never raises for any bytes: a message larger than `max_record_bytes`
    is refused unread (its start is kept as text), anything else pydantic cannot read is refused with its reason.

    The record returned, and a refusal's record key, source and payload, carry no personal data in their identity:
    `external_id`, the Kafka key and the field names of `raw_data` go through `domain.identifiers` with
    `identifier_key` (the deployment's IDENTIFIER_HASH_KEY; the default is the embedded stack's, for tools and
    tests). A source name holding personal data is refused: it could not be hashed into a source name.

    The source's name is checked here, not by the model: the hot path announces what it stores in a
    `policy.validated` event whose `source_system` must be a source name (`SOURCE_NAME`), and a record it cannot
    announce must be refused now. Found out later, the event failed inside the batch's transaction: the batch was
    rolled back and isolated one message at a time, and the record dead-lettered as poison (DP_4003)."""
    record_key = record_key_of(message, identifier_key)
    if len(message.value) > max_record_bytes:
        problem = f"record: {len(message.value)} bytes, more than MAX_RECORD_BYTES ({max_record_bytes})"
        return DeadLetter(
            stage="hot", error_code=ErrorCode.VALIDATION_FAILED, record_key=record_key,
            error_message=f"record failed validation: {problem}",
            error_details={"field_errors": [problem], "partition": message.partition, "offset": message.offset},
            payload_text=message.value[:PAYLOAD_TEXT_LIMIT].decode("utf-8", "replace"),
        )
    try:
        record = RawPolicyData.model_validate_json(message.value)
    except ValidationError as error:
        return _refused(message, record_key, _field_errors(error), identifier_key)
    source = record.collection_metadata.source
    if not SOURCE_NAME.fullmatch(source):
        return _refused(message, record_key, [f"collection_metadata.source: {source[:100]!r} is not a source name "
                                              f"({SOURCE_NAME.pattern}, as the sources file names sources)"],
                        identifier_key)
    if holds_personal_data(source):
        return _refused(message, record_key, ["collection_metadata.source: holds personal data (a phone number, an "
                                              "e-mail address or a registration number)"], identifier_key)
    return record_without_personal_identifiers(record, identifier_key)


def _payload_without_personal_identifiers(payload: dict[str, Any], identifier_key: bytes) -> dict[str, Any]:
    """A refused record as JSON with its field names and `collection_metadata.external_id` hashed where they hold
    personal data (the dead-letter queue masks values, never names, and a retry must find the hashed id)."""
    payload = field_names_without_personal_data(payload, identifier_key)
    metadata = payload.get("collection_metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("external_id"), str):
        external_id = identifier_without_personal_data(metadata["external_id"], identifier_key)
        payload = {**payload, "collection_metadata": {**metadata, "external_id": external_id}}
    return payload


def _refused(message: RawMessage, record_key: str | None, problems: list[str], identifier_key: bytes) -> DeadLetter:
    """The dead letter of a message that failed validation: the message as JSON when it is a JSON object the
    dead-letter queue can copy (no deeper than MAX_NESTING_DEPTH: its steps recurse, and a payload nested as deep
    as Python's json reads, about 1,000 levels, overflowed them, so the hot path took it for poison), else its
    start as text."""
    payload: Any = None
    try:
        payload = json.loads(message.value)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses: kept as text
        pass
    is_object = isinstance(payload, dict)
    metadata = payload.get("collection_metadata") if is_object else None
    source = metadata.get("source") if isinstance(metadata, dict) else None
    kept_as_json = is_object and nesting_depth(payload) <= MAX_NESTING_DEPTH
    if kept_as_json:
        payload = _payload_without_personal_identifiers(payload, identifier_key)
    return DeadLetter(
        stage="hot", error_code=ErrorCode.VALIDATION_FAILED, record_key=record_key,
        source_system=identifier_without_personal_data(source, identifier_key)[:100] if isinstance(source, str)
        else None,
        error_message=f"record failed validation: {'; '.join(problems)}"[:2000],
        error_details={"field_errors": problems, "partition": message.partition, "offset": message.offset},
        payload=payload if kept_as_json else None,
        payload_text=None if kept_as_json else message.value.decode("utf-8", "replace")[:PAYLOAD_TEXT_LIMIT],
    )


# The stored fields `policy.validated` carries as they are (design §5.3): the policy's content and its content
# hash and collection time, `CleanPolicy` attributes and `policies` columns by the same names.
POLICY_VALIDATED_FIELDS = (*POLICY_CONTENT_COLUMNS, "content_hash", "collected_at")


def policy_validated_event(policy_id: str, version: int, stored: Callable[[str], Any], validated_at: datetime,
                           *, producer: str, topic: str) -> OutboxEvent:
    """The `policy.validated` event of one stored version, for the outbox; `stored(name)` reads each of
    `POLICY_VALIDATED_FIELDS`, from a just-stored `CleanPolicy` or a `policies` row read back
    (`hot_path.broker_watch`), so both announce the same event."""
    data = {name: stored(name) for name in POLICY_VALIDATED_FIELDS}
    data.update(policy_id=policy_id, version=version, processing_path=ProcessingPath.HOT.value,
                validated_at=validated_at)  # tuples (a CleanPolicy's arrays) become JSON arrays in build_event
    event_id = policy_validated_event_id(policy_id, version)
    envelope = build_event(EventType.POLICY_VALIDATED, data, producer=producer, event_id=event_id,
                           occurred_at=validated_at)
    return OutboxEvent(event_id=event_id, event_type=EventType.POLICY_VALIDATED.value, topic=topic, key=policy_id,
                       envelope=envelope)


def policy_validated_event_id(policy_id: str, version: int) -> str:
    """One id per stored version of a policy: announcing it again (`hot_path.broker_watch`) repeats the event."""
    return fact_event_id(EventType.POLICY_VALIDATED, policy_id, version)


class HotPathProcessor:
    def __init__(self, settings: Settings, store: PolicyStore, cache: PolicyCache,
                 dead_letters: DeadLetterQueue) -> None:
        self._settings = settings
        self._store = store
        self._cache = cache
        self._dead_letters = dead_letters
        self._producer_name = f"{settings.service_name}/{settings.service_version}"
        self._identifier_key = settings.identifier_hash_key.get_secret_value().encode("utf-8")

    def make_events(self, stored: list[StoredPolicy]) -> list[OutboxEvent]:
        validated_at = datetime.now(UTC)
        return [policy_validated_event(item.policy_id, item.version, functools.partial(getattr, item.policy),
                                       validated_at, producer=self._producer_name,
                                       topic=self._settings.kafka_topic_policy_events)
                for item in stored]

    def validate(self, message: RawMessage) -> RawPolicyData | DeadLetter:
        """`validate_message` with this deployment's MAX_RECORD_BYTES and IDENTIFIER_HASH_KEY."""
        return validate_message(message, max_record_bytes=self._settings.max_record_bytes,
                                identifier_key=self._identifier_key)

    def record_key(self, message: RawMessage) -> str | None:
        """`record_key_of` with this deployment's IDENTIFIER_HASH_KEY: what any dead letter of `message` is filed
        under."""
        return record_key_of(message, self._identifier_key)

    def prepare(self, messages: Sequence[RawMessage]) -> PreparedBatch:
        """Validate and clean (CPU only, no I/O): can run while the previous batch is being stored."""
        clean: list[CleanPolicy] = []
        letters: list[DeadLetter] = []
        for message in messages:
            checked = self.validate(message)
            if isinstance(checked, DeadLetter):
                letters.append(checked)
            else:
                clean.append(normalize_record(checked))
        return PreparedBatch(received=len(messages), clean=clean, letters=letters, started_at=datetime.now(UTC),
                             started=time.monotonic())

    async def store(self, prepared: PreparedBatch) -> BatchResult:
        """Policies with their events in one transaction, then dead letters, then the cache. Idempotent: a retry
        after a transient failure stores, announces and dead-letters nothing twice. The letters come after the
        store: a batch whose store fails is processed again (retried whole, or one message at a time when it holds
        a poison message), and letters written before the failure were written again then (bench/fuzz.py found 85
        duplicates in 300 cases). A store that succeeded and is retried finds every policy unchanged."""
        outcome = await self._store.store_batch(prepared.clean, self.make_events, started_at=prepared.started_at)
        await self._dead_letters.send(prepared.letters)
        result = BatchResult(received=prepared.received, stored=len(outcome.stored), unchanged=outcome.unchanged,
                             superseded=outcome.superseded, invalid=len(prepared.letters),
                             stored_policies=outcome.stored, events=outcome.events)
        result.cached = await self._cache.put_many(outcome.stored)
        _observe(result, time.monotonic() - prepared.started, self._settings.hot_path_timeout_seconds)
        return result

    async def refill_cache(self, *, now: bool = False) -> None:
        """While idle or stopping: cache what Redis missed when it was down (a batch's own write does it too)."""
        await self._cache.refill(now=now)

    async def process(self, messages: Sequence[RawMessage]) -> BatchResult:
        return await self.store(self.prepare(messages))


def _observe(result: BatchResult, elapsed_seconds: float, budget_seconds: float) -> None:
    for status in ("stored", "unchanged", "superseded", "invalid"):
        count = getattr(result, status)
        if count:
            metrics.pipeline_processing_total.labels(path="hot", status=status).inc(count)
    if elapsed_seconds > budget_seconds:
        metrics.pipeline_processing_total.labels(path="hot", status="over_budget").inc(result.received)
