"""The search target: Elasticsearch, a versioned index behind an alias, bulk upserts.

Readers and the sync use the alias (`ELASTICSEARCH_INDEX`); the index behind it is `<alias>-v<stamp>`. A rebuild
fills a new index, then moves the alias in one `update_aliases` call (remove + add are atomic), so search never
goes empty. Standard API only.

Korean text: the analyzer of the text fields is a setting. Real clusters use `nori` (the analysis-nori plugin: a
morphological analyzer that drops particles, so "스마트공장을" is searched as "스마트공장"). Where there is no nori,
`korean_bigram` (the default) is defined by the index itself with standard parts: overlapping two-character
pieces, so a word with a particle attached still shares every piece of the bare word ("스마트공장을" → 스마, 마트,
트공, 공장, 장을). `search` is what users' queries run: the words against title (weighted) and body.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

from elasticsearch import Elasticsearch, helpers

from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import search
from aegis_pipeline.sync.digest import BUCKETS, BucketDigest
from aegis_pipeline.sync.targets.base import SyncBatch, SyncDocument, SyncTarget

log = get_logger(__name__)

_TERMS_CHUNK = 512  # buckets per terms query when reading checksums
KOREAN_BIGRAM = "korean_bigram"
_KOREAN_BIGRAM_ANALYSIS = {
    "tokenizer": {"korean_bigram": {"type": "ngram", "min_gram": 2, "max_gram": 2,
                                    "token_chars": ["letter", "digit"]}},
    "analyzer": {KOREAN_BIGRAM: {"type": "custom", "tokenizer": "korean_bigram", "filter": ["lowercase"]}},
}
SEARCH_FIELDS = ["title^3", "content", "issuing_organization"]


def index_settings(analyzer: str) -> dict[str, Any]:
    """The index's settings: one shard, and the definition of `korean_bigram` when the text fields use it."""
    settings: dict[str, Any] = {"index": {"number_of_shards": 1, "refresh_interval": "1s"}}
    if analyzer == KOREAN_BIGRAM:
        settings["analysis"] = _KOREAN_BIGRAM_ANALYSIS
    return settings


def mapping(analyzer: str) -> dict[str, Any]:
    text = {"type": "text", "analyzer": analyzer}
    return {
        "dynamic": "strict",
        "properties": {
            "policy_id": {"type": "keyword"},
            "title": text,
            "content": text,
            "issuing_organization": {**text, "fields": {"raw": {"type": "keyword"}}},
            "target_region": {"type": "keyword"},
            "target_industry": {"type": "keyword"},
            "funding_type": {"type": "keyword"},
            "source_system": {"type": "keyword"},
            "application_start_date": {"type": "date"},
            "application_end_date": {"type": "date"},
            "original_url": {"type": "keyword", "index": False},
            "quality_score": {"type": "float"},
            "canonical_id": {"type": "keyword"},
            "status": {"type": "keyword"},
            "version": {"type": "integer"},
            "checksum": {"type": "keyword"},
            "sync_bucket": {"type": "integer"},
            "sync_digest": {"type": "long"},
            "sync_run_id": {"type": "keyword"},
        },
    }


def to_source(document: SyncDocument, run_id: str) -> dict[str, Any]:
    return {
        "policy_id": document.id,
        "title": document.title,
        "content": document.content,
        "issuing_organization": document.issuing_organization,
        "target_region": list(document.target_region),
        "target_industry": list(document.target_industry),
        "funding_type": document.funding_type,
        "source_system": document.source_system,
        "application_start_date": document.application_start_date.isoformat()
        if document.application_start_date else None,
        "application_end_date": document.application_end_date.isoformat() if document.application_end_date else None,
        "original_url": document.original_url,
        "quality_score": document.quality_score,
        "canonical_id": document.canonical_id,
        "status": "active",
        "version": document.version,
        "checksum": document.checksum,
        "sync_bucket": document.bucket,
        "sync_digest": document.digest,
        "sync_run_id": run_id,
    }


