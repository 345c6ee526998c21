"""The graph target: Neo4j in production, the embedded engine (Ladybug) locally, the same Cypher for both.

Policy nodes (id, title, version, checksum, the consistency check's bucket and digest, ...) linked to
Organization (ISSUED_BY), Region (TARGETS_REGION), Industry (IN_INDUSTRY), FundingType (HAS_FUNDING_TYPE) and
Source (COLLECTED_FROM) nodes, and to the canonical policy they repeat (DUPLICATE_OF, from the cold path's
`policy_duplicates`). Upserting a policy replaces its outgoing relationships; incoming DUPLICATE_OF links are
re-linked from the duplicates' side, so a canonical policy that comes back finds its duplicates again.

Each Policy node also keeps how many of those five links it was written with (`link_count`): the consistency check
counts them again, and a policy whose links are not all there is stale like one with another checksum, so repair
writes it again. (DUPLICATE_OF is left out: it depends on whether the other policy is in the graph.)

A graph has no alias to swap: a rebuild rewrites every active policy in place, stamped with the rebuild's run id,
then deletes the Policy nodes the rebuild did not write (mark and sweep), so the graph never goes empty.
The embedded engine allows one writer process: the sync opens the store once per run and closes it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from common.errors import ErrorCode
from settings import Settings
from stores.graph import GraphStore, open_graph_store
from sync.digest import BucketDigest
from sync.targets.base import SyncBatch, SyncDocument, SyncTarget

POLICY_PROPERTIES = {
    "id": "STRING", "title": "STRING", "issuing_organization": "STRING", "funding_type": "STRING",
    "source_system": "STRING", "application_start_date": "STRING", "application_end_date": "STRING",
    "original_url": "STRING", "quality_score": "DOUBLE", "status": "STRING", "version": "INT64",
    "checksum": "STRING", "sync_bucket": "INT64", "sync_digest": "INT64", "sync_run_id": "STRING",
    "link_count": "INT64",
}
# label of the linked node, relationship type, how to read the linked names off a document
LINKS: list[tuple[str, str, Any]] = [
    ("Organization", "ISSUED_BY", lambda document: [document.issuing_organization]),
    ("Region", "TARGETS_REGION", lambda document: list(document.target_region)),
    ("Industry", "IN_INDUSTRY", lambda document: list(document.target_industry)),
    ("FundingType", "HAS_FUNDING_TYPE", lambda document: [document.funding_type] if document.funding_type else []),
    ("Source", "COLLECTED_FROM", lambda document: [document.source_system]),
]

UPSERT_POLICIES = """
UNWIND $rows AS r
MERGE (p:Policy {id: r.id})
SET p.title = r.title, p.issuing_organization = r.issuing_organization, p.funding_type = r.funding_type,
    p.source_system = r.source_system, p.application_start_date = r.application_start_date,
    p.application_end_date = r.application_end_date, p.original_url = r.original_url,
    p.quality_score = r.quality_score, p.status = r.status, p.version = r.version, p.checksum = r.checksum,
    p.sync_bucket = r.sync_bucket, p.sync_digest = r.sync_digest, p.sync_run_id = r.sync_run_id,
    p.link_count = r.link_count
