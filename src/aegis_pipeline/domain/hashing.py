"""The content hash of a policy, defined once: SHA-256 (hex) of its content fields, in column order.

    sha256(json_array([HASH_SCHEME, *values of POLICY_CONTENT_COLUMNS]))

as UTF-8, the array written like ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))``, dates as
``YYYY-MM-DD``, tuples and lists as arrays, ``None`` as ``null``. Hashed: the source, the external id, title,
content, organisation, regions, industries, funding type, dates and URL. Not hashed: when and by which collector
version it was collected (not news) and ``raw_data`` (unmapped source fields changing is not a new version).

The same recipe serves two purposes (tests/domain/test_hashing.py holds both to it):

- ``CleanPolicy.content_hash``: of the policy as stored, after cleaning (`domain.cleaning`). Two records the
  store cannot tell apart get the same hash, so the hot path's upsert changes nothing for a record it has.
- the published hash: of the validated record as it was published on the raw topic, before cleaning
  (`published_hash`). The collector remembers it for each record it published; the hot path stores it beside
  the version it made of that record (`policies.published_hash`), so "published but never stored" is one
  comparison (`collectors.state.CollectorState.unstored`) and the collector never needs to clean.

May import the standard library, orjson and the other `domain` modules only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS, PolicyContent, content_values
from aegis_pipeline.domain.records import RawPolicyData

__all__ = ["HASH_SCHEME", "content_hash", "content_hash_of_values", "published_hash"]

HASH_SCHEME = "clean-policy/1"  # part of the hashed text: a change of what is hashed changes every hash once


def content_hash_of_values(values: Sequence[Any]) -> str:
    """The content hash of a policy's content field values, given in `POLICY_CONTENT_COLUMNS` order.

    For who builds a policy and has the values at hand (`domain.cleaning`); `content_hash` for a policy.
    """
    if len(values) != len(POLICY_CONTENT_COLUMNS):
        raise ValueError(f"{len(values)} values for {len(POLICY_CONTENT_COLUMNS)} content columns")
    # A JSON array in a fixed order: unambiguous (strings are quoted and escaped), no key sorting needed, and
    # cheaper than dumping a dict. orjson writes the same bytes as json.dumps(ensure_ascii=False,
    # separators=(",", ":")) for strings, lists, tuples and null, and dates as ISO 8601 (tests/domain/test_hashing.py
    # holds it to that) in a fifth of the time.
    return hashlib.sha256(orjson.dumps([HASH_SCHEME, *values])).hexdigest()


def content_hash(policy: PolicyContent) -> str:
    """The content hash of any view of a policy (`CleanPolicy`, `PolicyContent`, ...): of its content fields."""
    return content_hash_of_values(content_values(policy))


def published_hash(record: RawPolicyData) -> str:
    """The content hash of a validated record as published, before cleaning: what the collector remembers and the
    hot path stores as `policies.published_hash`."""
    return content_hash_of_values(record.content_values())
