"""THE policy: its content fields, named once, and the column list every SQL and event builder derives from them.

`PolicyContent` is what a policy says: its identity (`source_system`, `external_id`) and the fields a source
publishes and the pipeline stores, searches and announces. Its fields are the columns of `policies` by the same
names and types, in the order of `POLICY_CONTENT_COLUMNS` (derived from the dataclass, never spelled out
again). Each stage's view of a policy extends it with what only that stage has:

- `CleanPolicy` (here): what the hot path stores, caches and announces, cleaned by `domain.cleaning`, with its
  `raw_data`, collection time, content hash and how much was masked. It lives in the domain because cleaning
  makes it and cleaning is pure: nothing about it belongs to a stage.
- `cold_path.records.PolicyRecord`: a `policies` row as the cold path loads it (id, version, status,
  timestamps). It stays in the cold path: those are the store's bookkeeping, which only the cold path reads.
- `sync.targets.base.SyncDocument`: an active policy as the sync targets receive it (id, version, checksum,
  quality score, duplicate links). It stays in the sync: its checksum and bucket are the sync's own notions
  (`sync.digest`), which the domain cannot import.

Lists are tuples in every view (immutable values, hashable): a JSON array when encoded (orjson writes tuples as
arrays), a `text[]` in PostgreSQL. Only `RawPolicyData`, the pydantic input model, keeps lists (it is what a
source's JSON parses into). Every view is a frozen, slotted, keyword-only dataclass: cheap to build (the hot
path builds one `CleanPolicy` per record, without validation: `RawPolicyData` validated the input already).

Also here: the statuses of a policy's life (`DataStatus`) and the two processing paths (`ProcessingPath`).

Pure. May import the standard library and the other `domain` modules only.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from aegis_pipeline.domain.masking import MaskCounts

__all__ = [
    "POLICY_ARRAY_COLUMNS",
    "POLICY_CONTENT_COLUMNS",
    "CleanPolicy",
    "DataStatus",
    "PolicyContent",
    "ProcessingPath",
    "content_from_columns",
    "content_values",
]


class ProcessingPath(StrEnum):
    HOT = "hot"
    COLD = "cold"


class DataStatus(StrEnum):
    PENDING_VALIDATION = "pending_validation"
    ACTIVE = "active"
    REJECTED = "rejected"
    ARCHIVED = "archived"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PolicyContent:
    """What a policy says, as stored: the content fields, named here and nowhere else.

    `target_region` holds canonical 시·도 names (`domain.regions`) or other regions as written, once each;
    `target_industry` the industries once each. Dates are real dates; `original_url` is an http(s) link.
    """

    source_system: str
    external_id: str
    title: str
    content: str
    issuing_organization: str
    target_region: tuple[str, ...]
    target_industry: tuple[str, ...]
    funding_type: str | None
    application_start_date: date | None
    application_end_date: date | None
    original_url: str | None

    @property
    def record_key(self) -> str:
        return f"{self.source_system}:{self.external_id}"


# The columns of `policies` that hold a policy's content, in field order: SQL column lists, the row a store
# writes or reads, the `policy.validated` event's stored fields and the content hash are all built from it.
POLICY_CONTENT_COLUMNS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(PolicyContent))

# The content columns that are arrays (`text[]` in PostgreSQL, tuples here).
POLICY_ARRAY_COLUMNS: tuple[str, ...] = tuple(
    name for name, kind in typing.get_type_hints(PolicyContent).items() if typing.get_origin(kind) is tuple)

# The content fields' values of any view of a policy (or any object with those attributes), in column order.
content_values: Callable[[Any], tuple[Any, ...]] = operator.attrgetter(*POLICY_CONTENT_COLUMNS)


def content_from_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """The content fields of a policy from its column values (a `policies` row read back), arrays as tuples: the
    keyword arguments of any view's content part, e.g. ``PolicyRecord(**content_from_columns(row), id=...)``."""
    content = {name: row[name] for name in POLICY_CONTENT_COLUMNS}
    for name in POLICY_ARRAY_COLUMNS:
        content[name] = tuple(content[name] or ())
    return content


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CleanPolicy(PolicyContent):
    """A policy as the hot path stores it: every text masked, NFC-normalised and trimmed; regions canonical.

    ``raw_data`` is the source record, masked the same way (keys as they were); it is the only place the
    source's own fields survive. ``masked`` counts what was masked across all fields. ``content_hash`` is
    the hash of what is stored (`domain.hashing`); ``published_hash`` the same hash of the record as it was
    published, before cleaning (what the collector remembers; see `domain.cleaning`). ``raw_data`` is not to
    be mutated.
    """

    raw_data: dict[str, Any]
    collected_at: datetime
    collector_version: str
    content_hash: str
    published_hash: str
    masked: MaskCounts

    def as_document(self) -> dict[str, Any]:
        """The policy as a JSON-ready dict (dates and times as ISO 8601 text), for the cache.

        The content fields, then ``content_hash``, ``collected_at`` and ``collector_version``. ``raw_data`` is
        left out: it can be as large as the content again and readers of the cache want the policy, not the
        source record (PostgreSQL keeps it). ``masked`` and ``published_hash`` are left out: they are about this
        run and its input.
        """
        document = dict(zip(POLICY_CONTENT_COLUMNS, content_values(self), strict=True))
        for name, value in document.items():
            if isinstance(value, tuple):
                document[name] = list(value)
            elif isinstance(value, date):
                document[name] = value.isoformat()
        document["content_hash"] = self.content_hash
        document["collected_at"] = self.collected_at.isoformat()
        document["collector_version"] = self.collector_version
        return document
