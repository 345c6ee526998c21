"""The Korean relevance suite (issue 19) on the real engines: the packaged model must tell a programme from its
look-alikes and find the programme a Korean query asks for through Milvus; the search target's Korean analyzer
must find it through Elasticsearch, particles attached; `aegis-pipeline search` shows what users will find.

The labelled set is tests/data/korean_relevance.yaml (devstack/relevance.py says what is measured). The English
model this project used before (all-MiniLM-L6-v2) fails the first two thresholds: see the README's benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aegis_pipeline.devstack import relevance
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres
from aegis_pipeline.sync.embeddings import load_encoder
from aegis_pipeline.sync.lookup import query_search, query_vectors
from aegis_pipeline.sync.run import run_sync
from aegis_pipeline.sync.targets.base import SyncBatch, SyncDocument
from aegis_pipeline.sync.targets.search import KOREAN_BIGRAM, SearchTarget
from aegis_pipeline.sync.targets.vectors import VectorsTarget

pytestmark = pytest.mark.integration

MIN_SEPARATION = 0.2         # same-programme pairs' mean cosine above look-alike pairs' mean
MIN_VECTORS_RECALL_AT_3 = 0.8
MIN_SEARCH_RECALL_AT_3 = 0.8


@pytest.fixture(scope="module")
def relevance_set() -> relevance.RelevanceSet:
    return relevance.load()


@pytest.fixture(scope="module")
def embeddings(relevance_set: relevance.RelevanceSet) -> dict[str, np.ndarray]:
    return relevance.embed_announcements(relevance_set, load_encoder(Settings.model_fields["embedding_model"].default))


@pytest.fixture
def vectors_target(stack: Settings) -> Iterator[VectorsTarget]:
    """An empty vectors target behind an alias of this test's own, dropped afterwards."""
    settings = stack.model_copy(update={"milvus_collection": f"relevance_{uuid.uuid4().hex[:8]}"})
    target = VectorsTarget.open(settings)
    target.setup()
    yield target
    live = target.live_collection()
    target._client.drop_alias(target.alias)
    target._client.drop_collection(live)
    target.close()


def open_search_target(stack: Settings, analyzer: str) -> SearchTarget:
    settings = stack.model_copy(update={"elasticsearch_index": f"relevance-{uuid.uuid4().hex[:8]}",
                                        "elasticsearch_analyzer": analyzer})
    target = SearchTarget.open(settings)
    target.setup()
    return target


def drop(target: SearchTarget) -> None:
    for index in target.live_indices():
        target._client.indices.delete(index=index)
    target.close()


def test_the_model_tells_one_programme_from_its_look_alikes(relevance_set: relevance.RelevanceSet,
                                                            embeddings: dict[str, np.ndarray]) -> None:
    pairs = relevance.pair_report(relevance_set, embeddings)
    assert pairs.separation >= MIN_SEPARATION, pairs


def test_korean_queries_find_their_programme_through_the_vectors_target(
        vectors_target: VectorsTarget, relevance_set: relevance.RelevanceSet,
        embeddings: dict[str, np.ndarray]) -> None:
    relevance.load_into(vectors_target, relevance_set, embeddings)
    report = relevance.query_report(relevance_set, relevance.ranker(
        relevance_set, lambda query, limit: query_vectors(vectors_target, query, limit)))
    assert report.recall_at_3 >= MIN_VECTORS_RECALL_AT_3, report


def test_korean_queries_find_their_programme_through_the_search_target(
        stack: Settings, relevance_set: relevance.RelevanceSet) -> None:
    target = open_search_target(stack, KOREAN_BIGRAM)
    try:
        relevance.load_into(target, relevance_set, {})
        report = relevance.query_report(relevance_set, relevance.ranker(
            relevance_set, lambda query, limit: query_search(target, query, limit)))
    finally:
        drop(target)
    assert report.recall_at_3 >= MIN_SEARCH_RECALL_AT_3, report


