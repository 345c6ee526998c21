"""What users will find: a query run against the live vectors alias or the live search alias, as the
`aegis-pipeline search` command and the Korean relevance suite run it.

- vectors: the query is encoded by the model that filled the live collection (recorded on it), never by whatever
  `EMBEDDING_MODEL` says now, so a query and the documents it is compared with are always of one model.
- search: the query's words are analysed by the index's own analyzer (`korean_bigram` or `nori`).

Each hit is named by its policy's source and the source's own id, read from PostgreSQL (the source of truth).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from aegis_pipeline.common.errors import SyncFailedError
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.sync.embeddings import MODELS, load_encoder
from aegis_pipeline.sync.targets import open_target
from aegis_pipeline.sync.targets.search import SearchTarget
from aegis_pipeline.sync.targets.vectors import VectorsTarget

SEARCHABLE_TARGETS = ("vectors", "search")


@dataclass(frozen=True)
class Hit:
    source_system: str
    external_id: str
    title: str
    score: float
    policy_id: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def query_vectors(target: VectorsTarget, query: str, limit: int) -> list[tuple[str, float]]:
    """(policy id, cosine) of the `limit` nearest documents to `query`, best first."""
    live = target.live_model()
    if live is None:
        raise SyncFailedError("milvus: no collection behind the alias yet: run `aegis-pipeline sync run` first",
                              code=target.error_code, target=target.name)
    model, _ = live
    if model not in MODELS:
        raise SyncFailedError(f"milvus: the live collection was filled by {model or 'an unrecorded model'}, which "
                              f"this installation does not ship: run `aegis-pipeline sync rebuild --target vectors`",
                              code=target.error_code, target=target.name)
    embedding = load_encoder(model).encode_queries([query])[0]
    try:
        return target.search(embedding, limit)
    except SyncFailedError:
        if target.live_model() == live:
            raise
        # A rebuild swapped in another model's collection between reading the model and searching: once more.
        return query_vectors(target, query, limit)


def query_search(target: SearchTarget, query: str, limit: int) -> list[tuple[str, float]]:
    """(policy id, relevance score) of the `limit` best matches for `query`, best first."""
    return target.search(query, limit)


def _query(settings: Settings, target_name: str, query: str, limit: int) -> list[tuple[str, float]]:
    with open_target(target_name, settings) as target:
        if isinstance(target, VectorsTarget):
            return query_vectors(target, query, limit)
        if isinstance(target, SearchTarget):
            return query_search(target, query, limit)
    raise ValueError(f"cannot search the {target_name} target; expected one of {', '.join(SEARCHABLE_TARGETS)}")


async def search(settings: Settings, query: str, *, target: str = "vectors", limit: int = 10) -> list[Hit]:
    """The `limit` best policies for `query` in one target's live alias, best first."""
    ranked = await asyncio.to_thread(_query, settings, target, query, limit)
    if not ranked:
        return []
    async with postgres.connect(settings.postgres_dsn()) as connection:
        with postgres.translate_errors("read search hits"):
            rows = await connection.fetch(
                "SELECT id::text AS id, source_system, external_id, title FROM policies WHERE id = ANY($1::uuid[])",
                [policy_id for policy_id, _ in ranked])
    found = {row["id"]: row for row in rows}
    # A hit PostgreSQL no longer has is an orphan the next consistency repair removes; it is not shown.
    return [Hit(found[policy_id]["source_system"], found[policy_id]["external_id"], found[policy_id]["title"],
                round(score, 4), policy_id) for policy_id, score in ranked if policy_id in found]
