"""The versioned event contracts of the `policy-events` topic (design §5.3, §7.1): build, check, key, encode.

Every event is an envelope (`event_id`, `event_type`, `schema_version`, `occurred_at`, `producer`, `data`)
checked against `event_schemas/envelope.v1.json`, whose `data` is checked against
`event_schemas/<event_type>.v1.json`. The JSON Schema files are the contract other services read
(docs/events.md); this module only loads them, once, and applies them. An event we built that breaks them is
our bug: `EventSchemaError` (DP_4003, not retriable) names the event type and every violating path.

May import: the standard library, jsonschema, jsonschema_rs, pydantic, `common`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from enum import Enum, StrEnum
from importlib import resources
from typing import Any, NamedTuple

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker, ValidationError

from aegis_pipeline.common.errors import ErrorCode, PipelineError

SCHEMA_VERSION = "1.0"
_MAJOR = SCHEMA_VERSION.split(".", 1)[0]
_MAX_MESSAGE_CHARS = 200  # per violation: a 200 000-character `content` must not end up in a log line whole


class EventType(StrEnum):
    POLICY_VALIDATED = "policy.validated"
    DATA_QUALITY_UPDATED = "data.quality_updated"
    DATA_SYNC_COMPLETED = "data.sync_completed"
    POLICY_ARCHIVED = "policy.archived"
    # Not an event of `policy-events`: the document of one policy on the compacted `policy-state` topic
    # (schemas/policy_state.py, docs/events.md "The catalogue topic"), in the same envelope.
    POLICY_STATE = "policy.state"


# The Kafka key of each event type: the field of `data` whose events must stay in order (one partition).
_KEY_FIELDS: dict[EventType, str] = {
    EventType.POLICY_VALIDATED: "policy_id",
    EventType.DATA_QUALITY_UPDATED: "policy_id",
    EventType.DATA_SYNC_COMPLETED: "sync_id",
    EventType.POLICY_ARCHIVED: "policy_id",
    EventType.POLICY_STATE: "policy_id",
}


class EventSchemaError(PipelineError):
    """An event that breaks the published contract; for an event we built, a bug that a retry cannot fix.

    `details`: `event_type`, `schema_version` and `paths` (each dotted path that failed once, no values).
    """

    code = ErrorCode.BATCH_PROCESSING_ERROR
    retriable = False


# --- formats ----------------------------------------------------------------------------------------------
# jsonschema checks `date-time` only when the optional rfc3339-validator is installed, and silently passes it
# otherwise; the checker is registered here so that the check never depends on what else happens to be installed.

FORMAT_CHECKER = FormatChecker(formats=("date", "uuid"))

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))", re.ASCII
)


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_rfc3339_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    match = _RFC3339.fullmatch(instance)
    if match is None:
        return False
    year, month, day, hour, minute, second, offset_hours, offset_minutes = match.groups()
    datetime(int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59))  # 60: leap second
    return int(offset_hours or 0) < 24 and int(offset_minutes or 0) < 60


# --- schemas, loaded once -----------------------------------------------------------------------------------

SCHEMA_PACKAGE = "aegis_pipeline.schemas.event_schemas"


def schema_file_name(name: str, major: str = _MAJOR) -> str:
    """File name of a schema: `envelope.v1.json`, `policy.validated.v1.json`, ..."""
    return f"{name}.v{major}.json"


def load_schema(name: str, major: str = _MAJOR) -> dict[str, Any]:
    """The parsed JSON Schema `name` (`"envelope"` or an event type) of schema major version `major`."""
    text = resources.files(SCHEMA_PACKAGE).joinpath(schema_file_name(name, major)).read_text(encoding="utf-8")
    return json.loads(text)


class _Schema(NamedTuple):
    """One schema file: jsonschema's validator (the authority, and the error messages) and a fast acceptor."""

    validator: Draft202012Validator
    accepts: Callable[[Any], bool]


# jsonschema walks a schema in Python (~140 µs for a policy.validated event, about 7 000 events/s); the hot path
# needs more. jsonschema-rs (compiled) says yes or no in ~2 µs, so it checks every event first, and only an event
# it refuses goes through jsonschema, for the messages. It must never accept what jsonschema refuses: besides
# the schema's own formats, both check `date-time` the same way (RFC 3339), and tests/schemas/test_events.py runs
# every case through both.
def _load(name: str) -> _Schema:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    fast = jsonschema_rs.validator_for(schema, validate_formats=True)

    def accepts(value: Any) -> bool:
        try:
            return fast.is_valid(value)
        except ValueError:  # a Python type it cannot read (an int subclass, say): jsonschema decides
            return False

    return _Schema(Draft202012Validator(schema, format_checker=FORMAT_CHECKER), accepts)


_ENVELOPES: dict[str, _Schema] = {_MAJOR: _load("envelope")}
_PAYLOADS: dict[tuple[str, str], _Schema] = {
    (event_type.value, _MAJOR): _load(event_type.value) for event_type in EventType
}