def smart_factory_documents() -> list[SyncDocument]:
    base = relevance.Announcement("particle-1", "mss", "1", "2026년 스마트공장 구축 지원사업 공고",
                                  "중소 제조기업의 스마트공장 구축과 고도화를 지원합니다.", "중소벤처기업부", ("전국",))
    other = relevance.Announcement("particle-2", "bizinfo", "2", "2026년 소상공인 경영안정자금 공고",
                                   "소상공인의 운영자금을 저리로 융자합니다.", "소상공인시장진흥공단", ("전국",))
    return [base.document(), other.document()]


@pytest.mark.parametrize(("analyzer", "found"), [(KOREAN_BIGRAM, True), ("standard", False)])
def test_a_particle_attached_to_the_word_still_finds_it_with_the_korean_analyzer(
        stack: Settings, analyzer: str, found: bool) -> None:
    """"스마트공장을" (with the object particle) against "스마트공장": the bigram analyzer finds it; the standard
    analyzer, which keeps the particle on the word, does not: the baseline the Korean analyzer is there to beat."""
    target = open_search_target(stack, analyzer)
    try:
        documents = smart_factory_documents()
        target.upsert(SyncBatch("particle", documents, {}))
        target.flush()
        hits = query_search(target, "스마트공장을", 5)
    finally:
        drop(target)
    assert ([policy_id for policy_id, _ in hits][:1] == [documents[0].id]) is found


@pytest.fixture
async def synced_relevance_settings(stack: Settings, relevance_set: relevance.RelevanceSet) -> Settings:
    """A database of this test's own with the set's announcements stored and active, synced (real encoding) to
    vectors and search."""
    suffix = uuid.uuid4().hex[:8]
    database = f"relevance_{suffix}"
    await postgres.ensure_database(stack.postgres_dsn(database="postgres"), database)
    settings = stack.model_copy(update={"postgres_db": database, "milvus_collection": f"relevance_cli_{suffix}",
                                        "elasticsearch_index": f"relevance-cli-{suffix}"})
    await asyncio.to_thread(upgrade_to_head, settings)
    pool = await postgres.create_pool(settings)
    try:
        policies = [normalize_record(item.raw_record()) for item in relevance_set.announcements]
        await PolicyStore(pool).store_batch(policies, lambda stored: [])
        await pool.execute("UPDATE policies SET status = 'active', quality_score = 0.9")
    finally:
        await pool.close()
    report = await run_sync(settings, targets=["vectors", "search"])
    assert report.success, [result.error for result in report.results]
    return settings


def run_search(settings: Settings, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POSTGRES_HOST": settings.postgres_host, "POSTGRES_PORT": str(settings.postgres_port),
           "POSTGRES_USER": settings.postgres_user, "POSTGRES_DB": settings.postgres_db,
           "MILVUS_COLLECTION": settings.milvus_collection,
           "ELASTICSEARCH_INDEX": settings.elasticsearch_index, "LOG_LEVEL": "WARNING"}
    pipeline = str(Path(sys.executable).parent / "aegis-pipeline")
    return subprocess.run([pipeline, "search", *arguments], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("target", ["vectors", "search"])
def test_the_search_command_prints_what_users_find_best_first(
        synced_relevance_settings: Settings, relevance_set: relevance.RelevanceSet, target: str) -> None:
    # A query with a particle attached that both targets answer in the suite ("스마트공장을 지원하는 사업" is one the
    # vectors target misses: a press round-up that names 스마트공장 in passing comes first).
    query = next(query for query in relevance_set.queries if query.text == "청년창업사관학교에 들어가려면")
    result = run_search(synced_relevance_settings, query.text, "--target", target, "--limit", "3", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and all(set(hit) == {"source_system", "external_id", "title", "score",
                                               "application_end_date", "days_left"} for hit in hits)
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    by_source_id = {(item.source_system, item.external_id): item.id for item in relevance_set.announcements}
    found = [by_source_id[hit["source_system"], hit["external_id"]] for hit in hits]
    assert query.relevant & set(found), found  # the programme asked for is among the first three

    text = run_search(synced_relevance_settings, query.text, "--target", target, "--limit", "2")
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 2
    assert hits[0]["title"] in text.stdout.splitlines()[0]
