"""What users will find: a query run against the live vectors alias or the live search alias, as the
`aegis-pipeline search` command and the Korean relevance suite run it.

- vectors: the query is encoded by the model that filled the live collection (recorded on it), never by whatever
  `EMBEDDING_MODEL` says now, so a query and the documents it is compared with are always of one model.
- search: the query's words are analysed by the index's own analyzer (`korean_bigram` or `nori`).

Each hit is named by its policy's source and the source's own id, read from PostgreSQL (the source of truth), with
the end of its application period and the days left until it (Korean date). `open_only` keeps programmes still
open today: the targets filter on the end date they store, so "open" is always today's, never a flag written at
sync time that goes stale at midnight.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from aegis_pipeline.common.errors import SyncFailedError
from aegis_pipeline.domain.korean_time import korean_today
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
    application_end_date: date | None = None
    days_left: int | None = None  # until the end date, Korean time (0: its last day); None: no end date

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["application_end_date"] = self.application_end_date.isoformat() if self.application_end_date else None
        return values


def query_vectors(target: VectorsTarget, query: str, limit: int,
                  open_on: date | None = None) -> list[tuple[str, float]]:
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
        return target.search(embedding, limit, open_on=open_on)
    except SyncFailedError:
        if target.live_model() == live:
            raise
        # A rebuild swapped in another model's collection between reading the model and searching: once more.
        return query_vectors(target, query, limit, open_on)


def query_search(target: SearchTarget, query: str, limit: int, open_on: date | None = None) -> list[tuple[str, float]]:
    """(policy id, relevance score) of the `limit` best matches for `query`, best first."""
    return target.search(query, limit, open_on=open_on)


def _query(settings: Settings, target_name: str, query: str, limit: int,
           open_on: date | None) -> list[tuple[str, float]]:
    with open_target(target_name, settings) as target:
        if isinstance(target, VectorsTarget):
            return query_vectors(target, query, limit, open_on)
        if isinstance(target, SearchTarget):
            return query_search(target, query, limit, open_on)
    raise ValueError(f"cannot search the {target_name} target; expected one of {', '.join(SEARCHABLE_TARGETS)}")


async def search(settings: Settings, query: str, *, target: str = "vectors", limit: int = 10,
                 open_only: bool = False) -> list[Hit]:
    """The `limit` best policies for `query` in one target's live alias, best first; `open_only`: of the
    programmes still open today (Korean date)."""
    today = korean_today(datetime.now(UTC))
    ranked = await asyncio.to_thread(_query, settings, target, query, limit, today if open_only else None)
    if not ranked:
        return []
    async with postgres.connect(settings.postgres_dsn()) as connection:
        with postgres.translate_errors("read search hits"):
            rows = await connection.fetch(
                "SELECT id::text AS id, source_system, external_id, title, application_end_date FROM policies "
                "WHERE id = ANY($1::uuid[])",
                [policy_id for policy_id, _ in ranked])
    found = {row["id"]: row for row in rows}
    # A hit PostgreSQL no longer has is an orphan the next consistency repair removes; it is not shown.
    return [_hit(found[policy_id], policy_id, score, today) for policy_id, score in ranked if policy_id in found]


def _hit(row: Any, policy_id: str, score: float, today: date) -> Hit:
    end = row["application_end_date"]
    return Hit(row["source_system"], row["external_id"], row["title"], round(score, 4), policy_id,
               application_end_date=end, days_left=(end - today).days if end else None)
