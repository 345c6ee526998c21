"""The record as collected (`RawPolicyData`, design §5.1): what collectors publish on the raw topic and what the hot
path validates, with where and when it was collected (`CollectionMetadata`).

Deviation from the design's sketch, on purpose: `target_region` and `target_industry` are lists (sources give
several values joined by `@`; a single string is accepted and split), and dates are real dates, not strings.

Its policy fields are `PolicyContent`'s (`domain.policy`) by the same names, except the identity, which is in
`collection_metadata` (`source` is `source_system`, `external_id` is `external_id`); `content_values()` is the
one mapping between the two, and tests/domain/test_policy.py fails when a field is added to one only.

Input limits: every text field has a maximum length, and so do the list fields (at most 100 items of at most 200
characters each). Control characters (C0 other than tab, line feed, vertical tab, form feed and carriage return;
DEL) and lone surrogates are removed from every text field before it is checked: they are never text, and
PostgreSQL refuses NUL. A field left empty by that fails validation like any empty field. `raw_data` is the
source's record as delivered; the hot path's cleaning removes the same characters from it. `collected_at` must say
its time zone and be a time every step can write in UTC (the events carry it so).

A source's name has one form (`SOURCE_NAME`: the sources file's `name`, the events' `source_system`). The model
does not require it of `collection_metadata.source` (tests and benchmarks build records of sources named
otherwise, which never become events); the hot path refuses a raw-topic record whose source is not one.

JSON nests at most `MAX_NESTING_DEPTH` levels where the pipeline reads it as a whole (`nesting_depth` measures it
without recursion): the collectors refuse a deeper page, the hot path keeps a deeper refused message as text.

May import the standard library, pydantic and the other `domain` modules only.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from aegis_pipeline.domain.policy import POLICY_ARRAY_COLUMNS, POLICY_CONTENT_COLUMNS, PolicyContent
from aegis_pipeline.domain.text import nfc, without_control_characters

__all__ = ["COLLECTOR_VERSION", "MAX_EXTERNAL_ID_CHARS", "MAX_LIST_ITEMS", "MAX_NESTING_DEPTH", "SOURCE_NAME",
           "CollectionMetadata", "RawPolicyData", "nesting_depth"]

COLLECTOR_VERSION = "1.0"
SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]{1,62}")  # matched whole (fullmatch)
# Public APIs nest a few levels; deeper documents are refused before any recursive step (mapping, sanitising,
# pydantic's own limit of about 200 on the hot path, the dead-letter queue's copy) can fail on them.
MAX_NESTING_DEPTH = 64


def nesting_depth(document: Any) -> int:
    """How many objects and arrays deep `document` goes (0 for a scalar); iterative, so any depth is safe."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        deepest = max(deepest, depth)
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
    return deepest

NonBlank = Annotated[str, Field(min_length=1)]
ListItem = Annotated[str, Field(max_length=200)]
MAX_LIST_ITEMS = 100
MAX_EXTERNAL_ID_CHARS = 255


class CollectionMetadata(BaseModel):
    """Where and when a record was collected; `source` + `external_id` identify it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: NonBlank = Field(max_length=100)
    external_id: NonBlank = Field(max_length=MAX_EXTERNAL_ID_CHARS)
    collected_at: AwareDatetime
    collector_version: str = COLLECTOR_VERSION

    @field_validator("source", "external_id", "collector_version", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        return without_control_characters(value)

    @field_validator("collected_at")
    @classmethod
    def _writable_in_utc(cls, value: datetime) -> datetime:
        # 0001-01-01T00:00+14:00 is a valid aware datetime whose UTC time is before year 1: the policy.validated
        # event, which writes it in UTC, failed on it in the middle of storing the record's batch.
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is too close to the ends of the calendar to be written in UTC") from None
        return value

    @property
    def record_key(self) -> str:
        return f"{self.source}:{self.external_id}"


class RawPolicyData(BaseModel):
    """One policy announcement as a source published it, cleaned and typed (design §5.1)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=500)
    content: str = Field(min_length=1, max_length=200_000)
    issuing_organization: str = Field(min_length=1, max_length=500)
    target_region: list[ListItem] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    target_industry: list[ListItem] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    funding_type: str | None = Field(default=None, max_length=200)
    application_start_date: date | None = None
    application_end_date: date | None = None
    original_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")
    raw_data: dict[str, Any] = Field(default_factory=dict)
    collection_metadata: CollectionMetadata

    @field_validator("content", "issuing_organization", "funding_type", "original_url", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        return without_control_characters(value)

    @field_validator("title", mode="before")
    @classmethod
    def _title_as_stored(cls, value: Any) -> Any:
        # The length limit must hold for the stored, NFC-normalised title (policies.title is varchar(500)): NFC
        # expands a few characters (U+0958 -> two code points), so it is applied before the length is checked.
        value = without_control_characters(value)
        return nfc(value) if isinstance(value, str) else value

    @field_validator("target_region", "target_industry", mode="before")
    @classmethod
    def _split_joined_values(cls, value: Any) -> Any:
        value = without_control_characters(value)
        if isinstance(value, str):
            return [part.strip() for part in value.replace(",", "@").split("@") if part.strip()]
        if isinstance(value, list):
            return [without_control_characters(item) for item in value]
        return [] if value is None else value

    @model_validator(mode="after")
    def _period_is_ordered(self) -> RawPolicyData:
        start, end = self.application_start_date, self.application_end_date
        if start and end and end < start:
            raise ValueError(f"application_end_date {end} is before application_start_date {start}")
        return self

    def content_values(self) -> tuple[Any, ...]:
        """What this record says, as published (not cleaned: `domain.cleaning` makes the stored version): the values
        of `POLICY_CONTENT_COLUMNS` in order, arrays as the lists they are here. The one mapping of this model's
        fields onto the policy's content."""
        metadata = self.collection_metadata
        return (
            metadata.source, metadata.external_id, self.title, self.content, self.issuing_organization,
            self.target_region, self.target_industry, self.funding_type, self.application_start_date,
            self.application_end_date, self.original_url,
        )

    def policy_content(self) -> PolicyContent:
        """`content_values` as a `PolicyContent` (arrays as tuples)."""
        content = dict(zip(POLICY_CONTENT_COLUMNS, self.content_values(), strict=True))
        for name in POLICY_ARRAY_COLUMNS:
            content[name] = tuple(content[name])
        return PolicyContent(**content)
