"""The record as collected (`RawPolicyData`, design §5.1) and the enums of its life.

`RawPolicyData` is what collectors publish on the raw topic and what the hot path validates. Deviation from the
design's sketch, on purpose: `target_region` and `target_industry` are lists (sources give several values
joined by `@`; a single string is accepted and split), and dates are real dates, not strings.

Input limits: every text field has a maximum length, and so do the list fields (at most 100 items of at most 200
characters each). Control characters (C0 other than tab, line feed, vertical tab, form feed and carriage return;
DEL) and lone surrogates are removed from every text field before it is checked: they are never text, and
PostgreSQL refuses NUL. A field left empty by that fails validation like any empty field. `raw_data` is the
source's record as delivered; the hot path's cleaning removes the same characters from it.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

COLLECTOR_VERSION = "1.0"


class ProcessingPath(StrEnum):
    HOT = "hot"
    COLD = "cold"


class DataStatus(StrEnum):
    PENDING_VALIDATION = "pending_validation"
    ACTIVE = "active"
    REJECTED = "rejected"
    ARCHIVED = "archived"


NonBlank = Annotated[str, Field(min_length=1)]
ListItem = Annotated[str, Field(max_length=200)]
MAX_LIST_ITEMS = 100
_NOT_TEXT = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff]")


def without_control_characters(value: Any) -> Any:
    """A string without control characters and lone surrogates (see the module docstring); other values as given."""
    if isinstance(value, str) and _NOT_TEXT.search(value):
        return _NOT_TEXT.sub("", value)
    return value


class CollectionMetadata(BaseModel):
    """Where and when a record was collected; `source` + `external_id` identify it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: NonBlank = Field(max_length=100)
    external_id: NonBlank = Field(max_length=255)
    collected_at: datetime
    collector_version: str = COLLECTOR_VERSION

    @field_validator("source", "external_id", "collector_version", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        return without_control_characters(value)

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
        return unicodedata.normalize("NFC", value) if isinstance(value, str) else value

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

    def content_hash(self) -> str:
        """SHA-256 of what the record says (not when it was collected): equal hash, nothing new to publish."""
        meaningful = self.model_dump(mode="json", exclude={"collection_metadata", "raw_data"})
        meaningful["source"] = self.collection_metadata.source
        meaningful["external_id"] = self.collection_metadata.external_id
        canonical = json.dumps(meaningful, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
