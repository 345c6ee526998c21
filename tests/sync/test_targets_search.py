"""`sync.targets.search` without Elasticsearch: the index settings (the `korean_bigram` analyzer), the mapping,
how a document becomes an indexed body, and the request bodies the target sends (search, aggregation, bulk, alias
swap), answered by a stand-in client that records what it is sent."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace
from typing import Any

import pytest

from aegis_pipeline.common.errors import ErrorCode, SyncFailedError
from aegis_pipeline.settings import Settings
from aegis_pipeline.sync.digest import BUCKETS, BucketDigest
from aegis_pipeline.sync.targets import search as search_target
from aegis_pipeline.sync.targets.base import SyncBatch
from aegis_pipeline.sync.targets.search import (
    KOREAN_BIGRAM,
    SEARCH_FIELDS,
    SearchTarget,
    index_settings,
    mapping,
    to_source,
)

# --- index settings and mapping ---------------------------------------------------------------------------------


def test_korean_bigram_index_settings_define_the_analyzer_with_standard_parts() -> None:
    assert KOREAN_BIGRAM == "korean_bigram"
    assert index_settings("korean_bigram") == {
        "index": {"number_of_shards": 1, "refresh_interval": "1s"},
        "analysis": {
            "tokenizer": {"korean_bigram": {"type": "ngram", "min_gram": 2, "max_gram": 2,
                                            "token_chars": ["letter", "digit"]}},
            "analyzer": {"korean_bigram": {"type": "custom", "tokenizer": "korean_bigram", "filter": ["lowercase"]}},
        },
    }


@pytest.mark.parametrize("analyzer", ["nori", "standard"])
def test_another_analyzer_is_the_clusters_own_and_defines_nothing(analyzer: str) -> None:
    assert index_settings(analyzer) == {"index": {"number_of_shards": 1, "refresh_interval": "1s"}}


@pytest.mark.parametrize("analyzer", ["korean_bigram", "nori"])
def test_the_text_fields_use_the_configured_analyzer(analyzer: str) -> None:
    properties = mapping(analyzer)["properties"]
    assert {name for name, field in properties.items() if field["type"] == "text"} == {
        "title", "content", "issuing_organization"}
    assert {properties[name]["analyzer"] for name in ("title", "content", "issuing_organization")} == {analyzer}
    assert properties["issuing_organization"]["fields"] == {"raw": {"type": "keyword"}}


def test_the_mapping_is_strict_and_types_the_consistency_fields() -> None:
    body = mapping("korean_bigram")
    assert body["dynamic"] == "strict"
    properties = body["properties"]
    assert properties["sync_bucket"] == {"type": "integer"}
    assert properties["sync_digest"] == {"type": "long"}  # up to 2**32 - 1: does not fit an integer
    assert properties["original_url"] == {"type": "keyword", "index": False}
    assert properties["application_end_date"] == {"type": "date"}
    assert properties["policy_id"] == properties["checksum"] == {"type": "keyword"}


def test_an_indexed_body_has_exactly_the_fields_of_the_strict_mapping(document) -> None:
    # `dynamic: strict` refuses a document with a field the mapping lacks: the two must stay in step.
    assert set(to_source(document(), "run-1")) == set(mapping("korean_bigram")["properties"])


# --- a document as an indexed body -----------------------------------------------------------------------------


def test_a_document_becomes_its_index_body(document) -> None:
    doc = document(id="p-1", version=4, checksum="0000002a" + "b" * 56, target_region=("서울", "부산"),
                   target_industry=("제조업",), application_start_date=date(2025, 3, 1),
                   application_end_date=date(2025, 4, 30), canonical_id="p-0", quality_score=0.87)
    body = to_source(doc, "sync-20250101T000000Z-abcdef12")
    assert body == {
        "policy_id": "p-1",
        "title": "스마트공장 구축 지원사업",
        "content": "중소기업의 스마트공장 구축을 지원합니다.",
        "issuing_organization": "중소벤처기업부",
        "target_region": ["서울", "부산"],
        "target_industry": ["제조업"],
        "funding_type": "보조금",
        "source_system": "bizinfo",
        "application_start_date": "2025-03-01",
        "application_end_date": "2025-04-30",
        "original_url": "https://www.bizinfo.go.kr/p/1",
        "quality_score": 0.87,
        "canonical_id": "p-0",
        "status": "active",
        "version": 4,
        "checksum": "0000002a" + "b" * 56,
        "sync_bucket": doc.bucket,
        "sync_digest": 42,
        "sync_run_id": "sync-20250101T000000Z-abcdef12",
    }


def test_the_whole_body_is_indexed_not_the_embedding_cap(document) -> None:
    content = "본문 " * 5000
    assert to_source(document(content=content), "r")["content"] == content


def test_missing_dates_and_lists_stay_empty(document) -> None:
    body = to_source(document(application_start_date=None, application_end_date=None, target_region=(),
                              target_industry=(), funding_type=None, original_url=None, quality_score=None), "r")
    assert body["application_start_date"] is None and body["application_end_date"] is None
    assert body["target_region"] == [] and body["target_industry"] == []
    assert body["funding_type"] is None and body["original_url"] is None and body["quality_score"] is None


# --- request bodies, with a stand-in client ---------------------------------------------------------------------


class FakeIndices:
    def __init__(self, aliases: dict[str, list[str]]) -> None:
        self.aliases = aliases  # alias -> indices behind it
        self.created: list[dict[str, Any]] = []
        self.alias_actions: list[list[dict[str, Any]]] = []
        self.deleted: list[str] = []
        self.refreshed: list[str] = []

    def exists_alias(self, name: str) -> bool:
        return bool(self.aliases.get(name))

    def get_alias(self, name: str) -> dict[str, Any]:
        return {index: {"aliases": {name: {}}} for index in self.aliases[name]}

    def create(self, index: str, mappings: dict[str, Any], settings: dict[str, Any]) -> None:
        self.created.append({"index": index, "mappings": mappings, "settings": settings})

    def update_aliases(self, actions: list[dict[str, Any]]) -> None:
        self.alias_actions.append(actions)

    def delete(self, index: str, ignore_unavailable: bool = False) -> None:
        self.deleted.append(index)

    def refresh(self, index: str) -> None:
        self.refreshed.append(index)


class FakeElasticsearch:
    def __init__(self, response: dict[str, Any] | None = None, aliases: dict[str, list[str]] | None = None) -> None:
        self.indices = FakeIndices(aliases or {})
        self.response = response or {}
        self.searches: list[dict[str, Any]] = []

    def search(self, **request: Any) -> dict[str, Any]:
        self.searches.append(request)
        if isinstance(self.response, Exception):
            raise self.response
        return self.response

    def close(self) -> None:
        pass


def test_a_users_query_runs_against_title_weighted_body_and_organisation() -> None:
    client = FakeElasticsearch({"hits": {"hits": [{"_id": "p-2", "_score": 7.5}, {"_id": "p-1", "_score": 3}]}})
    target = SearchTarget(client, "aegis-policies", "korean_bigram")  # type: ignore[arg-type]
    assert target.search("스마트공장 지원", 5) == [("p-2", 7.5), ("p-1", 3.0)]
    assert client.searches == [{
        "index": "aegis-policies", "size": 5, "_source": False,
        "query": {"multi_match": {"query": "스마트공장 지원", "fields": ["title^3", "content", "issuing_organization"],
                                  "type": "most_fields"}},
    }]
    assert SEARCH_FIELDS == ["title^3", "content", "issuing_organization"]


def test_bucket_digests_are_one_terms_aggregation_with_a_sum_read_back_as_integers() -> None:
    client = FakeElasticsearch({"aggregations": {"buckets": {"buckets": [
        {"key": 17, "doc_count": 2, "digest": {"value": 8589934590.0}},   # 2 * (2**32 - 1), exact in a double
        {"key": 3, "doc_count": 1, "digest": {"value": 42.0}},
    ]}}})
    target = SearchTarget(client, "aegis-policies", "korean_bigram")  # type: ignore[arg-type]
    digests = target.bucket_digests()
    assert digests == {17: BucketDigest(2, 8589934590), 3: BucketDigest(1, 42)}
    assert all(type(digest.total) is int for digest in digests.values())
    assert client.searches == [{
        "index": "aegis-policies", "size": 0,
        "aggs": {"buckets": {"terms": {"field": "sync_bucket", "size": BUCKETS},
                             "aggs": {"digest": {"sum": {"field": "sync_digest"}}}}},
    }]


def test_an_engine_failure_becomes_dp_3003() -> None:
    target = SearchTarget(FakeElasticsearch(ConnectionError("refused")), "a", "nori")  # type: ignore[arg-type]
    with pytest.raises(SyncFailedError) as caught:
        target.search("q", 1)
    assert caught.value.code is ErrorCode.ELASTICSEARCH_SYNC_FAILED
    assert "elasticsearch search failed: ConnectionError: refused" in str(caught.value)


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Stand-in for `elasticsearch.helpers` as the search target uses it; records bulk actions and scan queries."""
    recorded = SimpleNamespace(bulks=[], scans=[], hits=[])

    def bulk(client: Any, actions: Any, **options: Any) -> None:
        recorded.bulks.append({"actions": list(actions), **options})

    def scan(client: Any, *, index: str, query: dict[str, Any], size: int) -> Any:
        recorded.scans.append({"index": index, "query": query})
        wanted = set(query["query"]["terms"]["sync_bucket"])
        return [hit for bucket, hit in recorded.hits if bucket in wanted]

    monkeypatch.setattr(search_target, "helpers", SimpleNamespace(bulk=bulk, scan=scan))
    return recorded


