"""The Korean relevance suite: does a Korean query find the right programme, and can the vectors tell one
programme from its look-alikes?

The labelled set (`tests/data/korean_relevance.yaml`) holds announcements shaped like the real sources', pairs
of one programme announced by two sources (`same_programme`), look-alike pairs of different programmes
(`different_programmes`: another region, round, year, target group or kind), and plain queries with the
announcements that answer them; the rest of the set is their distractors.

Measures, computed the way users meet them (through the targets' own `search`, see `sync.lookup`):
- pairs: mean cosine of same-programme pairs against every pair of different programmes in the set (the
  separation), and against the labelled look-alikes alone, by what differs;
- queries: recall@k, the share of a query's relevant programmes among its first k programmes, averaged over the
  queries, for k = 3 and 10, for the vectors target and for the search target (a programme's copies from other
  sources count once, as the de-duplicated catalogue shows them; the strict per-announcement recall@3 too).
"""

from __future__ import annotations

import hashlib
import statistics
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData
from aegis_pipeline.sync.embeddings import Encoder, encode_in_batches
from aegis_pipeline.sync.targets.base import SyncBatch, SyncDocument, SyncTarget

DATA_PATH = Path(__file__).with_name("korean_relevance.yaml")
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
            id=self.policy_id, version=1, checksum=hashlib.md5(self.id.encode()).hexdigest(),
            source_system=self.source_system, external_id=self.external_id,
            title=self.title, content=self.content, issuing_organization=self.issuing_organization,
            target_region=self.target_region, target_industry=(), funding_type=None, application_start_date=None,
            application_end_date=None, original_url=None, quality_score=None, status="active", canonical_id=None,
            duplicate_ids=())


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
    same_mean: float              # pairs of one programme from two sources
    different_mean: float         # every pair of announcements of two different programmes in the set
    lookalike_mean: float         # the labelled look-alike pairs only (another region, round, year, group, kind)
    lookalike_by_kind: dict[str, float]

    @property
    def separation(self) -> float:
        return round(self.same_mean - self.different_mean, 4)

    @property
    def lookalike_separation(self) -> float:
        return round(self.same_mean - self.lookalike_mean, 4)


@dataclass(frozen=True)
class QueryReport:
    recall_at_3: float            # programmes, as the de-duplicated catalogue shows them
    recall_at_10: float
    announcement_recall_at_3: float  # every copy counted on its own
    missed_at_3: tuple[str, ...]  # queries with a relevant programme outside their first three


def programmes(relevance: RelevanceSet) -> dict[str, str]:
    """Announcement id -> its programme (the first id of its group of same-programme pairs, joined through)."""
    programme = {announcement.id: announcement.id for announcement in relevance.announcements}

    def root(id_: str) -> str:
        while programme[id_] != id_:
            id_ = programme[id_]
        return id_

    for first, second in relevance.same_programme:
        programme[root(second)] = root(first)
    return {id_: root(id_) for id_ in programme}


def recall_at(ranked: Sequence[str], relevant: frozenset[str] | set[str], k: int) -> float:
    return len(relevant & set(ranked[:k])) / len(relevant)


def pair_report(relevance: RelevanceSet, embeddings: Mapping[str, np.ndarray]) -> PairReport:
    """Mean cosines; `embeddings` are unit vectors by announcement id."""
    ids = [announcement.id for announcement in relevance.announcements]
    matrix = np.stack([embeddings[id_] for id_ in ids])
    cosine = matrix @ matrix.T
    programme = programmes(relevance)
    position = {id_: index for index, id_ in enumerate(ids)}
    rows, columns = np.triu_indices(len(ids), k=1)
    different = np.array([programme[ids[row]] != programme[ids[column]] for row, column in zip(rows, columns,
                                                                                               strict=True)])
    by_kind: dict[str, list[float]] = {}
    for first, second, kind in relevance.different_programmes:
        by_kind.setdefault(kind, []).append(float(cosine[position[first], position[second]]))
    same = [float(cosine[position[first], position[second]]) for first, second in relevance.same_programme]
    return PairReport(
        same_mean=round(statistics.fmean(same), 4),
        different_mean=round(float(cosine[rows, columns][different].mean()), 4),
        lookalike_mean=round(statistics.fmean(value for values in by_kind.values() for value in values), 4),
        lookalike_by_kind={kind: round(statistics.fmean(values), 4) for kind, values in sorted(by_kind.items())})


def query_report(relevance: RelevanceSet, rank: Callable[[str], Sequence[str]]) -> QueryReport:
    """`rank(query)`: announcement ids, best first (at least 10 programmes' worth).

    In the catalogue a programme's copies from other sources are duplicates (rejected by the cold path), so a
    user sees each programme once: the ranking is read as programmes (each at its best-ranked copy), and a query
    is answered when its programmes are among the first k. The strict per-announcement recall is reported too."""
    programme = programmes(relevance)
    at_3, at_10, strict, missed = [], [], [], []
    for query in relevance.queries:
        ranked = list(rank(query.text))
        ranked_programmes = list(dict.fromkeys(programme[id_] for id_ in ranked))
        wanted = {programme[id_] for id_ in query.relevant}
        at_3.append(recall_at(ranked_programmes, wanted, 3))
        at_10.append(recall_at(ranked_programmes, wanted, 10))
        strict.append(recall_at(ranked, query.relevant, 3))
        if at_3[-1] < 1:
            missed.append(query.text)
    return QueryReport(round(statistics.fmean(at_3), 4), round(statistics.fmean(at_10), 4),
                       round(statistics.fmean(strict), 4), tuple(missed))


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
           limit: int = 20) -> Callable[[str], list[str]]:
    """`search(query, limit)` (policy id, score) turned into announcement ids, best first."""
    by_policy = relevance.by_policy_id()
    return lambda query: [by_policy[policy_id] for policy_id, _ in search(query, limit)]
