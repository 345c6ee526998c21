"""The policy's cleaning: a validated `RawPolicyData` turned into the `CleanPolicy` to store, cache and announce.

Personal data masked (`domain.masking`), text normalised (`domain.text`), regions made canonical
(`domain.regions`), the content hash of what is stored and of what was published (`domain.hashing`).

Where it runs: only in the hot path, once per record, right before storage. The raw topic is the trust boundary:
anything published there, by our collectors or any other producer, passes the hot path before it is stored, and
the hot path is the last stop before storage, so cleaning there is both necessary and sufficient. The collectors
do not clean: they remember the hash of the record as they published it (`hashing.published_hash`), and the hot
path stores that same hash, computed from the record it received, beside the cleaned version.

No I/O, no clock, no logging: the same input always gives the same output. Collectors already turned HTML into
plain text (`collectors.parsing.text.clean_text`, far too slow for the hot path), so nothing of that is left to do.
May import the standard library and the other `domain` modules only.
"""

from __future__ import annotations

from typing import Any

from aegis_pipeline.domain.hashing import content_hash_of_values, published_hash
from aegis_pipeline.domain.masking import Tally, counts_of, mask_counted, mask_url_counted, new_tally
from aegis_pipeline.domain.policy import CleanPolicy
from aegis_pipeline.domain.records import RawPolicyData
from aegis_pipeline.domain.regions import canonical_region, region_as_in_table
from aegis_pipeline.domain.text import nfc, nfc_trimmed, without_control_characters

__all__ = ["normalize_record"]


def _clean_text(value: str, tally: Tally) -> str:
    return mask_counted(nfc(value), tally).strip()


def _clean_items(values: list[str], tally: Tally) -> tuple[str, ...]:
    return tuple(dict.fromkeys(cleaned for cleaned in (_clean_text(value, tally) for value in values) if cleaned))


def _clean_regions(values: list[str], tally: Tally) -> tuple[str, ...]:
    # A value written exactly as in the region table (the usual case) has nothing to mask or normalise.
    regions = (region_as_in_table(value) or canonical_region(_clean_text(value, tally)) for value in values)
    return tuple(dict.fromkeys(region for region in regions if region))


def _clean_raw(value: Any, tally: Tally) -> Any:
    # Strings are masked and NFC-normalised but not trimmed: raw_data stays the source's record as delivered.
    # Control characters are removed from strings and keys (PostgreSQL refuses NUL even inside jsonb); keys are
    # otherwise kept; numbers, booleans and null cannot hold a separated phone number or an e-mail.
    if isinstance(value, str):
        return mask_counted(nfc(without_control_characters(value)), tally)
    if isinstance(value, dict):
        return {without_control_characters(key): _clean_raw(item, tally) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_raw(item, tally) for item in value]
    if isinstance(value, int) and not _JSON_INT_MIN <= value <= _JSON_INT_MAX:
        return str(value)  # JSON allows any integer; the store's encoder (orjson) takes 64 bits, so keep it as text
    return value


_JSON_INT_MIN, _JSON_INT_MAX = -(2**63), 2**64 - 1


def _clean_url(value: str | None, tally: Tally) -> str | None:
    # The link must keep working: masked as a URL (e-mails, separated numbers); ids made of digits stay.
    return None if value is None else mask_url_counted(nfc_trimmed(value), tally)


def normalize_record(record: RawPolicyData) -> CleanPolicy:
    """Turn a validated record into the `CleanPolicy` to store.

    - title, content, issuing_organization, funding_type and every target_region / target_industry item:
      Unicode NFC, personal data masked, trimmed. A blank funding_type becomes ``None``; blank list items are
      dropped and repeats removed (first position kept).
    - target_region: each item through `canonical_region` (before de-duplication, so ``서울`` and
      ``서울특별시`` become one).
    - raw_data: every string at any depth NFC-normalised and masked, control characters removed (from keys
      too); keys, structure and other values kept.
    - original_url: masked as a URL (e-mails and separated numbers only), so the link keeps working.
    - source_system, external_id, collected_at, collector_version: from ``collection_metadata``, unchanged.

    ``content_hash`` is the content hash (`domain.hashing`) of what is stored, after masking and normalisation:
    two records the store cannot tell apart get the same hash. ``published_hash`` is the same hash of the record
    as received, before cleaning (what the collector that published it remembers).
    """
    tally = new_tally()
    metadata = record.collection_metadata
    title = _clean_text(record.title, tally)
    content = _clean_text(record.content, tally)
    issuing_organization = _clean_text(record.issuing_organization, tally)
    target_region = _clean_regions(record.target_region, tally)
    target_industry = _clean_items(record.target_industry, tally)
    funding_type = (_clean_text(record.funding_type, tally) or None) if record.funding_type is not None else None
    original_url = _clean_url(record.original_url, tally)
    raw_data = _clean_raw(record.raw_data, tally)
    # In POLICY_CONTENT_COLUMNS order (tests/domain/test_cleaning.py holds this to `hashing.content_hash`).
    stored_hash = content_hash_of_values((
        metadata.source, metadata.external_id, title, content, issuing_organization, target_region,
        target_industry, funding_type, record.application_start_date, record.application_end_date, original_url,
    ))
    return CleanPolicy(
        source_system=metadata.source,
        external_id=metadata.external_id,
        title=title,
        content=content,
        issuing_organization=issuing_organization,
        target_region=target_region,
        target_industry=target_industry,
        funding_type=funding_type,
        application_start_date=record.application_start_date,
        application_end_date=record.application_end_date,
        original_url=original_url,
        raw_data=raw_data,
        collected_at=metadata.collected_at,
        collector_version=metadata.collector_version,
        content_hash=stored_hash,
        published_hash=published_hash(record),
        masked=counts_of(tally),
    )
