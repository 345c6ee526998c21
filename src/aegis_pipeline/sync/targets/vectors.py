"""The vectors target: Milvus, one collection of policy embeddings behind an alias.

The alias (`MILVUS_COLLECTION`) names a collection `<alias>_v<stamp>`: the policy id is the primary key, beside
the embedding (COSINE index) sit the checksum, version, status, the consistency check's bucket and digest, and
fields to filter searches by (organisation, funding type, source, regions, industries, end of the application
period). A rebuild fills a new collection and moves the alias (`alter_alias`), so searches never go empty.

Each collection records the embedding model that filled it (the collection property `aegis.embedding_model`;
its dimension is the vector field's). Vectors of one model are only ever compared with vectors of the same
model: once `EMBEDDING_MODEL` names another model, upserts into the live collection fail (DP_3001) until
`sync rebuild --target vectors` has filled a collection with the new model and swapped it in.

Milvus cannot aggregate, so the consistency check reads each document's stored bucket and digest (two integers,
never vectors) in ranges of buckets that each fit one query, and (id, checksum) only in buckets that differ.
Counting instead (`count(*)` per range with the expected digests as an `in` filter) was slower on Milvus Lite.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime
from typing import Any

from pymilvus import DataType, MilvusClient, MilvusException

from aegis_pipeline.common.errors import ErrorCode, SyncFailedError
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import vectors
from aegis_pipeline.sync.digest import BUCKETS, BucketDigest, summarize_digests
from aegis_pipeline.sync.embeddings import packaged_model
from aegis_pipeline.sync.targets.base import SyncBatch, SyncDocument, SyncTarget

_QUERY_LIMIT = 16_384  # Milvus' largest offset + limit of one query
_ROWS_PER_QUERY = 12_000  # bucket ranges are sized for this many rows, well below the limit
_MAX_LIST = 32  # regions and industries kept per document
MODEL_PROPERTY = "aegis.embedding_model"


def _truncate(value: str | None, length: int) -> str:
    return (value or "")[:length]


class VectorsTarget(SyncTarget):
    name = "vectors"
    store_name = "milvus"
    error_code = ErrorCode.MILVUS_SYNC_FAILED
    needs_embeddings = True

    def __init__(self, client: MilvusClient, alias: str, model: str, dimension: int) -> None:
        self._client = client
        self.alias = alias
        self.model = model
        self._dimension = dimension
        self._write_collection = alias
        self._rebuild_collection: str | None = None
        self._live_model_checked = False  # once per opening: the alias moves only by a rebuild

    @classmethod
    def open(cls, settings: Settings) -> VectorsTarget:
        with cls.guard("connect"):
            client = vectors.create_client(settings, timeout_seconds=60.0)
        model = packaged_model(settings.embedding_model)
        target = cls(client, settings.milvus_collection, model.name, model.dimension)
        target._load_live_collection()
        return target

    def _load_live_collection(self) -> None:
        """A restarted Milvus comes back with its collections released (queries fail until loaded); loading a
        loaded collection is a no-op, so every opening loads it: sync, check and repair all recover by themselves."""
        live = self.live_collection()
        if live is not None:
            with self.guard("load collection"):
                self._client.load_collection(live)

    def _schema(self) -> Any:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self._dimension)
        schema.add_field("checksum", DataType.VARCHAR, max_length=64)
        schema.add_field("version", DataType.INT64)
        schema.add_field("status", DataType.VARCHAR, max_length=32)
        schema.add_field("sync_bucket", DataType.INT64)
        schema.add_field("sync_digest", DataType.INT64)
        schema.add_field("issuing_organization", DataType.VARCHAR, max_length=512)
        schema.add_field("funding_type", DataType.VARCHAR, max_length=128)
        schema.add_field("source_system", DataType.VARCHAR, max_length=128)
        schema.add_field("target_region", DataType.ARRAY, element_type=DataType.VARCHAR,
                         max_capacity=_MAX_LIST, max_length=128)
        schema.add_field("target_industry", DataType.ARRAY, element_type=DataType.VARCHAR,
                         max_capacity=_MAX_LIST, max_length=128)
        schema.add_field("application_end_date", DataType.VARCHAR, max_length=10)  # ISO date, "" if none
        return schema

    def _create_collection(self) -> str:
        name = f"{self.alias}_v{datetime.now(UTC):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:6]}"
        index = self._client.prepare_index_params()
        index.add_index("embedding", index_type="AUTOINDEX", metric_type="COSINE")
        self._client.create_collection(name, schema=self._schema(), index_params=index,
                                       properties={MODEL_PROPERTY: self.model})
        return name

    def live_collection(self) -> str | None:
        """The collection the alias names, or None before the first setup."""
        with self.guard("read alias"):
            for collection in self._client.list_collections():
                if not collection.startswith(f"{self.alias}_v"):
                    continue
                try:
                    aliases = self._client.list_aliases(collection_name=collection).get("aliases", [])
                except MilvusException:
                    if collection in self._client.list_collections():
                        raise
                    # A rebuild swapped the alias and dropped this collection since the listing: list again.
                    return self.live_collection()
                if self.alias in aliases:
                    return collection
        return None

    def live_model(self) -> tuple[str | None, int] | None:
        """(model, dimension) of the live collection, None before the first setup; the model is None for a
        collection made before collections recorded it."""
        live = self.live_collection()
        if live is None:
            return None
        try:
            with self.guard("describe collection"):
                description = self._client.describe_collection(live)
        except SyncFailedError:
            if self.live_collection() == live:
                raise
            # A rebuild swapped the alias and dropped this collection between the two reads: read the new one.
            return self.live_model()
        dimension = next(int(field["params"]["dim"]) for field in description["fields"] if field["name"] == "embedding")
        return description.get("properties", {}).get(MODEL_PROPERTY), dimension

    def _check_live_model(self) -> None:
        live = self.live_model()
        if live is not None and live != (self.model, self._dimension):
            model, dimension = live
            raise SyncFailedError(
                f"milvus: the live collection holds {model or 'unrecorded'} vectors ({dimension}-d) and "
                f"EMBEDDING_MODEL is {self.model} ({self._dimension}-d): run `aegis-pipeline sync rebuild "
                f"--target vectors` to re-encode into a new collection", code=self.error_code, target=self.name)

    def setup(self) -> None:
        if self.live_collection() is None:
            with self.guard("setup"):
                self._client.create_alias(self._create_collection(), self.alias)

    def _row(self, document: SyncDocument, embedding: Sequence[float]) -> dict[str, Any]:
        return {
            "id": document.id,
            "embedding": list(embedding),
            "checksum": document.checksum,
            "version": document.version,
            "status": "active",
            "sync_bucket": document.bucket,
            "sync_digest": document.digest,
            "issuing_organization": _truncate(document.issuing_organization, 512),
            "funding_type": _truncate(document.funding_type, 128),
            "source_system": _truncate(document.source_system, 128),
            "target_region": [_truncate(value, 128) for value in document.target_region[:_MAX_LIST]],
            "target_industry": [_truncate(value, 128) for value in document.target_industry[:_MAX_LIST]],
            "application_end_date": document.application_end_date.isoformat()
            if document.application_end_date else "",
        }

    def upsert(self, batch: SyncBatch) -> None:
        if not batch.documents:
            return
        missing = [document.id for document in batch.documents if document.id not in batch.embeddings]
        if missing:
            raise ValueError(f"{len(missing)} documents without an embedding, e.g. {missing[0]}")
        rows = [self._row(document, batch.embeddings[document.id]) for document in batch.documents]
        if self._rebuild_collection is None and not self._live_model_checked:
            self._check_live_model()
            self._live_model_checked = True
        with self.guard("upsert"):
            self._client.upsert(self._write_collection, rows)

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            with self.guard("delete"):
                self._client.delete(self._write_collection, ids=list(ids))

    def flush(self) -> None:
        with self.guard("flush"):
            self._client.flush(self._write_collection)

    def _count(self) -> int:
        rows = self._client.query(self.alias, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _read(self, filter_expression: str, fields: list[str]) -> list[dict[str, Any]]:
        rows = self._client.query(self.alias, filter=filter_expression, output_fields=fields, limit=_QUERY_LIMIT)
        if len(rows) < _QUERY_LIMIT:
            return rows
        iterator = self._client.query_iterator(self.alias, batch_size=10_000, filter=filter_expression,
                                               output_fields=fields)
        rows = []
        while page := iterator.next():
            rows.extend(page)
        iterator.close()
        return rows

    def _read_buckets(self, buckets: Sequence[int], fields: list[str]) -> list[dict[str, Any]]:
        """`fields` of the documents in `buckets` (sorted), in contiguous ranges that fit one query."""
        total = self._count()
        width = max(1, BUCKETS * _ROWS_PER_QUERY // max(total, 1))
        found: list[dict[str, Any]] = []
        start = 0
        while start < len(buckets):
            first = buckets[start]
            chunk = [bucket for bucket in buckets[start:] if bucket < first + width]
            start += len(chunk)
            if len(chunk) == chunk[-1] - first + 1:
                expression = f"sync_bucket >= {first} and sync_bucket <= {chunk[-1]}"
            else:
                expression = f"sync_bucket in {chunk}"
            found.extend(self._read(expression, fields))
        return found

    def bucket_digests(self) -> dict[int, BucketDigest]:
        # The stored bucket and digest (two integers) rather than the checksum: the same sums, less to read.
        with self.guard("read digests"):
            rows = self._read_buckets(list(range(BUCKETS)), ["sync_bucket", "sync_digest"])
        return summarize_digests((row["sync_bucket"], row["sync_digest"]) for row in rows)

    def checksums(self, buckets: Collection[int]) -> dict[str, str]:
        with self.guard("read checksums"):
            return {row["id"]: row["checksum"] for row in self._read_buckets(sorted(buckets), ["checksum"])}

    def search(self, embedding: Sequence[float], limit: int, *,
               open_on: date | None = None) -> list[tuple[str, float]]:
        """(policy id, cosine similarity) of the `limit` nearest documents in the live collection, best first;
        `open_on`: only programmes still open that day (no end date, or one on or after it: ISO dates compare as
        text)."""
        still_open = "" if open_on is None else (
            f'application_end_date == "" or application_end_date >= "{open_on.isoformat()}"')
        with self.guard("search"):
            hits = self._client.search(self.alias, data=[list(embedding)], anns_field="embedding", limit=limit,
                                       filter=still_open, search_params={"metric_type": "COSINE"},
                                       output_fields=["id"])
        return [(hit["id"], float(hit["distance"])) for hit in hits[0]]

    def begin_rebuild(self, run_id: str) -> None:
        with self.guard("create rebuild collection"):
            self._rebuild_collection = self._create_collection()
        self._write_collection = self._rebuild_collection

    def finish_rebuild(self) -> None:
        if self._rebuild_collection is None:
            raise RuntimeError("finish_rebuild without begin_rebuild")
        old = self.live_collection()
        with self.guard("swap alias"):
            self._client.flush(self._rebuild_collection)
            if old is None:
                self._client.create_alias(self._rebuild_collection, self.alias)
            else:
                self._client.alter_alias(self._rebuild_collection, self.alias)
                self._client.drop_collection(old)
        self._rebuild_collection, self._write_collection = None, self.alias

    def abort_rebuild(self) -> None:
        if self._rebuild_collection is not None:
            with self.guard("drop rebuild collection"):
                self._client.drop_collection(self._rebuild_collection)
        self._rebuild_collection, self._write_collection = None, self.alias

    def close(self) -> None:
        self._client.close()