def test_checksums_are_read_512_buckets_per_terms_query_in_order(helpers: SimpleNamespace) -> None:
    helpers.hits = [(5, {"_id": "p-5", "_source": {"checksum": "c5"}}),
                    (700, {"_id": "p-700", "_source": {"checksum": "c700"}}),
                    (900, {"_id": "p-900", "_source": {"checksum": "c900"}})]
    target = SearchTarget(FakeElasticsearch(), "aegis-policies", "nori")  # type: ignore[arg-type]
    found = target.checksums(set(range(1000)) - {900})
    assert found == {"p-5": "c5", "p-700": "c700"}
    assert [scan["query"]["query"]["terms"]["sync_bucket"] for scan in helpers.scans] == [
        list(range(512)), [bucket for bucket in range(512, 1000) if bucket != 900]]
    assert all(scan["query"]["_source"] == ["checksum"] and scan["index"] == "aegis-policies"
               for scan in helpers.scans)


def test_upsert_indexes_each_document_by_id_into_the_alias(helpers: SimpleNamespace, document) -> None:
    target = SearchTarget(FakeElasticsearch(), "aegis-policies", "nori")  # type: ignore[arg-type]
    docs = [document(id="p-1"), document(id="p-2", title="두 번째")]
    target.upsert(SyncBatch("run-7", docs, {}))
    [bulk] = helpers.bulks
    assert [(a["_op_type"], a["_index"], a["_id"]) for a in bulk["actions"]] == [
        ("index", "aegis-policies", "p-1"), ("index", "aegis-policies", "p-2")]
    assert bulk["actions"][1]["_source"] == to_source(docs[1], "run-7")
    assert bulk["refresh"] is False and bulk["ignore_status"] == ()


