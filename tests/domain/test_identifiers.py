"""Unit tests of identifiers without personal data (domain/identifiers.py): an id, a record key or a field name in
which masking finds personal data becomes `pii-` + its keyed HMAC-SHA256 (written in letters), whole, stably, and
the hash itself is never found personal again; everything else is kept as it is."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_pipeline.domain.hashing import published_hash
from aegis_pipeline.domain.identifiers import (
    DEVELOPMENT_KEY,
    field_names_without_personal_data,
    holds_personal_data,
    identifier_without_personal_data,
    record_key_without_personal_data,
    record_without_personal_identifiers,
)
from aegis_pipeline.domain.masking import mask_text
from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData
from aegis_pipeline.settings import DEVELOPMENT_IDENTIFIER_HASH_KEY, Settings

KEY = b"unit-test-identifier-key"
HASHED = re.compile(r"pii-[a-p]{64}")


def reference_hash(identifier: str, key: bytes = KEY) -> str:
    """The documented form, computed independently: pii- + the HMAC-SHA256 hex digits written as a-p."""
    digest = hmac.new(key, identifier.encode("utf-8"), hashlib.sha256).hexdigest()
    return "pii-" + "".join("abcdefghijklmnop"["0123456789abcdef".index(char)] for char in digest)


PERSONAL_IDS = [
    "010-1234-5678", "01012345678", "010 1234 5678", "(02)123-4567", "+82-10-1234-5678", "１５８８－１２３４",
    "kim.chulsoo@sd.go.kr", "900101-1234567", "900101-1******",
    "010-1234-5678_2026",  # only partly personal: hashed whole
    "공고-010-1234-5678",
]
KEPT_IDS = ["PBLN_000000000112233", "175032", "PBLN_0212345678", "2026-03-01", "R-01", "sd-notice-77",
            "20260301123456", "1500-2000만원", "@handle", "pii-not-a-hash-but-kept"]


@pytest.mark.parametrize("identifier", PERSONAL_IDS)
def test_a_personal_identifier_becomes_its_keyed_hash(identifier: str) -> None:
    hashed = identifier_without_personal_data(identifier, KEY)
    assert hashed == reference_hash(identifier)
    assert HASHED.fullmatch(hashed)
    assert identifier_without_personal_data(identifier, KEY) == hashed  # stable
    assert identifier_without_personal_data(hashed, KEY) == hashed  # a hash is kept: idempotent
    assert not holds_personal_data(hashed) and mask_text(hashed) == hashed


@pytest.mark.parametrize("identifier", KEPT_IDS)
def test_an_identifier_without_personal_data_is_kept_as_it_is(identifier: str) -> None:
    assert identifier_without_personal_data(identifier, KEY) == identifier


def test_a_partly_personal_id_is_hashed_whole_and_apart_from_its_personal_part() -> None:
    whole = identifier_without_personal_data("010-1234-5678_2026", KEY)
    assert whole == reference_hash("010-1234-5678_2026")
    assert whole != identifier_without_personal_data("010-1234-5678", KEY)
    assert "2026" not in whole and "_" not in whole


def test_different_ids_and_different_keys_give_different_hashes() -> None:
    ids = [f"010-{number // 10_000:04d}-{number % 10_000:04d}" for number in range(10_000_000, 10_002_000)]
    hashes = {identifier_without_personal_data(identifier, KEY) for identifier in ids}
    assert len(hashes) == len(ids)
    assert identifier_without_personal_data(ids[0], b"another key") != identifier_without_personal_data(ids[0], KEY)


# Ids whose HMAC-SHA256 under KEY, in hex digits, holds a phone-shaped run (...0fbe0234119435bc...): about one id in
# 250 is such. Written in letters, their hashes hold nothing masking would find.
HEX_WOULD_LEAK = ["010-0000-0253", "010-0000-0601", "010-0000-0774"]


@pytest.mark.parametrize("identifier", HEX_WOULD_LEAK)
def test_a_hash_whose_hex_digits_look_like_a_phone_number_is_still_clean(identifier: str) -> None:
    hex_form = "pii-" + hmac.new(KEY, identifier.encode(), hashlib.sha256).hexdigest()
    assert holds_personal_data(hex_form)  # what hex would have given
    hashed = identifier_without_personal_data(identifier, KEY)
    assert not holds_personal_data(hashed) and identifier_without_personal_data(hashed, KEY) == hashed


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"0(10|2|31|51)-?[0-9]{3,4}-?[0-9]{4}(_[0-9]{4})?", fullmatch=True), st.binary(max_size=40))
def test_no_hash_is_ever_found_personal(identifier: str, key: bytes) -> None:
    """A hex digest would sometimes hold a phone-shaped run of digits; the hash, written in letters, never does."""
    hashed = identifier_without_personal_data(identifier, key)
    assert HASHED.fullmatch(hashed) and mask_text(hashed) == hashed


def test_record_keys_hash_each_part() -> None:
    hashed_key = record_key_without_personal_data("sd_notice:010-1234-5678", KEY)
    assert hashed_key == f"sd_notice:{reference_hash('010-1234-5678')}"
    assert record_key_without_personal_data("sd_notice:PBLN_1", KEY) == "sd_notice:PBLN_1"
    assert record_key_without_personal_data(hashed_key, KEY) == hashed_key
    assert record_key_without_personal_data("01012345678", KEY) == reference_hash("01012345678")
    assert record_key_without_personal_data("hygiene:valid", KEY) == "hygiene:valid"


def test_field_names_are_hashed_at_any_depth_and_values_are_left_alone() -> None:
    document = {"title": "공고", "kim@sd.go.kr": "담당", "items": [{"010-1234-5678": 1, "n": "010-9999-8888"}],
                "nested": {"deeper": {"900101-1234567": None}}}
    renamed = field_names_without_personal_data(document, KEY)
    assert renamed == {
        "title": "공고", reference_hash("kim@sd.go.kr"): "담당",
        "items": [{reference_hash("010-1234-5678"): 1, "n": "010-9999-8888"}],  # values: the hot path masks them
        "nested": {"deeper": {reference_hash("900101-1234567"): None}},
    }
    assert "kim@sd.go.kr" in document  # the input is not changed
    clean = {"title": "공고", "items": [{"a": "010-1234-5678"}]}
    assert field_names_without_personal_data(clean, KEY) is clean  # nothing to rename: nothing copied
    assert field_names_without_personal_data(renamed, KEY) == renamed


def _record(external_id: str, raw_data: dict) -> RawPolicyData:
    return RawPolicyData(
        title="청년 창업 지원", content="지원 내용", issuing_organization="성동구", raw_data=raw_data,
        collection_metadata=CollectionMetadata(source="sd_notice", external_id=external_id,
                                               collected_at=datetime(2026, 3, 1, tzinfo=UTC)),
    )


def test_a_record_gets_a_hashed_id_and_field_names_and_stays_valid() -> None:
    record = _record("010-1234-5678", {"id": "010-1234-5678", "kim@sd.go.kr": "담당"})
    safe = record_without_personal_identifiers(record, KEY)
    assert safe.collection_metadata.external_id == reference_hash("010-1234-5678")
    assert safe.collection_metadata.record_key == f"sd_notice:{reference_hash('010-1234-5678')}"
    assert safe.raw_data == {"id": "010-1234-5678", reference_hash("kim@sd.go.kr"): "담당"}
    assert RawPolicyData.model_validate_json(safe.model_dump_json()) == safe
    again = record_without_personal_identifiers(safe, KEY)
    assert again is safe  # what a collector published passes the hot path unchanged, with the same published hash
    assert published_hash(again) == published_hash(safe)
    plain = _record("PBLN_1", {"id": "PBLN_1"})
    assert record_without_personal_identifiers(plain, KEY) is plain


def test_the_development_key_is_the_settings_default() -> None:
    assert DEVELOPMENT_KEY == DEVELOPMENT_IDENTIFIER_HASH_KEY
    assert Settings.model_fields["identifier_hash_key"].default.get_secret_value() == DEVELOPMENT_KEY