# --- building -----------------------------------------------------------------------------------------------


class _NotJson(Exception):
    """A value with no JSON form; `path` is filled in on the way back up."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str | int] = []


_JSON_SCALARS = (str, int, bool, type(None))  # exact types; subclasses (StrEnum, IntEnum) are converted below


# Cached: every event of a batch carries the same batch time (occurred_at, validated_at), and formatting a datetime
# costs more than looking it up. Equal instants in other zones hit the same entry, which is right: the result is UTC.
@functools.lru_cache(maxsize=1024)
def _utc_timestamp(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _NotJson("is a naive datetime (no time zone); give an aware one")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# Exact types with one fixed conversion, looked up before the slower abstract-class checks below (a date in a
# policy.validated event would otherwise first be tested against Mapping, list and Enum).
_CONVERT_EXACT: dict[type, Callable[[Any], str]] = {datetime: _utc_timestamp, date: date.isoformat, uuid.UUID: str}


def _to_json(value: Any) -> Any:
    """A JSON-ready copy: datetimes as RFC 3339 UTC, dates as YYYY-MM-DD, UUIDs and enums as their values."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if (convert := _CONVERT_EXACT.get(kind)) is not None:
        return convert(value)
    # Most values inside a dict or list are plain scalars: they are copied without a call (this runs for every
    # event the hot path builds), and plain dicts and lists skip the slower abstract-class checks.
    if kind is dict or isinstance(value, Mapping):
        converted: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotJson(f"key {key!r} is not a string")
            if type(item) in _JSON_SCALARS:
                converted[key] = item
                continue
            try:
                converted[key] = _to_json(item)
            except _NotJson as error:
                error.path.insert(0, key)
                raise
        return converted
    if kind is list or isinstance(value, list | tuple):
        items = []
        for index, item in enumerate(value):
            if type(item) in _JSON_SCALARS:
                items.append(item)
                continue
            try:
                items.append(_to_json(item))
            except _NotJson as error:
                error.path.insert(0, index)
                raise
        return items
    if isinstance(value, Enum):
        return _to_json(value.value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJson(f"{value!r} has no JSON form")
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime):
        return _utc_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise _NotJson(f"{type(value).__name__} has no JSON form")


# The namespace of `fact_event_id` (a fixed, random UUID): changing it would give every fact a new event id.
FACT_EVENT_ID_NAMESPACE = uuid.UUID("6f1d2c3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f")


def fact_event_id(event_type: EventType, *fact: object) -> str:
    """The event id of one fact, the same every time it is announced: a UUID5 of the event type and the parts
    that identify the fact (for `policy.validated`: the policy id and its version).

    So an event announced again (after a broker lost what it had acknowledged) is the same event to a consumer
    that de-duplicates on `event_id`, not a second one."""
    name = ":".join([EventType(event_type).value, *(str(part) for part in fact)])
    return _uuid5_text(name)


_FACT_EVENT_ID_PREFIX = FACT_EVENT_ID_NAMESPACE.bytes


