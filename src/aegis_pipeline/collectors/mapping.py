"""From a source record (dict) to a validated `RawPolicyData`, by the source's field mapping. Pure: no I/O.

Every problem with a record is collected, not just the first, so the dead-letter entry says all that is wrong.
Before mapping, `without_personal_identifiers` replaces personal data in the record's id and field names by
their keyed hash (`domain.identifiers`), so every id, key and letter formed from the record carries the hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from aegis_pipeline.collectors.definitions import FieldMapping, SourceDefinition
from aegis_pipeline.collectors.parsing.errors import ValueParseError
from aegis_pipeline.collectors.parsing.records import dig
from aegis_pipeline.collectors.parsing.urls import join_url
from aegis_pipeline.collectors.parsing.values import VALUE_PARSERS
from aegis_pipeline.common.errors import InvalidDataError
from aegis_pipeline.domain.identifiers import field_names_without_personal_data, identifier_without_personal_data
from aegis_pipeline.domain.records import COLLECTOR_VERSION, MAX_EXTERNAL_ID_CHARS, CollectionMetadata, RawPolicyData


def external_id_of(raw: dict[str, Any], source: SourceDefinition) -> str | None:
    """The record's id as text; None when it has none. An id longer than any valid one is cut to one character
    more (the record is refused either way, as too long): its dead letter's key, source:id, is indexed, and an
    index takes at most 2,704 bytes a key. Uncut, a page with one id of 3,000 Hangul syllables made the dead-letter
    insert fail, and with it every run of its source. The letter's payload keeps the whole record."""
    value = dig(raw, source.id_field)
    text = str(value).strip() if value is not None else ""
    return text[: MAX_EXTERNAL_ID_CHARS + 1] or None


def without_personal_identifiers(raw: dict[str, Any], source: SourceDefinition, key: bytes) -> dict[str, Any]:
    """The source record with no personal data in its identity: an id (at `id_field`) in which masking finds a
    phone number, an e-mail address or a registration number is replaced by its keyed hash, whole, whatever its
    length (`domain.identifiers.identifier_without_personal_data`, of the id as `external_id_of` reads it), and so
    is every field name holding one, at any depth. The record's other values are left to the hot path's masking.
    `raw` itself when nothing holds any (the usual case); else a copy (`raw` is not changed)."""
    value = dig(raw, source.id_field)
    if value is not None:
        text = str(value).strip()
        hashed = identifier_without_personal_data(text, key)
        if hashed != text:
            raw = _with_value_at(raw, source.id_field, hashed)
    return field_names_without_personal_data(raw, key)


def _with_value_at(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `document` whose value at the dotted `path` (which `dig` found) is `value`."""
    head, _, rest = path.partition(".")
    return {**document, head: _with_value_at(document[head], rest, value) if rest else value}


def _raw_value(mapping: FieldMapping, raw: dict[str, Any]) -> Any:
    if mapping.value is not None:
        return mapping.value
    if mapping.join is not None:
        parts = [dig(raw, path) for path in mapping.join]
        return "\n".join(str(part) for part in parts if part not in (None, ""))
    return dig(raw, mapping.path or "")


def _parsed_value(mapping: FieldMapping, value: Any, source: SourceDefinition) -> Any:
    if mapping.parser is None:
        return value
    if mapping.parser == "url":
        return join_url(source.url, str(value)) if value not in (None, "") else None
    return VALUE_PARSERS[mapping.parser](value)


def build_record(raw: dict[str, Any], source: SourceDefinition, collected_at: datetime) -> RawPolicyData:
    """Map, parse and validate one record; `InvalidDataError` (DP_1004) lists every field problem."""
    external_id = external_id_of(raw, source)
    problems: list[str] = []
    if external_id is None:
        problems.append(f"{source.id_field}: missing record id")
    values: dict[str, Any] = {}
    for field_name, mapping in source.fields.items():
        try:
            value = _parsed_value(mapping, _raw_value(mapping, raw), source)
        except ValueParseError as error:
            problems.append(f"{field_name}: {error}")
            continue
        values[field_name] = mapping.default if value in (None, "", []) and mapping.default else value
    if not problems:
        try:
            return RawPolicyData(
                **{name: value for name, value in values.items() if value is not None},
                raw_data=raw,
                collection_metadata=CollectionMetadata(
                    source=source.name, external_id=external_id or "", collected_at=collected_at,
                    collector_version=COLLECTOR_VERSION,
                ),
            )
        except ValidationError as error:
            problems.extend(
                f"{'.'.join(str(part) for part in problem['loc']) or 'record'}: {problem['msg']}"
                for problem in error.errors()
            )
    raise InvalidDataError(
        f"{source.name}:{external_id or '?'} is invalid: " + "; ".join(problems),
        source=source.name, external_id=external_id, field_errors=problems,
    )
