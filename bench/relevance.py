"""Korean relevance benchmark on the embedded stack: each packaged embedding model and each search analyzer,
side by side on the labelled Korean set (devstack/relevance.py, tests/data/korean_relevance.yaml).

    .venv/bin/python bench/relevance.py [--models M ...] [--analyzers A ...] [--repeat 3]

For each model: load time, encode rate (texts/s, wall) and CPU time per text over the set's announcements (the
text the sync embeds: title and body), mean cosine of same-programme pairs, of every pair of different programmes
and of the labelled look-alikes, the separation (same minus different), then recall@3 and recall@10 of the
queries (programmes; `ann@3`: every copy counted) through a Milvus collection of its own (the vectors target's
`search`). For each analyzer: recall@3 and recall@10 through an Elasticsearch index of its own (the
search target's `search`). The `standard` analyzer (whitespace words, particles attached) is the baseline the
Korean-aware analyzer is compared with in the same run.

Targets (issue 19): separation of at least 0.2 and recall@3 of at least 0.8 for the vectors target.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from aegis_pipeline.common.logging import configure_logging
from aegis_pipeline.devstack import relevance, stack
from aegis_pipeline.settings import Settings, load_core_settings
from aegis_pipeline.stores import search as search_store
from aegis_pipeline.stores import vectors as vectors_store
from aegis_pipeline.sync.embeddings import MODELS, load_encoder
from aegis_pipeline.sync.lookup import query_search, query_vectors
from aegis_pipeline.sync.targets.search import KOREAN_BIGRAM, SearchTarget
from aegis_pipeline.sync.targets.vectors import VectorsTarget

TARGET_SEPARATION = 0.2
TARGET_RECALL_AT_3 = 0.8


def log(message: str) -> None:
    print(message, flush=True)


def measure_model(settings: Settings, relevance_set: relevance.RelevanceSet, name: str,
                  repeat: int) -> dict[str, Any]:
    started = time.perf_counter()
    encoder = load_encoder(name)
    load_seconds = time.perf_counter() - started
    texts = [announcement.document().embedding_text for announcement in relevance_set.announcements]
    relevance.embed_announcements(relevance_set, encoder)  # warm-up
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        embeddings = relevance.embed_announcements(relevance_set, encoder)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    pairs = relevance.pair_report(relevance_set, embeddings)

    alias = f"bench_relevance_{uuid.uuid4().hex[:8]}"
    client = vectors_store.create_client(settings, timeout_seconds=60.0)
    target = VectorsTarget(client, alias, encoder.name, encoder.dimension)
    try:
        target.setup()
        relevance.load_into(target, relevance_set, embeddings)
        queries = relevance.query_report(relevance_set, relevance.ranker(
            relevance_set, lambda query, limit: query_vectors(target, query, limit)))
    finally:
        live = target.live_collection()
        client.drop_alias(alias)
        if live:
            client.drop_collection(live)
        target.close()
    return {
        "model": name, "dimension": encoder.dimension, "load_seconds": round(load_seconds, 2),
        "texts": len(texts), "texts_per_second": round(len(texts) / min(walls), 1),
        "cpu_ms_per_text": round(min(cpus) / len(texts) * 1000, 1),
        "same_mean": pairs.same_mean, "different_mean": pairs.different_mean, "separation": pairs.separation,
        "lookalike_mean": pairs.lookalike_mean, "lookalike_separation": pairs.lookalike_separation,
        "lookalike_by_kind": pairs.lookalike_by_kind,
        "recall_at_3": queries.recall_at_3, "recall_at_10": queries.recall_at_10,
        "announcement_recall_at_3": queries.announcement_recall_at_3, "missed_at_3": list(queries.missed_at_3),
        "met": pairs.separation >= TARGET_SEPARATION and queries.recall_at_3 >= TARGET_RECALL_AT_3,
    }


def measure_analyzer(settings: Settings, relevance_set: relevance.RelevanceSet, analyzer: str) -> dict[str, Any]:
    alias = f"bench-relevance-{uuid.uuid4().hex[:8]}"
    target = SearchTarget(search_store.create_client(settings, timeout_seconds=60.0), alias,
                          analyzer)
    try:
        target.setup()
        relevance.load_into(target, relevance_set, {})
        started = time.perf_counter()
        queries = relevance.query_report(relevance_set, relevance.ranker(
            relevance_set, lambda query, limit: query_search(target, query, limit)))
        seconds = time.perf_counter() - started
    finally:
        for index in target.live_indices():
            target._client.indices.delete(index=index, ignore_unavailable=True)
        target.close()
    return {"analyzer": analyzer, "recall_at_3": queries.recall_at_3, "recall_at_10": queries.recall_at_10,
            "announcement_recall_at_3": queries.announcement_recall_at_3,
            "ms_per_query": round(seconds / len(relevance_set.queries) * 1000, 1),
            "missed_at_3": list(queries.missed_at_3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    parser.add_argument("--analyzers", nargs="+", default=[KOREAN_BIGRAM, "standard"])
    parser.add_argument("--repeat", type=int, default=3, help="encode passes; the fastest is reported")
    arguments = parser.parse_args()
    configure_logging("WARNING", json_lines=False)
    settings = stack.up(load_core_settings())
    relevance_set = relevance.load()
    log(f"set: {len(relevance_set.announcements)} announcements, {len(relevance_set.same_programme)} same-programme "
        f"pairs, {len(relevance_set.different_programmes)} look-alike pairs, {len(relevance_set.queries)} queries")

    models = []
    log(f"{'model':<24}{'dim':>5}{'texts/s':>9}{'cpu ms':>8}{'same':>7}{'diff':>7}{'sep':>7}{'look':>7}"
        f"{'r@3':>7}{'r@10':>7}{'ann@3':>7}")
    for name in arguments.models:
        row = measure_model(settings, relevance_set, name, arguments.repeat)
        models.append(row)
        log(f"{name:<24}{row['dimension']:>5}{row['texts_per_second']:>9}{row['cpu_ms_per_text']:>8}"
            f"{row['same_mean']:>7.3f}{row['different_mean']:>7.3f}{row['separation']:>7.3f}"
            f"{row['lookalike_mean']:>7.3f}{row['recall_at_3']:>7.3f}{row['recall_at_10']:>7.3f}"
            f"{row['announcement_recall_at_3']:>7.3f}")
    analyzers = []
    log(f"{'search analyzer':<24}{'r@3':>7}{'r@10':>7}{'ann@3':>7}{'ms/query':>10}")
    for analyzer in arguments.analyzers:
        row = measure_analyzer(settings, relevance_set, analyzer)
        analyzers.append(row)
        log(f"{analyzer:<24}{row['recall_at_3']:>7.3f}{row['recall_at_10']:>7.3f}"
            f"{row['announcement_recall_at_3']:>7.3f}{row['ms_per_query']:>10}")
    print(json.dumps({"models": models, "analyzers": analyzers,
                      "targets": {"separation": TARGET_SEPARATION, "recall_at_3": TARGET_RECALL_AT_3}},
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