def _uuid5_text(name: str) -> str:
    """`str(uuid.uuid5(FACT_EVENT_ID_NAMESPACE, name))`, in a third of the time (one per hot-path event): the
    same SHA-1 and version/variant bits, without building a `UUID` object. tests/schemas/test_events.py holds the
    two equal."""
    value = int.from_bytes(hashlib.sha1(_FACT_EVENT_ID_PREFIX + name.encode("utf-8")).digest()[:16])
    value = value & ~(0xF000 << 64) | 5 << 76  # version 5
    value = value & ~(0xC000 << 48) | 0x8000 << 48  # the RFC 4122 variant
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def build_event(
    event_type: EventType,
    data: Mapping[str, Any],
    *,
    producer: str,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """The envelope of one event, JSON-ready and checked against the envelope and `event_type`'s schema.

    `data` may hold datetimes (aware; written as RFC 3339 UTC with microseconds and `Z`), dates, UUIDs and
    enums; it is copied, never changed. `producer` is `service/version`, e.g. `data-pipeline/1.0.0`.
    `event_id` defaults to a new UUID4: pass the stored id when publishing again (an outbox relay that retries
    must send the same id, so that consumers can drop the repeat). `occurred_at` defaults to now (UTC).
    Raises `EventSchemaError` naming the event type and every violating path.
    """
    try:
        event_type = EventType(event_type)
    except ValueError:
        raise _schema_error(event_type, SCHEMA_VERSION, [("event_type", "is not a known event type")]) from None
    if not isinstance(data, Mapping):
        raise _schema_error(event_type.value, SCHEMA_VERSION, [("data", "is not an object")])
    try:
        payload = _to_json(data)
    except _NotJson as error:
        raise _schema_error(
            event_type.value, SCHEMA_VERSION, [(_dotted(["data", *error.path]), error.reason)]
        ) from None
    try:
        when = _utc_timestamp(occurred_at if occurred_at is not None else datetime.now(UTC))
    except _NotJson as error:
        raise _schema_error(event_type.value, SCHEMA_VERSION, [("occurred_at", error.reason)]) from None
    event = {
        "event_id": str(event_id) if event_id is not None else str(uuid.uuid4()),
        "event_type": event_type.value,
        "schema_version": SCHEMA_VERSION,
        "occurred_at": when,
        "producer": producer,
        "data": payload,
    }
    _raise_if_invalid(event)
    return event


# --- checking -----------------------------------------------------------------------------------------------


def validate_event(event: Mapping[str, Any]) -> None:
    """Check an envelope read back (a consumer, a test) against the envelope and its `data` schema.

    Any 1.x `schema_version` is checked with the v1 files this code ships: a 1.x newer than this code may carry
    optional fields these files do not know yet, and fails here. Raises `EventSchemaError`.
    """
    if not isinstance(event, Mapping):
        raise _schema_error(None, None, [("(event)", f"an event is an object, not {type(event).__name__}")])
    _raise_if_invalid(event)


def _raise_if_invalid(event: Mapping[str, Any]) -> None:
    if _accepted(event):
        return
    violations = list(_violations(event))
    if violations:
        raise _schema_error(event.get("event_type"), event.get("schema_version"), violations)


def _schemas_of(event: Mapping[str, Any]) -> tuple[_Schema, _Schema | None]:
    """The envelope schema of the event's major version (else the current one) and its payload's, if known."""
    version, event_type = event.get("schema_version"), event.get("event_type")
    major = version.split(".", 1)[0] if isinstance(version, str) else _MAJOR
    envelope = _ENVELOPES.get(major, _ENVELOPES[_MAJOR])
    return envelope, (_PAYLOADS.get((event_type, major)) if isinstance(event_type, str) else None)


def _accepted(event: Mapping[str, Any]) -> bool:
    envelope, payload = _schemas_of(event)
    return payload is not None and envelope.accepts(event) and payload.accepts(event["data"])


def _violations(event: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    envelope, payload = _schemas_of(event)
    yield from _describe(envelope.validator.iter_errors(event), prefix=[])
    data = event.get("data")
    if payload is not None and isinstance(data, Mapping):
        yield from _describe(payload.validator.iter_errors(data), prefix=["data"])


def _describe(errors: Iterator[ValidationError], prefix: list[str | int]) -> Iterator[tuple[str, str]]:
    """(dotted path, message) per violation; a missing or unexpected field is named in the path itself."""
    seen: set[tuple[str, str]] = set()
    for error in errors:
        where = [*prefix, *error.absolute_path]
        instance = error.instance
        if error.validator == "required" and isinstance(instance, Mapping):
            found = [(_dotted([*where, name]), "is required") for name in error.validator_value if name not in instance]
        elif error.validator == "additionalProperties" and isinstance(instance, Mapping):
            known = error.schema.get("properties", {})
            found = [
                (_dotted([*where, name]), "is not a field of the schema") for name in instance if name not in known
            ]
        else:
            message = error.message
            if len(message) > _MAX_MESSAGE_CHARS:  # keep the start of the value and the end of the verdict
                half = _MAX_MESSAGE_CHARS // 2
                message = f"{message[:half]}...{message[-half:]}"
            found = [(_dotted(where), message)]
        for violation in found:
            if violation not in seen:
                seen.add(violation)
                yield violation


def _dotted(path: list[str | int]) -> str:
    return ".".join(str(part) for part in path) or "(event)"


def _schema_error(event_type: object, schema_version: object, violations: list[tuple[str, str]]) -> EventSchemaError:
    shown_type = event_type if isinstance(event_type, str) else "event of unknown type"
    shown_version = schema_version if isinstance(schema_version, str) else "?"
    listed = "; ".join(f"{path}: {message}" for path, message in violations)
    return EventSchemaError(
        f"{shown_type} (schema {shown_version}) breaks its contract: {listed}",
        event_type=event_type if isinstance(event_type, str) else None,
        schema_version=schema_version if isinstance(schema_version, str) else None,
        paths=list(dict.fromkeys(path for path, _ in violations)),
    )


# --- Kafka --------------------------------------------------------------------------------------------------


def event_key(event: Mapping[str, Any]) -> bytes:
    """The Kafka key: `data.policy_id` for policy events, `data.sync_id` for sync events (UTF-8).

    Every event of one policy has the same key, hence one partition, hence the order in which it was produced.
    """
    try:
        field = _KEY_FIELDS[EventType(event["event_type"])]
        key = event["data"][field]
    except (KeyError, TypeError, ValueError):
        raise _schema_error(
            event.get("event_type") if isinstance(event, Mapping) else None,
            event.get("schema_version") if isinstance(event, Mapping) else None,
            [("data", "has no key field for its event_type")],
        ) from None
    if not isinstance(key, str) or not key:
        raise _schema_error(event["event_type"], event.get("schema_version"), [(f"data.{field}", "is not a string")])
    return key.encode("utf-8")


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON (Korean text as is, not `\\uXXXX`), the Kafka message value."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
