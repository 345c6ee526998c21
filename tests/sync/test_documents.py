"""`sync.targets.base`: what the targets embed (`embedding_text` and its cap), the document's derived values, the
translation of engine errors (`SyncTarget.guard`) and the names and codes of the three targets."""

from __future__ import annotations

import hashlib

import pytest

from aegis_pipeline.common.errors import ErrorCode, StoreUnavailableError, SyncFailedError
from aegis_pipeline.settings import Settings
from aegis_pipeline.sync.digest import BUCKETS
from aegis_pipeline.sync.targets import open_target
from aegis_pipeline.sync.targets.base import EMBEDDED_CONTENT_CHARACTERS, TARGET_NAMES, embedding_text
from aegis_pipeline.sync.targets.graph import GraphTarget
from aegis_pipeline.sync.targets.search import SearchTarget
from aegis_pipeline.sync.targets.vectors import VectorsTarget


def test_embedding_text_is_the_title_then_the_body_on_the_next_line() -> None:
    assert embedding_text("청년 창업 지원", "예비창업자 사업화 자금") == "청년 창업 지원\n예비창업자 사업화 자금"
    assert embedding_text("제목만", "") == "제목만\n"


def test_embedding_text_keeps_exactly_the_first_2000_characters_of_the_body() -> None:
    assert EMBEDDED_CONTENT_CHARACTERS == 2000
    body = "가" * 1999 + "나" + "다" * 500  # the 2000th character is 나, the 2001st the first 다
    text = embedding_text("제목", body)
    assert text == "제목\n" + "가" * 1999 + "나"
    assert len(text) == len("제목\n") + 2000


def test_embedding_text_never_cuts_the_title() -> None:
    title = "긴 제목 " * 600  # 3,000 characters
    assert embedding_text(title, "본문") == f"{title}\n본문"


def test_a_body_at_the_cap_is_kept_whole() -> None:
    body = "x" * EMBEDDED_CONTENT_CHARACTERS
    assert embedding_text("t", body) == "t\n" + body


def test_a_document_embeds_its_own_title_and_capped_body(document) -> None:
    doc = document(title="소상공인 정책자금", content="융자 " * 1500)
    assert doc.embedding_text == "소상공인 정책자금\n" + ("융자 " * 1500)[:2000]


def test_a_documents_bucket_is_the_md5_of_its_id_modulo_the_bucket_count(document) -> None:
    for policy_id in ("3f2c8a4e-0000-4000-8000-000000000001", "a", "정책-1"):
        expected = int(hashlib.md5(policy_id.encode("utf-8")).hexdigest()[:8], 16) % 1024
        assert document(id=policy_id).bucket == expected
    assert BUCKETS == 1024


def test_a_documents_digest_is_the_first_8_hex_digits_of_its_checksum(document) -> None:
    assert document(checksum="0000002a" + "f" * 56).digest == 42
    assert document(checksum="ffffffff" + "0" * 56).digest == 2**32 - 1
    # digits after the 8th do not count
    assert document(checksum="0000002a" + "0" * 56).digest == 42


class _Store(SearchTarget):
    """A target class only: `guard` is a classmethod, nothing is opened."""


def _guarded(error: BaseException, target: type = _Store) -> SyncFailedError:
    with pytest.raises(SyncFailedError) as caught, target.guard("bulk upsert"):
        raise error
    return caught.value


def test_guard_turns_a_driver_error_into_the_targets_sync_error() -> None:
    error = ConnectionRefusedError("connection refused")
    translated = _guarded(error)
    assert translated.code is ErrorCode.ELASTICSEARCH_SYNC_FAILED
    assert translated.args[0] == "elasticsearch bulk upsert failed: ConnectionRefusedError: connection refused"
    assert translated.details == {"target": "search"}
    assert translated.__cause__ is error
    assert translated.retriable  # the sync keeps the watermark and catches up next run


@pytest.mark.parametrize(("target", "code", "store"), [
    (VectorsTarget, ErrorCode.MILVUS_SYNC_FAILED, "milvus"),
    (GraphTarget, ErrorCode.NEO4J_SYNC_FAILED, "neo4j"),
    (SearchTarget, ErrorCode.ELASTICSEARCH_SYNC_FAILED, "elasticsearch"),
])
def test_each_target_translates_with_its_own_code(target: type, code: ErrorCode, store: str) -> None:
    translated = _guarded(RuntimeError("boom"), target)
    assert translated.code is code
    assert str(translated) == f"{code.value}: {store} bulk upsert failed: RuntimeError: boom"


def test_guard_keeps_a_pipeline_errors_own_text_without_its_class_name() -> None:
    error = StoreUnavailableError("elasticsearch ping failed: ConnectionTimeout")
    translated = _guarded(error)
    assert translated.args[0] == f"elasticsearch bulk upsert failed: {error}"  # its str: code and text
    assert "StoreUnavailableError" not in translated.args[0]


def test_guard_lets_a_sync_error_through_unchanged() -> None:
    original = SyncFailedError("milvus: wrong model", code=ErrorCode.MILVUS_SYNC_FAILED, target="vectors")
    assert _guarded(original) is original  # not re-wrapped with the search target's code


def test_guard_cuts_long_messages_to_500_characters() -> None:
    translated = _guarded(ValueError("x" * 2000))
    assert len(translated.args[0]) == 500
    assert translated.args[0].startswith("elasticsearch bulk upsert failed: ValueError: xxx")


def test_guard_does_not_touch_what_is_no_exception() -> None:
    with pytest.raises(KeyboardInterrupt), _Store.guard("upsert"):
        raise KeyboardInterrupt
    with _Store.guard("upsert"):
        pass  # no error: nothing raised


def test_the_three_targets_names_stores_and_embedding_needs() -> None:
    assert TARGET_NAMES == ("vectors", "graph", "search")
    targets = {target.name: target for target in (VectorsTarget, GraphTarget, SearchTarget)}
    assert set(targets) == set(TARGET_NAMES)
    assert {name: target.store_name for name, target in targets.items()} == {
        "vectors": "milvus", "graph": "neo4j", "search": "elasticsearch"}
    assert [name for name, target in targets.items() if target.needs_embeddings] == ["vectors"]


def test_open_target_refuses_an_unknown_name_before_connecting() -> None:
    settings = Settings.model_construct()  # no value is read for an unknown name
    with pytest.raises(ValueError, match=r"unknown sync target 'postgres'; expected one of vectors, graph, search"):
        open_target("postgres", settings)

