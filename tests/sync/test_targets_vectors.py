"""`sync.targets.vectors` without Milvus: the row a document becomes, the refusal of documents without an
embedding or of another model's collection, which collection the alias names, and how the consistency check
reads buckets in ranges that fit one query, answered by a stand-in client."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import numpy as np
import pytest
from pymilvus import MilvusException

from aegis_pipeline.common.errors import ErrorCode, SyncFailedError
from aegis_pipeline.sync.digest import BUCKETS, BucketDigest
from aegis_pipeline.sync.targets.base import SyncBatch
from aegis_pipeline.sync.targets.vectors import _QUERY_LIMIT, MODEL_PROPERTY, VectorsTarget

MODEL, DIMENSION = "use-multilingual-v3", 512
_RANGE = re.compile(r"^sync_bucket >= (\d+) and sync_bucket <= (\d+)$")
_IN = re.compile(r"^sync_bucket in \[([\d, ]+)\]$")


def _in_filter(expression: str, bucket: int) -> bool:
    if match := _RANGE.match(expression):
        return int(match[1]) <= bucket <= int(match[2])
    if match := _IN.match(expression):
        return bucket in {int(value) for value in match[1].split(",")}
    raise AssertionError(f"unexpected filter {expression!r}")


class FakeMilvus:
    """Collections, aliases and rows in memory; evaluates the two filter forms the target writes."""

    def __init__(self, *, collections: dict[str, list[str]] | None = None, model: str | None = MODEL,
                 dimension: int = DIMENSION, rows: list[dict[str, Any]] | None = None,
                 count: int | None = None) -> None:
        self.collections = collections or {}  # name -> aliases
        self.description = {"fields": [{"name": "id", "params": {"max_length": 64}},
                                       {"name": "embedding", "params": {"dim": str(dimension)}}],
                            "properties": {MODEL_PROPERTY: model} if model else {}}
        self.rows = rows or []
        self.count = len(self.rows) if count is None else count
        self.filters: list[str] = []
        self.upserts: list[tuple[str, list[dict[str, Any]]]] = []
        self.aliases_created: list[tuple[str, str]] = []
        self.aliases_altered: list[tuple[str, str]] = []
        self.dropped: list[str] = []
        self.flushed: list[str] = []

    def list_collections(self) -> list[str]:
        return list(self.collections)

    def list_aliases(self, collection_name: str) -> dict[str, Any]:
        return {"aliases": self.collections[collection_name]}

    def describe_collection(self, name: str) -> dict[str, Any]:
        return self.description

    def query(self, collection: str, filter: str, output_fields: list[str], limit: int | None = None) -> list[Any]:
        if output_fields == ["count(*)"]:
            return [{"count(*)": self.count}]
        self.filters.append(filter)
        # Milvus returns the primary key beside the fields asked for
        return [{field: row[field] for field in ["id", *output_fields] if field in row} for row in self.rows
                if _in_filter(filter, row["sync_bucket"])]

    def upsert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        self.upserts.append((collection, rows))

    def flush(self, collection: str) -> None:
        self.flushed.append(collection)

    def prepare_index_params(self) -> Any:
        class Index:
            def add_index(self, *args: Any, **kwargs: Any) -> None:
                pass
        return Index()

    def create_collection(self, name: str, **options: Any) -> None:
        self.collections[name] = []
        self.created_properties = options["properties"]

    def create_alias(self, collection: str, alias: str) -> None:
        self.aliases_created.append((collection, alias))

    def alter_alias(self, collection: str, alias: str) -> None:
        self.aliases_altered.append((collection, alias))

    def drop_collection(self, name: str) -> None:
        self.dropped.append(name)


def _target(client: Any, model: str = MODEL, dimension: int = DIMENSION) -> VectorsTarget:
    return VectorsTarget(client, "aegis_policies", model, dimension)


class Untouchable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the client was used ({name})")


# --- the row of a document ---------------------------------------------------------------------------------------


def test_a_document_becomes_its_row_beside_its_embedding(document) -> None:
    doc = document(id="p-1", version=5, checksum="0000002a" + "b" * 56, application_end_date=date(2025, 4, 30))
    row = _target(Untouchable())._row(doc, np.array([0.5, -0.25, 0.0], dtype=np.float32))
    assert row == {
        "id": "p-1",
        "embedding": [0.5, -0.25, 0.0],
        "checksum": "0000002a" + "b" * 56,
        "version": 5,
        "status": "active",
        "sync_bucket": doc.bucket,
        "sync_digest": 42,
        "issuing_organization": "중소벤처기업부",
        "funding_type": "보조금",
        "source_system": "bizinfo",
        "target_region": ["서울", "부산"],
        "target_industry": ["제조업"],
        "application_end_date": "2025-04-30",
    }
    assert type(row["embedding"]) is list


def test_a_row_fits_the_collections_field_limits(document) -> None:
    doc = document(issuing_organization="기" * 600, funding_type="f" * 200, source_system="s" * 130,
                   target_region=tuple(f"지역{n}-" + "x" * 200 for n in range(40)),
                   target_industry=tuple(f"업종{n}" for n in range(33)))
    row = _target(Untouchable())._row(doc, [0.0])
    assert row["issuing_organization"] == "기" * 512
    assert row["funding_type"] == "f" * 128
    assert row["source_system"] == "s" * 128
    assert len(row["target_region"]) == 32 and all(len(value) == 128 for value in row["target_region"])
    assert row["target_region"][31].startswith("지역31-")
    assert row["target_industry"] == [f"업종{n}" for n in range(32)]


def test_missing_values_become_empty_strings_in_a_row(document) -> None:
    row = _target(Untouchable())._row(document(funding_type=None, application_end_date=None, target_region=()), [1.0])
    assert row["funding_type"] == ""
    assert row["application_end_date"] == ""
    assert row["target_region"] == []


# --- upserts -----------------------------------------------------------------------------------------------------


def test_a_document_without_an_embedding_is_refused_before_anything_is_written(document) -> None:
    batch = SyncBatch("run-1", [document(id="p-1"), document(id="p-2"), document(id="p-3")], {"p-2": [0.1]})
    with pytest.raises(ValueError, match=r"^2 documents without an embedding, e\.g\. p-1$"):
        _target(Untouchable()).upsert(batch)


def test_an_empty_batch_writes_nothing() -> None:
    _target(Untouchable()).upsert(SyncBatch("run-1", [], {}))


def test_upserts_go_to_the_alias_once_the_live_collection_is_of_the_configured_model(document) -> None:
    client = FakeMilvus(collections={"aegis_policies_v1": ["aegis_policies"]})
    target = _target(client)
    target.upsert(SyncBatch("run-1", [document(id="p-1")], {"p-1": [0.25] * 3}))
    [(collection, rows)] = client.upserts
    assert collection == "aegis_policies"
    assert [row["id"] for row in rows] == ["p-1"] and rows[0]["embedding"] == [0.25, 0.25, 0.25]


@pytest.mark.parametrize(("model", "dimension", "shown"), [
    ("another-model", 768, "holds another-model vectors (768-d)"),
    (None, 512, "holds unrecorded vectors (512-d)"),
    (MODEL, 768, "holds use-multilingual-v3 vectors (768-d)"),
])
def test_upserting_into_another_models_collection_fails_with_dp_3001(document, model: str | None, dimension: int,
                                                                     shown: str) -> None:
    client = FakeMilvus(collections={"aegis_policies_v1": ["aegis_policies"]}, model=model, dimension=dimension)
    with pytest.raises(SyncFailedError) as caught:
        _target(client).upsert(SyncBatch("run-1", [document(id="p-1")], {"p-1": [0.1]}))
    assert caught.value.code is ErrorCode.MILVUS_SYNC_FAILED
    assert shown in str(caught.value)
    assert "EMBEDDING_MODEL is use-multilingual-v3 (512-d)" in str(caught.value)
    assert "sync rebuild --target vectors" in str(caught.value)
    assert client.upserts == []


def test_a_rebuild_writes_the_configured_model_into_a_new_collection_whatever_the_live_one_holds(document) -> None:
    client = FakeMilvus(collections={"aegis_policies_v1": ["aegis_policies"]}, model="old-model", dimension=768)
    target = _target(client)
    target.begin_rebuild("rebuild-1")
    new = next(name for name in client.collections if name != "aegis_policies_v1")
    assert new.startswith("aegis_policies_v") and client.created_properties == {MODEL_PROPERTY: MODEL}
    target.upsert(SyncBatch("rebuild-1", [document(id="p-1")], {"p-1": [0.1]}))
    assert [collection for collection, _ in client.upserts] == [new]
    target.finish_rebuild()
    assert client.flushed == [new]
    assert client.aliases_altered == [(new, "aegis_policies")] and client.dropped == ["aegis_policies_v1"]
    assert client.aliases_created == []


def test_the_first_rebuild_creates_the_alias() -> None:
    client = FakeMilvus()
    target = _target(client)
    target.begin_rebuild("rebuild-1")
    [new] = client.collections
    target.finish_rebuild()
    assert client.aliases_created == [(new, "aegis_policies")] and client.dropped == []


def test_an_aborted_rebuild_drops_its_collection_only() -> None:
    client = FakeMilvus(collections={"aegis_policies_v1": ["aegis_policies"]})
    target = _target(client)
    target.begin_rebuild("rebuild-1")
    new = next(name for name in client.collections if name != "aegis_policies_v1")
    target.abort_rebuild()
    assert client.dropped == [new]
    with pytest.raises(RuntimeError, match="finish_rebuild without begin_rebuild"):
        target.finish_rebuild()


# --- the live collection -----------------------------------------------------------------------------------------


def test_the_live_collection_is_the_versioned_one_the_alias_names() -> None:
    client = FakeMilvus(collections={"other_v1": ["aegis_policies"], "aegis_policies_v1": [],
                                     "aegis_policies_v2": ["aegis_policies"], "aegis_policies": []})
    assert _target(client).live_collection() == "aegis_policies_v2"
    assert _target(FakeMilvus(collections={"aegis_policies_v1": []})).live_collection() is None


def test_the_live_model_and_dimension_are_read_from_the_collection() -> None:
    live = {"aegis_policies_v1": ["aegis_policies"]}
    assert _target(FakeMilvus(collections=live)).live_model() == (MODEL, 512)
    assert _target(FakeMilvus(collections=live, model=None, dimension=384)).live_model() == (None, 384)
    assert _target(FakeMilvus()).live_model() is None


class SwappedMidRead(FakeMilvus):
    """A rebuild finishes while the target reads: at the first call of `during` on the live collection, the alias
    moves to a new 384-d collection and the old one is gone, so that read raises what Milvus raises."""

    def __init__(self, during: str) -> None:
        super().__init__(collections={"aegis_policies_v1": ["aegis_policies"]})
        self.during = during

    def _reading(self, method: str, name: str) -> None:
        if method == self.during and name == "aegis_policies_v1" and name in self.collections:
            self.collections = {"aegis_policies_v2": ["aegis_policies"]}
            self.description = {**self.description, "fields": [{"name": "embedding", "params": {"dim": "384"}}]}
        if name not in self.collections:
            raise MilvusException(code=100, message=f"collection '{name}' does not exist")

    def list_aliases(self, collection_name: str) -> dict[str, Any]:
        self._reading("list_aliases", collection_name)
        return super().list_aliases(collection_name)

    def describe_collection(self, name: str) -> dict[str, Any]:
        self._reading("describe_collection", name)
        return super().describe_collection(name)


@pytest.mark.parametrize("during", ["list_aliases", "describe_collection"])
def test_a_rebuild_swapping_the_alias_mid_read_gives_the_new_live_model_not_an_error(during: str) -> None:
    assert _target(SwappedMidRead(during)).live_model() == (MODEL, 384)


def test_a_failure_reading_the_still_live_collection_is_dp_3001() -> None:
    class Broken(FakeMilvus):
        def describe_collection(self, name: str) -> dict[str, Any]:
            raise MilvusException(code=100, message="collection not loaded")

    with pytest.raises(SyncFailedError) as caught:
        _target(Broken(collections={"aegis_policies_v1": ["aegis_policies"]})).live_model()
    assert caught.value.code is ErrorCode.MILVUS_SYNC_FAILED


# --- reading buckets for the consistency check -------------------------------------------------------------------


def test_a_small_collection_is_read_in_one_range() -> None:
    client = FakeMilvus(count=10)
    _target(client).bucket_digests()
    assert client.filters == [f"sync_bucket >= 0 and sync_bucket <= {BUCKETS - 1}"]


def test_a_large_collection_is_read_in_ranges_of_about_12000_rows() -> None:
    client = FakeMilvus(count=BUCKETS * 12_000 // 100)  # 100 buckets hold about 12,000 rows
    _target(client).bucket_digests()
    assert client.filters == [f"sync_bucket >= {start} and sync_bucket <= {min(start + 99, BUCKETS - 1)}"
                              for start in range(0, BUCKETS, 100)]


def test_scattered_buckets_are_read_with_in_lists_and_contiguous_ones_with_ranges() -> None:
    client = FakeMilvus(count=BUCKETS * 12_000 // 100, rows=[
        {"id": "p-3", "checksum": "c3", "sync_bucket": 3}, {"id": "p-4", "checksum": "c4", "sync_bucket": 4},
        {"id": "p-6", "checksum": "c6", "sync_bucket": 6}, {"id": "p-250", "checksum": "c250", "sync_bucket": 250},
        {"id": "p-251", "checksum": "c251", "sync_bucket": 251}, {"id": "p-7", "checksum": "c7", "sync_bucket": 7},
    ])
    assert _target(client).checksums({250, 6, 3, 102, 251}) == {"p-3": "c3", "p-6": "c6", "p-250": "c250",
                                                                "p-251": "c251"}
    assert client.filters == ["sync_bucket in [3, 6, 102]", "sync_bucket >= 250 and sync_bucket <= 251"]


def test_bucket_digests_sum_the_stored_bucket_and_digest_of_each_row() -> None:
    client = FakeMilvus(rows=[{"sync_bucket": 9, "sync_digest": 2**32 - 1}, {"sync_bucket": 9, "sync_digest": 1},
                              {"sync_bucket": 1000, "sync_digest": 42}])
    assert _target(client).bucket_digests() == {9: BucketDigest(2, 2**32), 1000: BucketDigest(1, 42)}


def test_a_range_at_the_query_limit_is_read_again_with_an_iterator() -> None:
    class FullPages(FakeMilvus):
        def query(self, collection: str, filter: str, output_fields: list[str], limit: int | None = None) -> list[Any]:
            if output_fields == ["count(*)"]:
                return [{"count(*)": 10_000}]  # one range of buckets
            assert limit == _QUERY_LIMIT
            return [{"sync_bucket": 0, "sync_digest": 1}] * _QUERY_LIMIT

        def query_iterator(self, collection: str, batch_size: int, filter: str, output_fields: list[str]) -> Any:
            pages = [[{"sync_bucket": 0, "sync_digest": 1}] * 10_000, [{"sync_bucket": 1, "sync_digest": 2}] * 10_000,
                     []]

            class Iterator:
                closed = False

                def next(self) -> list[dict[str, Any]]:
                    return pages.pop(0)

                def close(self) -> None:
                    Iterator.closed = True
            self.iterator = Iterator
            return Iterator()

    client = FullPages()
    assert _target(client).bucket_digests() == {0: BucketDigest(10_000, 10_000), 1: BucketDigest(10_000, 20_000)}
    assert client.iterator.closed


def test_an_engine_failure_while_reading_becomes_dp_3001() -> None:
    class Broken(FakeMilvus):
        def query(self, *args: Any, **kwargs: Any) -> list[Any]:
            raise TimeoutError("deadline exceeded")

    with pytest.raises(SyncFailedError) as caught:
        _target(Broken()).checksums([1])
    assert caught.value.code is ErrorCode.MILVUS_SYNC_FAILED
    assert "milvus read checksums failed: TimeoutError: deadline exceeded" in str(caught.value)