"""
DELETE_OUTGOING = "MATCH (p:Policy)-[e]->() WHERE p.id IN $ids DELETE e"
LINK_DUPLICATES = """
UNWIND $pairs AS r MATCH (d:Policy {id: r.duplicate}), (c:Policy {id: r.canonical}) MERGE (d)-[:DUPLICATE_OF]->(c)
"""
DELETE_POLICIES = "UNWIND $ids AS i MATCH (p:Policy {id: i}) DETACH DELETE p"
# A policy's links as written are all there (`link_count` is null on nodes written before it existed: not checked).
_LINKS_COUNTED = f"""
OPTIONAL MATCH (p)-[link:{'|'.join(rel_type for _, rel_type, _ in LINKS)}]->()
WITH p, count(link) AS links
WITH p, p.link_count IS NULL OR links = p.link_count AS links_intact
"""
BUCKET_DIGESTS = ("MATCH (p:Policy)" + _LINKS_COUNTED + "RETURN p.sync_bucket AS bucket, count(*) AS n, "
                  "sum(p.sync_digest) AS total, sum(CASE WHEN links_intact THEN 0 ELSE 1 END) AS broken")
CHECKSUMS = ("MATCH (p:Policy) WHERE p.sync_bucket IN $buckets" + _LINKS_COUNTED + "RETURN p.id AS id, "
             "CASE WHEN links_intact THEN p.checksum ELSE p.checksum + ':links-missing' END AS checksum")
SWEEP = "MATCH (p:Policy) WHERE p.sync_run_id IS NULL OR p.sync_run_id <> $run_id DETACH DELETE p"


def _links(document: SyncDocument) -> list[tuple[str, str, str]]:
    """(label, relationship type, name) of each node the policy links to, each once."""
    return [(label, rel_type, name) for label, rel_type, names_of in LINKS
            for name in dict.fromkeys(names_of(document)) if name]


def _row(document: SyncDocument, run_id: str) -> dict[str, Any]:
    return {
        "id": document.id, "title": document.title, "issuing_organization": document.issuing_organization,
        "funding_type": document.funding_type, "source_system": document.source_system,
        "application_start_date": document.application_start_date.isoformat()
        if document.application_start_date else None,
        "application_end_date": document.application_end_date.isoformat() if document.application_end_date else None,
        "original_url": document.original_url, "quality_score": document.quality_score, "status": "active",
        "version": document.version, "checksum": document.checksum, "sync_bucket": document.bucket,
        "sync_digest": document.digest, "sync_run_id": run_id, "link_count": len(_links(document)),
    }


class GraphTarget(SyncTarget):
    name = "graph"
    store_name = "neo4j"
    error_code = ErrorCode.NEO4J_SYNC_FAILED

    def __init__(self, store: GraphStore) -> None:
        self._store = store
        self._rebuild_run_id: str | None = None

    @classmethod
    def open(cls, settings: Settings) -> GraphTarget:
        with cls.guard("open"):
            return cls(open_graph_store(settings))

    def setup(self) -> None:
        with self.guard("setup"):
            self._store.ensure_node_type("Policy", "id", POLICY_PROPERTIES)
            for label, rel_type, _ in LINKS:
                self._store.ensure_node_type(label, "name", {"name": "STRING"})
                self._store.ensure_relationship_type(rel_type, "Policy", label)
            self._store.ensure_relationship_type("DUPLICATE_OF", "Policy", "Policy")

    def upsert(self, batch: SyncBatch) -> None:
        documents = batch.documents
        if not documents:
            return
        ids = [document.id for document in documents]
        with self.guard("upsert"):
            self._store.run(UPSERT_POLICIES, {"rows": [_row(document, batch.run_id) for document in documents]})
            self._store.run(DELETE_OUTGOING, {"ids": ids})
            links = [(document.id, link) for document in documents for link in _links(document)]
            for label, rel_type, _ in LINKS:
                pairs = [{"id": policy_id, "name": name} for policy_id, (link_label, _, name) in links
                         if link_label == label]
                if not pairs:
                    continue
                self._store.run(f"UNWIND $names AS name MERGE (:{label} {{name: name}})",
                                {"names": sorted({pair["name"] for pair in pairs})})
                self._store.run(f"UNWIND $pairs AS r MATCH (p:Policy {{id: r.id}}), (x:{label} {{name: r.name}}) "
                                f"CREATE (p)-[:{rel_type}]->(x)", {"pairs": pairs})
            duplicate_pairs = [{"duplicate": document.id, "canonical": document.canonical_id}
                               for document in documents if document.canonical_id]
            duplicate_pairs += [{"duplicate": duplicate_id, "canonical": document.id}
                                for document in documents for duplicate_id in document.duplicate_ids]
            if duplicate_pairs:
                self._store.run(LINK_DUPLICATES, {"pairs": duplicate_pairs})

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            with self.guard("delete"):
                self._store.run(DELETE_POLICIES, {"ids": list(ids)})

    def flush(self) -> None:
        pass  # each statement is committed when it returns

    def bucket_digests(self) -> dict[int, BucketDigest]:
        with self.guard("aggregate digests"):
            rows = self._store.run(BUCKET_DIGESTS)
        # A bucket holding a policy with links missing differs (as its `checksums` show that policy stale).
        return {int(row["bucket"]): BucketDigest(int(row["n"]), int(row["total"]) + int(row["broken"]))
                for row in rows}

    def checksums(self, buckets: Collection[int]) -> dict[str, str]:
        with self.guard("read checksums"):
            rows = self._store.run(CHECKSUMS, {"buckets": sorted(buckets)})
        return {row["id"]: row["checksum"] for row in rows}

    def begin_rebuild(self, run_id: str) -> None:
        self._rebuild_run_id = run_id

    def finish_rebuild(self) -> None:
        if self._rebuild_run_id is None:
            raise RuntimeError("finish_rebuild without begin_rebuild")
        with self.guard("sweep"):
            self._store.run(SWEEP, {"run_id": self._rebuild_run_id})
        self._rebuild_run_id = None

    def abort_rebuild(self) -> None:
        self._rebuild_run_id = None  # what was rewritten is current data; nothing to undo

    def close(self) -> None:
        self._store.close()
