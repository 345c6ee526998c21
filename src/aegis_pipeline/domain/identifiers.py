"""Identifiers without personal data: a record's id, its Kafka key and the field names of its source record never
carry a phone number, an e-mail address or a registration number.

Masking (`domain.masking`) replaces personal data by tokens in text, but an identifier cannot become a token: two
records whose ids are two phone numbers would both be ``[전화번호]``, one identity. So an identifier in which
masking finds personal data is replaced, whole, by a stable keyed hash of it:

    ``pii-`` + HMAC-SHA256(key, the identifier as UTF-8), its 64 hex digits written as the letters ``a``-``p``
    (0 -> a, ..., 9 -> j, a -> k, ..., f -> p): ``pii-lkdn...`` (68 characters)

- Stable: the same identifier with the same key always gives the same hash, so identity and idempotency hold (a
  record collected twice is one record; a producer that publishes the phone number and a collector that
  published its hash reach the same policy).
- Keyed: without the key (the setting ``IDENTIFIER_HASH_KEY``, a secret), nobody can try every phone number
  (about 10^8 of them) to find which one a hash is. Changing the key changes every hashed id (they become new
  records): keep it for the life of the data.
- No collisions in practice: 256 bits of HMAC-SHA256.
- Letters, not hex digits: a hex digest holds runs of digits, and about one hash in a thousand would contain
  something phone-shaped (``...a01012345678b...``) that masking would then find in it (log lines, dead letters
  and the hot path itself would mask or hash it again). A hash written in ``a``-``p`` holds no digit, no ``@``:
  masking never finds anything in it, so hashing is idempotent (`identifier_without_personal_data` of a hash is
  the hash) and a hashed id reads the same in every log line, table and message.
- Whole, not in part: an id that is only partly personal (``010-1234-5678_2026``) is hashed whole. Its other part
  alone would not be an identity (``_2026`` for every record of 2026), and keeping the shape around a hash would
  tell which digits were removed.
- Exactly as given: no trimming or normalisation (the collectors trim the id they read; ``01012345678`` and
  ``010-1234-5678`` are two ids to a source, and two hashes here).

What lives here:

- `identifier_without_personal_data(identifier, key)`: THE function; every place a record's identity is formed
  uses it (collectors: the record id and field names before anything is published; hot path: the record's
  ``external_id``, the Kafka key it files dead letters under and the field names of ``raw_data``).
- `holds_personal_data(text)`: what masking would mask in it (the detection).
- `record_key_without_personal_data(record_key, key)`: a ``source:external_id`` key, each part as above.
- `field_names_without_personal_data(document, key)`: every object key of a JSON-like value, at any depth,
  replaced when it holds personal data (values are left to masking); the same object when none does.
- `record_without_personal_identifiers(record, key)`: a `RawPolicyData` with its ``external_id`` and the field
  names of its ``raw_data`` so replaced; the same object when nothing was.
- `DEVELOPMENT_KEY`: the fixed key of development and tests (the embedded stack), also the settings' default;
  production refuses it (settings.py).

No I/O, no clock, no logging: the same input always gives the same output. May import the standard library and
the other `domain` modules only.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aegis_pipeline.domain.masking import mask_text
from aegis_pipeline.domain.records import RawPolicyData

__all__ = [
    "DEVELOPMENT_KEY",
    "HASHED_PREFIX",
    "field_names_without_personal_data",
    "holds_personal_data",
    "identifier_without_personal_data",
    "record_key_without_personal_data",
    "record_without_personal_identifiers",
]

HASHED_PREFIX = "pii-"
# The key of development, tests and the embedded stack: public, so it protects nothing. settings.py has the same
# value as IDENTIFIER_HASH_KEY's default (tests/domain/test_identifiers.py checks) and refuses it in production.
DEVELOPMENT_KEY = "aegis-development-identifier-hash-key-not-secret"

_HEX_AS_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")


def holds_personal_data(text: str) -> bool:
    """Whether masking (`domain.masking`) finds a phone or fax number, an e-mail address or a registration number
    in `text`."""
    return mask_text(text) != text  # masking changes a text exactly when it finds something (cheapest form)


def identifier_without_personal_data(identifier: str, key: bytes) -> str:
    """`identifier` itself when it holds no personal data, else ``pii-`` + its keyed hash (module docstring).
    Idempotent: a hash holds no personal data, so it is returned as it is. Never raises for a string."""
    if not holds_personal_data(identifier):
        return identifier
    digest = hmac.new(key, identifier.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return HASHED_PREFIX + digest.translate(_HEX_AS_LETTERS)


def record_key_without_personal_data(record_key: str, key: bytes) -> str:
    """A ``source:external_id`` key (a Kafka message key, a dead letter's ``record_key``) with each part through
    `identifier_without_personal_data`: the key of a record whose id was hashed is ``source:pii-...``, the same
    whether its producer published the id or its hash. A key without ``:`` is one identifier."""
    source, separator, external_id = record_key.partition(":")
    if not separator:
        return identifier_without_personal_data(record_key, key)
    return (f"{identifier_without_personal_data(source, key)}:"
            f"{identifier_without_personal_data(external_id, key)}")


def _any_personal_name(document: Any) -> bool:
    pending = [document]
    while pending:  # iterative: any depth is safe
        value = pending.pop()
        if isinstance(value, dict):
            for name, item in value.items():
                if isinstance(name, str) and holds_personal_data(name):
                    return True
                pending.append(item)
        elif isinstance(value, list | tuple):
            pending.extend(value)
    return False


def _renamed(value: Any, key: bytes) -> Any:
    if isinstance(value, dict):
        return {(identifier_without_personal_data(name, key) if isinstance(name, str) else name): _renamed(item, key)
                for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_renamed(item, key) for item in value]
    return value


def field_names_without_personal_data(document: Any, key: bytes) -> Any:
    """`document` (a JSON-like value) with every object key that holds personal data replaced by its hash
    (`identifier_without_personal_data`), at any depth; values and structure kept. When no key holds any,
    `document` itself is returned (nothing is copied: the usual case costs one walk)."""
    if not _any_personal_name(document):
        return document
    return _renamed(document, key)


def record_without_personal_identifiers(record: RawPolicyData, key: bytes) -> RawPolicyData:
    """`record` with its ``external_id`` through `identifier_without_personal_data` and the field names of its
    ``raw_data`` through `field_names_without_personal_data`; `record` itself when neither changed."""
    metadata = record.collection_metadata
    external_id = identifier_without_personal_data(metadata.external_id, key)
    raw_data = field_names_without_personal_data(record.raw_data, key)
    if external_id == metadata.external_id and raw_data is record.raw_data:
        return record
    # A hash is a valid external_id (68 characters, no control character): no validation to run again.
    return record.model_copy(update={
        "raw_data": raw_data,
        "collection_metadata": metadata.model_copy(update={"external_id": external_id}),
    })
