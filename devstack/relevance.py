"""The Korean relevance suite: does a Korean query find the right programme, and can the vectors tell one
programme from its look-alikes?

The labelled set (`tests/data/korean_relevance.yaml`) holds announcements shaped like the real sources', pairs
of one programme announced by two sources (`same_programme`), look-alike pairs of different programmes
(`different_programmes`: another region, round, year, target group or kind), and plain queries with the
announcements that answer them; the rest of the set is their distractors.

Measures, computed the way users meet them (through the targets' own `search`, see `sync.lookup`):
- pairs: mean cosine of same-programme pairs and of look-alike pairs, and the separation between the two means;
- queries: recall@k, the share of a query's relevant announcements among its first k results, averaged over the
  queries, for k = 3 and 10, for the vectors target and for the search target.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from schemas.records import CollectionMetadata, RawPolicyData
from sync.embeddings import Encoder, encode_in_batches
from sync.targets.base import SyncBatch, SyncDocument, SyncTarget

DATA_PATH = Path(__file__).resolve().parents[1] / "tests" / "data" / "korean_relevance.yaml"
_ID_NAMESPACE = uuid.UUID("6b1f3c55-3a0e-4b0e-9d7c-6b0c2f1f4e19")  # dataset id -> policy id, stable across runs


@dataclass(frozen=True)
class Announcement:
    id: str
    source_system: str
    external_id: str
    title: str
    content: str
    issuing_organization: str
    target_region: tuple[str, ...]

    @property
    def policy_id(self) -> str:
        return str(uuid.uuid5(_ID_NAMESPACE, self.id))

    def raw_record(self) -> RawPolicyData:
        """The announcement as a collector hands it to the hot path (for tests that run the whole sync)."""
        return RawPolicyData(
            title=self.title, content=self.content, issuing_organization=self.issuing_organization,
            target_region=list(self.target_region), raw_data={"id": self.external_id},
            collection_metadata=CollectionMetadata(source=self.source_system, external_id=self.external_id,
                                                   collected_at=datetime.now(UTC)))

    def document(self) -> SyncDocument:
        return SyncDocument(
            id=self.policy_id, version=1, checksum=f"relevance-{self.id}", source_system=self.source_system,
            title=self.title, content=self.content, issuing_organization=self.issuing_organization,
            target_region=self.target_region, target_industry=(), funding_type=None, application_start_date=None,
            application_end_date=None, original_url=None, quality_score=None, canonical_id=None, duplicate_ids=())


@dataclass(frozen=True)
class Query:
    text: str
    relevant: frozenset[str]  # announcement ids


@dataclass(frozen=True)
class RelevanceSet:
    announcements: tuple[Announcement, ...]
    same_programme: tuple[tuple[str, str], ...]
    different_programmes: tuple[tuple[str, str, str], ...]  # (id, id, what differs)
    queries: tuple[Query, ...]

    def by_policy_id(self) -> dict[str, str]:
        return {announcement.policy_id: announcement.id for announcement in self.announcements}


def load(path: Path = DATA_PATH) -> RelevanceSet:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    announcements = tuple(
        Announcement(item["id"], item["source_system"], str(item["external_id"]), item["title"],
                     item["content"].strip(), item["issuing_organization"], tuple(item.get("target_region") or ()))
        for item in data["announcements"])
    known = {announcement.id for announcement in announcements}
    relevance = RelevanceSet(
        announcements=announcements,
        same_programme=tuple((a, b) for a, b in data["same_programme"]),
        different_programmes=tuple((item["pair"][0], item["pair"][1], item["differs_in"])
                                   for item in data["different_programmes"]),
        queries=tuple(Query(item["query"], frozenset(item["relevant"])) for item in data["queries"]),
    )
    referenced = {id_ for pair in relevance.same_programme for id_ in pair}
    referenced |= {id_ for *pair, _ in relevance.different_programmes for id_ in pair}
    referenced |= {id_ for query in relevance.queries for id_ in query.relevant}
    if unknown := referenced - known:
        raise ValueError(f"{path}: pairs or queries name unknown announcements: {sorted(unknown)}")
    return relevance


# --- measures (pure) ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairReport:
    same_mean: float
    different_mean: float
    different_max: float          # the look-alike pair the model finds most alike
    same_min: float               # the same-programme pair it finds least alike

    @property
    def separation(self) -> float:
        return self.same_mean - self.different_mean


@dataclass(frozen=True)
class QueryReport:
    recall_at_3: float
    recall_at_10: float
    missed_at_3: tuple[str, ...]  # queries with a relevant announcement outside their first three


def recall_at(ranked: Sequence[str], relevant: frozenset[str], k: int) -> float:
    return len(relevant & set(ranked[:k])) / len(relevant)


def pair_report(relevance: RelevanceSet, embeddings: Mapping[str, np.ndarray]) -> PairReport:
    """Cosines of the labelled pairs; `embeddings` are unit vectors by announcement id."""
    def cosines(pairs: Sequence[Sequence[str]]) -> list[float]:
        return [float(np.dot(embeddings[pair[0]], embeddings[pair[1]])) for pair in pairs]

    same = cosines(relevance.same_programme)
    different = cosines(relevance.different_programmes)
    return PairReport(round(statistics.fmean(same), 4), round(statistics.fmean(different), 4),
                      round(max(different), 4), round(min(same), 4))


def query_report(relevance: RelevanceSet, rank: Callable[[str], Sequence[str]]) -> QueryReport:
    """`rank(query)`: announcement ids, best first (at least 10)."""
    at_3, at_10, missed = [], [], []
    for query in relevance.queries:
        ranked = rank(query.text)
        at_3.append(recall_at(ranked, query.relevant, 3))
        at_10.append(recall_at(ranked, query.relevant, 10))
        if at_3[-1] < 1:
            missed.append(query.text)
    return QueryReport(round(statistics.fmean(at_3), 4), round(statistics.fmean(at_10), 4), tuple(missed))


# --- through the targets ---------------------------------------------------------------------------------------

def embed_announcements(relevance: RelevanceSet, encoder: Encoder, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Document embeddings by announcement id, of the text the sync embeds (`SyncDocument.embedding_text`)."""
    texts = [announcement.document().embedding_text for announcement in relevance.announcements]
    vectors = encode_in_batches(encoder, texts, batch_size)
    return {announcement.id: vector for announcement, vector in zip(relevance.announcements, vectors, strict=True)}


def load_into(target: SyncTarget, relevance: RelevanceSet, embeddings: Mapping[str, np.ndarray]) -> None:
    """Every announcement into `target` (set up, empty), as a sync run writes them; visible when this returns."""
    by_policy = {}
    if target.needs_embeddings:
        by_policy = {item.policy_id: embeddings[item.id].tolist() for item in relevance.announcements}
    documents = [announcement.document() for announcement in relevance.announcements]
    target.upsert(SyncBatch("relevance", documents, by_policy))
    target.flush()


def ranker(relevance: RelevanceSet, search: Callable[[str, int], list[tuple[str, float]]],
           limit: int = 10) -> Callable[[str], list[str]]:
    """`search(query, limit)` (policy id, score) turned into announcement ids, best first."""
    by_policy = relevance.by_policy_id()
    return lambda query: [by_policy[policy_id] for policy_id, _ in search(query, limit)]