def test_delete_ignores_ids_that_are_not_there(helpers: SimpleNamespace) -> None:
    target = SearchTarget(FakeElasticsearch(), "aegis-policies", "nori")  # type: ignore[arg-type]
    target.delete(["p-1", "p-9"])
    target.delete([])
    assert helpers.bulks == [{"actions": [{"_op_type": "delete", "_index": "aegis-policies", "_id": "p-1"},
                                          {"_op_type": "delete", "_index": "aegis-policies", "_id": "p-9"}],
                              "chunk_size": 1000, "max_chunk_bytes": 20 * 1024 * 1024, "ignore_status": (404,),
                              "refresh": False}]


def test_setup_creates_a_versioned_index_with_the_configured_analyzer_behind_the_alias() -> None:
    client = FakeElasticsearch()
    SearchTarget(client, "aegis-policies", "korean_bigram").setup()  # type: ignore[arg-type]
    [created] = client.indices.created
    assert created["index"].startswith("aegis-policies-v")
    assert created["mappings"] == mapping("korean_bigram")
    assert created["settings"] == index_settings("korean_bigram")
    assert client.indices.alias_actions == [[{"add": {"index": created["index"], "alias": "aegis-policies"}}]]


def test_a_rebuild_writes_a_new_index_then_swaps_the_alias_in_one_call(helpers: SimpleNamespace, document) -> None:
    client = FakeElasticsearch(aliases={"aegis-policies": ["aegis-policies-v1", "aegis-policies-v0"]})
    target = SearchTarget(client, "aegis-policies", "nori")  # type: ignore[arg-type]
    target.begin_rebuild("rebuild-1")
    [created] = client.indices.created
    new_index = created["index"]
    assert created["settings"] == index_settings("nori") and created["mappings"] == mapping("nori")
    target.upsert(SyncBatch("rebuild-1", [document(id="p-1")], {}))
    assert helpers.bulks[0]["actions"][0]["_index"] == new_index  # not the live alias
    target.finish_rebuild()
    assert client.indices.refreshed == [new_index]
    assert client.indices.alias_actions == [[
        {"remove": {"index": "aegis-policies-v0", "alias": "aegis-policies"}},
        {"remove": {"index": "aegis-policies-v1", "alias": "aegis-policies"}},
        {"add": {"index": new_index, "alias": "aegis-policies"}},
    ]]
    assert client.indices.deleted == ["aegis-policies-v0", "aegis-policies-v1"]
    target.upsert(SyncBatch("sync-2", [document(id="p-2")], {}))
    assert helpers.bulks[1]["actions"][0]["_index"] == "aegis-policies"  # back to the alias


