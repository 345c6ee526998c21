"""Unit tests of the policy's cleaning (domain/cleaning.py): the normalised record, masked and canonical, with its
content hash and its published hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.domain.hashing import content_hash, published_hash
from aegis_pipeline.domain.masking import EMAIL_TOKEN, PHONE_TOKEN, MaskCounts
from aegis_pipeline.domain.policy import CleanPolicy
from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData

# --- the normalised record --------------------------------------------------------------------------------

COLLECTED_AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def raw_record(**changes: object) -> RawPolicyData:
    values: dict[str, object] = {
        "title": "2026년 청년 창업 지원사업 공고 (문의 010-1234-5678)",
        "content": "청년 창업자에게 사업화 자금 최대 1억원을 지원합니다. 문의: 담당자 김주무관 ☎ 02-123-4567, "
        "kim@sd.go.kr",
        "issuing_organization": "성동구 일자리정책과 (02-123-4500)",
        "target_region": ["서울", "서울특별시", "11", "경기", "성동구"],
        "target_industry": ["제조업", "정보통신업", "제조업", "문의 kim@sd.go.kr"],
        "funding_type": "보조금",
        "application_start_date": date(2026, 3, 2),
        "application_end_date": date(2026, 3, 31),
        "original_url": "https://www.sd.go.kr/main/selectBbsNttView.do?nttNo=0212345678",
        "raw_data": {
            "nttNo": "184523",
            "telno": "0212345678",
            "body": "<p>문의: ☎ 02-123-4567, kim@sd.go.kr</p>",
            "manager": {"name": "김철수", "phone": "010-9876-5432", "email": "kim@sd.go.kr", "ext": 4567},
            "contacts": ["02-123-4567", {"fax": "02-123-4568"}, None, True, 1.5],
            "areaNm": "서울@부산",
        },
        "collection_metadata": CollectionMetadata(
            source="seongdong_board", external_id="1234", collected_at=COLLECTED_AT, collector_version="1.0"),
    }
    values.update(changes)
    return RawPolicyData(**values)


def test_normalize_record_masks_every_text_field_and_carries_the_rest() -> None:
    policy = normalize_record(raw_record())
    assert policy.title == f"2026년 청년 창업 지원사업 공고 (문의 {PHONE_TOKEN})"
    assert policy.content == (
        f"청년 창업자에게 사업화 자금 최대 1억원을 지원합니다. 문의: 담당자 김주무관 ☎ {PHONE_TOKEN}, {EMAIL_TOKEN}")
    assert policy.issuing_organization == f"성동구 일자리정책과 ({PHONE_TOKEN})"
    assert policy.target_region == ("서울특별시", "경기도", "성동구")
    assert policy.target_industry == ("제조업", "정보통신업", f"문의 {EMAIL_TOKEN}")
    assert policy.funding_type == "보조금"
    assert (policy.application_start_date, policy.application_end_date) == (date(2026, 3, 2), date(2026, 3, 31))
    assert policy.original_url == "https://www.sd.go.kr/main/selectBbsNttView.do?nttNo=0212345678"
    assert (policy.source_system, policy.external_id, policy.record_key) == (
        "seongdong_board", "1234", "seongdong_board:1234")
    assert (policy.collected_at, policy.collector_version) == (COLLECTED_AT, "1.0")
    assert policy.masked == MaskCounts(phone_numbers=8, email_addresses=4, registration_numbers=0)


def test_raw_data_is_masked_recursively_with_keys_and_other_values_kept() -> None:
    raw = normalize_record(raw_record()).raw_data
    assert raw == {
        "nttNo": "184523",
        "telno": PHONE_TOKEN,
        "body": f"<p>문의: ☎ {PHONE_TOKEN}, {EMAIL_TOKEN}</p>",
        "manager": {"name": "김철수", "phone": PHONE_TOKEN, "email": EMAIL_TOKEN, "ext": 4567},
        "contacts": [PHONE_TOKEN, {"fax": PHONE_TOKEN}, None, True, 1.5],
        "areaNm": "서울@부산",
    }


def test_original_url_keeps_working_unless_it_holds_contacts() -> None:
    plain = normalize_record(raw_record(original_url="https://x.go.kr/view.do?nttNo=0212345678&page=2"))
    assert plain.original_url == "https://x.go.kr/view.do?nttNo=0212345678&page=2"
    leaking = normalize_record(raw_record(original_url="https://x.go.kr/view.do?writer=kim@sd.go.kr"))
    assert leaking.original_url == f"https://x.go.kr/view.do?writer={EMAIL_TOKEN}"
    assert normalize_record(raw_record(original_url=None)).original_url is None


def test_text_is_nfc_and_trimmed_and_blank_values_disappear() -> None:
    decomposed = unicodedata.normalize("NFD", "청년 창업 지원")
    policy = normalize_record(raw_record(
        title=decomposed, target_industry=[decomposed, "청년 창업 지원", "  "], target_region=[" 부산 ", ""],
        funding_type="  "))
    assert policy.title == "청년 창업 지원" and unicodedata.is_normalized("NFC", policy.title)
    assert policy.target_industry == ("청년 창업 지원",)
    assert policy.target_region == ("부산광역시",)
    assert policy.funding_type is None


def test_clean_policy_is_frozen_and_serialisable_for_the_cache() -> None:
    policy = normalize_record(raw_record())
    assert isinstance(policy, CleanPolicy)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.title = "changed"  # type: ignore[misc]
    document = json.loads(json.dumps(policy.as_document(), ensure_ascii=False))
    assert document["application_start_date"] == "2026-03-02"
    assert document["collected_at"] == "2026-03-01T09:00:00+00:00"
    assert document["content_hash"] == policy.content_hash
    assert document["target_region"] == ["서울특별시", "경기도", "성동구"]  # JSON arrays
    assert list(document) == ["source_system", "external_id", "title", "content", "issuing_organization",
                              "target_region", "target_industry", "funding_type", "application_start_date",
                              "application_end_date", "original_url", "content_hash", "collected_at",
                              "collector_version"]
    assert "raw_data" not in document and "010-1234-5678" not in json.dumps(document, ensure_ascii=False)


def documented_content_hash(policy: CleanPolicy) -> str:
    """The recipe, spelled out: changing it changes the hash of every stored policy (one new version each)."""
    stored = [
        "clean-policy/1", policy.source_system, policy.external_id, policy.title, policy.content,
        policy.issuing_organization, policy.target_region, policy.target_industry, policy.funding_type,
        "2026-03-02", "2026-03-31", policy.original_url,
    ]
    canonical = json.dumps(stored, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_content_hash_is_sha256_of_the_stored_fields_as_a_json_array() -> None:
    policy = normalize_record(raw_record())
    assert policy.content_hash == documented_content_hash(policy)


# Text with characters JSON escapes (quotes, backslashes, controls) and others it does not (Hangul, U+2028, DEL).
_FIELD_TEXT = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from('"\\\x07\x1f\x7f\u2028/'),
                      min_size=1, max_size=40).filter(lambda text: any(char.isalnum() for char in text))


@given(title=_FIELD_TEXT, content=_FIELD_TEXT, industry=_FIELD_TEXT, funding=_FIELD_TEXT)
@settings(max_examples=300, deadline=None)
def test_content_hash_is_the_documented_recipe_for_any_text(title: str, content: str, industry: str,
                                                            funding: str) -> None:
    # The hash is written with orjson for speed; the recipe says json.dumps. One byte of difference (an escape
    # written another way) would give every stored policy a new version once.
    policy = normalize_record(raw_record(title=title, content=content, target_industry=[industry],
                                         funding_type=funding))
    assert policy.content_hash == documented_content_hash(policy)


def test_content_hash_ignores_collection_time_version_and_raw_data_key_order() -> None:
    record = raw_record()
    reordered = dict(reversed(list(record.raw_data.items())))
    later = raw_record(
        raw_data=reordered,
        collection_metadata=CollectionMetadata(
            source="seongdong_board", external_id="1234", collected_at=datetime(2026, 4, 1, tzinfo=UTC),
            collector_version="2.0"),
    )
    assert normalize_record(later).content_hash == normalize_record(record).content_hash


def test_content_hash_follows_the_stored_content() -> None:
    base = normalize_record(raw_record()).content_hash
    assert normalize_record(raw_record(content="다른 내용의 공고입니다.")).content_hash != base
    assert normalize_record(raw_record(target_region=["부산"])).content_hash != base
    assert normalize_record(raw_record(application_end_date=date(2026, 4, 30))).content_hash != base
    # Only the masked phone number differs: what is stored is the same, so is the hash.
    other_phone = raw_record(content=raw_record().content.replace("02-123-4567", "02-987-6543"))
    assert normalize_record(other_phone).content_hash == base
    # Written differently, stored the same: "서울" and "서울특별시" are one region.
    assert normalize_record(raw_record(target_region=["서울특별시", "경기도", "성동구"])).content_hash == base


def test_the_content_hash_is_the_one_hash_of_what_is_stored() -> None:
    # normalize_record hands the values over in column order; `content_hash` reads them from the policy.
    policy = normalize_record(raw_record())
    assert policy.content_hash == content_hash(policy)


def test_the_published_hash_is_of_the_record_as_received_before_cleaning() -> None:
    record = raw_record()
    policy = normalize_record(record)
    assert policy.published_hash == published_hash(record) == content_hash(record.policy_content())
    assert policy.published_hash != policy.content_hash  # cleaning masked and renamed: another content
    # Another phone number: the same policy once masked, but another record as published.
    other_phone = raw_record(content=record.content.replace("02-123-4567", "02-987-6543"))
    assert normalize_record(other_phone).content_hash == policy.content_hash
    assert normalize_record(other_phone).published_hash != policy.published_hash
    # A record cleaning leaves as it is: both hashes are one.
    plain = raw_record(title="청년 창업 지원사업 공고", content="청년 창업자에게 사업화 자금을 지원합니다.",
                       issuing_organization="성동구", target_region=["서울특별시"], target_industry=["제조업"],
                       original_url="https://www.sd.go.kr/main/view.do?nttNo=1")
    assert normalize_record(plain).published_hash == normalize_record(plain).content_hash