class SearchTarget(SyncTarget):
    name = "search"
    store_name = "elasticsearch"
    error_code = ErrorCode.ELASTICSEARCH_SYNC_FAILED

    def __init__(self, client: Elasticsearch, alias: str, analyzer: str) -> None:
        self._client = client
        self.alias = alias
        self._analyzer = analyzer
        self._write_index = alias  # the alias, or the new index during a rebuild
        self._rebuild_index: str | None = None

    @classmethod
    def open(cls, settings: Settings) -> SearchTarget:
        return cls(search.create_client(settings, timeout_seconds=60.0),
                   settings.elasticsearch_index, settings.elasticsearch_analyzer)

    def _new_index_name(self) -> str:
        return f"{self.alias}-v{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"

    def _create_index(self) -> str:
        name = self._new_index_name()
        self._client.indices.create(index=name, mappings=mapping(self._analyzer),
                                    settings=index_settings(self._analyzer))
        return name

    def setup(self) -> None:
        with self.guard("setup"):
            if not self._client.indices.exists_alias(name=self.alias):
                index = self._create_index()
                self._client.indices.update_aliases(actions=[{"add": {"index": index, "alias": self.alias}}])
                return
            mappings = self._client.indices.get_mapping(index=self.alias)
        live = {index: body["mappings"]["properties"]["title"].get("analyzer") for index, body in mappings.items()}
        if set(live.values()) != {self._analyzer}:
            # Writes still work (the live index analyses with its own analyzer); only a rebuild changes it.
            log.warning("search_analyzer_differs", live=live, configured=self._analyzer,
                        hint="run `aegis-pipeline sync rebuild --target search` to re-index with it")

    def live_indices(self) -> list[str]:
        with self.guard("read alias"):
            if not self._client.indices.exists_alias(name=self.alias):
                return []
            return sorted(self._client.indices.get_alias(name=self.alias).keys())

    def _bulk(self, actions: Iterator[dict[str, Any]], *, ignore_status: tuple[int, ...] = ()) -> None:
        helpers.bulk(self._client, actions, chunk_size=1000, max_chunk_bytes=20 * 1024 * 1024,
                     ignore_status=ignore_status, refresh=False)

    def upsert(self, batch: SyncBatch) -> None:
        if not batch.documents:
            return
        actions = ({"_op_type": "index", "_index": self._write_index, "_id": document.id,
                    "_source": to_source(document, batch.run_id)} for document in batch.documents)
        with self.guard("bulk upsert"):
            self._bulk(actions)

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        actions = ({"_op_type": "delete", "_index": self._write_index, "_id": policy_id} for policy_id in ids)
        with self.guard("bulk delete"):
            self._bulk(actions, ignore_status=(404,))

    def flush(self) -> None:
        with self.guard("refresh"):
            self._client.indices.refresh(index=self._write_index)

    def bucket_digests(self) -> dict[int, BucketDigest]:
        with self.guard("aggregate digests"):
            response = self._client.search(
                index=self.alias, size=0,
                aggs={"buckets": {"terms": {"field": "sync_bucket", "size": BUCKETS},
                                  "aggs": {"digest": {"sum": {"field": "sync_digest"}}}}},
            )
        return {int(bucket["key"]): BucketDigest(int(bucket["doc_count"]), round(bucket["digest"]["value"]))
                for bucket in response["aggregations"]["buckets"]["buckets"]}

    def checksums(self, buckets: Collection[int]) -> dict[str, str]:
        wanted = sorted(buckets)
        found: dict[str, str] = {}
        with self.guard("read checksums"):
            for start in range(0, len(wanted), _TERMS_CHUNK):
                query = {"query": {"terms": {"sync_bucket": wanted[start:start + _TERMS_CHUNK]}},
                         "_source": ["checksum"]}
                for hit in helpers.scan(self._client, index=self.alias, query=query, size=5000):
                    found[hit["_id"]] = hit["_source"]["checksum"]
        return found

    def search(self, query: str, limit: int, *, open_on: date | None = None) -> list[tuple[str, float]]:
        """(policy id, relevance score) of the `limit` best matches for `query` in the live index, best first;
        `open_on`: only programmes still open that day (no end date, or one on or after it)."""
        matched: dict[str, Any] = {"multi_match": {"query": query, "fields": SEARCH_FIELDS, "type": "most_fields"}}
        if open_on is not None:
            still_open = {"bool": {"minimum_should_match": 1, "should": [
                {"range": {"application_end_date": {"gte": open_on.isoformat()}}},
                {"bool": {"must_not": {"exists": {"field": "application_end_date"}}}}]}}
            matched = {"bool": {"must": matched, "filter": [still_open]}}
        with self.guard("search"):
            response = self._client.search(index=self.alias, size=limit, _source=False, query=matched)
        return [(hit["_id"], float(hit["_score"])) for hit in response["hits"]["hits"]]

    def begin_rebuild(self, run_id: str) -> None:
        with self.guard("create rebuild index"):
            self._rebuild_index = self._create_index()
        self._write_index = self._rebuild_index

    def finish_rebuild(self) -> None:
        if self._rebuild_index is None:
            raise RuntimeError("finish_rebuild without begin_rebuild")
        old = self.live_indices()
        with self.guard("swap alias"):
            self._client.indices.refresh(index=self._rebuild_index)
            actions: list[dict[str, Any]] = [{"remove": {"index": index, "alias": self.alias}} for index in old]
            actions.append({"add": {"index": self._rebuild_index, "alias": self.alias}})
            self._client.indices.update_aliases(actions=actions)
            for index in old:
                self._client.indices.delete(index=index, ignore_unavailable=True)
        self._rebuild_index, self._write_index = None, self.alias

    def abort_rebuild(self) -> None:
        if self._rebuild_index is not None:
            with self.guard("drop rebuild index"):
                self._client.indices.delete(index=self._rebuild_index, ignore_unavailable=True)
        self._rebuild_index, self._write_index = None, self.alias

    def close(self) -> None:
        self._client.close()