def test_an_aborted_rebuild_drops_its_index_and_writes_to_the_alias_again(helpers: SimpleNamespace, document) -> None:
    client = FakeElasticsearch(aliases={"aegis-policies": ["aegis-policies-v0"]})
    target = SearchTarget(client, "aegis-policies", "nori")  # type: ignore[arg-type]
    target.begin_rebuild("rebuild-1")
    new_index = client.indices.created[0]["index"]
    target.abort_rebuild()
    assert client.indices.deleted == [new_index]
    assert client.indices.alias_actions == []
    target.flush()
    assert client.indices.refreshed == ["aegis-policies"]
    with pytest.raises(RuntimeError, match="finish_rebuild without begin_rebuild"):
        target.finish_rebuild()


def test_the_alias_and_analyzer_come_from_the_settings() -> None:
    settings = Settings(postgres_host="db", postgres_user="u", postgres_db="aegis", kafka_bootstrap_servers="k:9092",
                        redis_url="redis://r:6379/0", milvus_uri="http://m:19530", graph_uri="/tmp/graph",
                        elasticsearch_url="http://127.0.0.1:9", elasticsearch_index="policies-test",
                        elasticsearch_analyzer="nori")
    target = SearchTarget.open(settings)  # builds a client; nothing is sent
    try:
        assert target.alias == "policies-test"
        assert target._analyzer == "nori"
    finally:
        target.close()
    assert Settings.model_fields["elasticsearch_analyzer"].default == KOREAN_BIGRAM
