"""The graph target: Neo4j in production, the embedded engine (Ladybug) locally, the same Cypher for both.

Policy nodes (id, title, version, checksum, the consistency check's bucket and digest, ...) linked to
Organization (ISSUED_BY), Region (TARGETS_REGION), Industry (IN_INDUSTRY), FundingType (HAS_FUNDING_TYPE) and
Source (COLLECTED_FROM) nodes, and to the canonical policy they repeat (DUPLICATE_OF, from the cold path's
`policy_duplicates`). Upserting a policy replaces its outgoing relationships; incoming DUPLICATE_OF links are
re-linked from the duplicates' side, so a canonical policy that comes back finds its duplicates again.

Archived programmes stay in the graph, their node's `status` set to `archived` (`targets.base.KEPT_STATUSES`,
docs/lifecycle.md): what was on offer, by whom, where, is history worth analysing; the search targets drop them.

Which DUPLICATE_OF links the graph holds. Only active and archived policies are nodes here, and a link needs an
active canonical policy; the cold path rejects every
duplicate it links (one decided again loses its link first), so a duplicate is normally no node at all. The
graph holds `(d)-[:DUPLICATE_OF]->(c)` exactly when PostgreSQL links d to c and both are active. In the cold
path's normal course that is never; it happens when someone makes a duplicate active by hand, overruling the
cold path. No placeholder node stands for a rejected duplicate or an inactive canonical policy: the graph's
contract is active policies, and which records repeat a program is PostgreSQL's `policy_duplicates` to answer.
The expectation is PostgreSQL's: `SyncDocument.duplicate_of` is the canonical id while that policy is active,
the checksum says whether it is (`sync.source`), and a canonical policy becoming active or not re-stamps its
active duplicates (migration 0009), so the next sync writes them again.

Consistency of the links. Every node a policy can link to carries a `link_key` (`sync.digest.link_key` of its
label and name; a Policy's of its id), and each Policy node stores, from PostgreSQL's view when it was written,
how many outgoing links it has (`link_count`) and the sum of the keys of the nodes they point at
(`links_digest`), DUPLICATE_OF included. The check recomputes both from the links actually present, in the same
per-bucket aggregation as the checksums (one pass over every outgoing link), so a link missing, added, or
re-pointed to another node (another organization, region, source, canonical policy) makes its policy stale like
another checksum would, and repair writes the policy again (its outgoing links deleted, then created). The
stored expectation is tied to PostgreSQL's current one by the checksum written with it. A node written before
`links_digest` existed cannot be checked and counts as stale: one repair (or a rebuild) writes it again.

A graph has no alias to swap: a rebuild rewrites every active policy in place, stamped with the rebuild's run id,
then deletes the Policy nodes the rebuild did not write (mark and sweep), so the graph never goes empty.
The embedded engine allows one writer process: the sync opens the store once per run and closes it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from aegis_pipeline.common.errors import ErrorCode
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores.graph import GraphStore, open_graph_store
from aegis_pipeline.sync.digest import BucketDigest, link_key, links_digest
from aegis_pipeline.sync.targets.base import SyncBatch, SyncDocument, SyncTarget

POLICY_PROPERTIES = {
    "id": "STRING", "title": "STRING", "issuing_organization": "STRING", "funding_type": "STRING",
    "source_system": "STRING", "application_start_date": "STRING", "application_end_date": "STRING",
    "original_url": "STRING", "quality_score": "DOUBLE", "status": "STRING", "version": "INT64",
    "checksum": "STRING", "sync_bucket": "INT64", "sync_digest": "INT64", "sync_run_id": "STRING",
    "link_count": "INT64", "links_digest": "INT64", "link_key": "INT64", "duplicate_of": "STRING",
}
LINKED_PROPERTIES = {"name": "STRING", "link_key": "INT64"}  # of every node a policy links to by name
# label of the linked node, relationship type, how to read the linked names off a document
LINKS: list[tuple[str, str, Any]] = [
    ("Organization", "ISSUED_BY", lambda document: [document.issuing_organization]),
    ("Region", "TARGETS_REGION", lambda document: list(document.target_region)),
    ("Industry", "IN_INDUSTRY", lambda document: list(document.target_industry)),
    ("FundingType", "HAS_FUNDING_TYPE", lambda document: [document.funding_type] if document.funding_type else []),
    ("Source", "COLLECTED_FROM", lambda document: [document.source_system]),
]

# Ladybug types a parameter by the Python values bound to it, and a None has no type: a batch whose rows all have
# no `quality_score` (archived and pending policies) binds the field as STRING, which the DOUBLE property refuses
# ("Implicit cast is not supported"), and so does a mixed batch after it, the connection's statement cache taking
# None and a float for the same shape. So every row sends a float, 0.0 standing for none,
# and `has_quality_score` says whether it is one; the simple CASE stores null for the others (Neo4j reads the same
# Cypher; Ladybug 0.22 fails the searched form, CASE WHEN ..., with "bad_function_call").
UPSERT_POLICIES = """
UNWIND $rows AS r
MERGE (p:Policy {id: r.id})
SET p.title = r.title, p.issuing_organization = r.issuing_organization, p.funding_type = r.funding_type,
    p.source_system = r.source_system, p.application_start_date = r.application_start_date,
    p.application_end_date = r.application_end_date, p.original_url = r.original_url,
    p.quality_score = CASE r.has_quality_score WHEN true THEN r.quality_score END,
    p.status = r.status, p.version = r.version, p.checksum = r.checksum,
    p.sync_bucket = r.sync_bucket, p.sync_digest = r.sync_digest, p.sync_run_id = r.sync_run_id,
    p.link_count = r.link_count, p.links_digest = r.links_digest, p.link_key = r.link_key,
    p.duplicate_of = r.duplicate_of
"""
DELETE_OUTGOING = "MATCH (p:Policy)-[e]->() WHERE p.id IN $ids DELETE e"
# Only where the duplicate expects this canonical policy (`duplicate_of`, from PostgreSQL): a link from either side
# is then one its node's `links_digest` counts.
LINK_DUPLICATES = """
UNWIND $pairs AS r MATCH (d:Policy {id: r.duplicate}), (c:Policy {id: r.canonical}) WHERE d.duplicate_of = c.id
MERGE (d)-[:DUPLICATE_OF]->(c)
"""
DELETE_POLICIES = "UNWIND $ids AS i MATCH (p:Policy {id: i}) DETACH DELETE p"
# A policy's outgoing links are the ones it was written with: as many, to nodes whose keys add up to the same sum.
# Null `link_count` or `links_digest` (a node written before them) compares as not intact.
_LINKS_CHECKED = """
OPTIONAL MATCH (p)-[link]->(x)
WITH p, count(link) AS links, coalesce(sum(x.link_key), 0) AS digest
WITH p, links = p.link_count AND digest = p.links_digest AS links_intact
"""
BUCKET_DIGESTS = ("MATCH (p:Policy)" + _LINKS_CHECKED + "RETURN p.sync_bucket AS bucket, count(*) AS n, "
                  "sum(p.sync_digest) AS total, sum(CASE WHEN links_intact THEN 0 ELSE 1 END) AS broken")
CHECKSUMS = ("MATCH (p:Policy) WHERE p.sync_bucket IN $buckets" + _LINKS_CHECKED + "RETURN p.id AS id, "
             "CASE WHEN links_intact THEN p.checksum ELSE p.checksum + ':links-differ' END AS checksum")
SWEEP = "MATCH (p:Policy) WHERE p.sync_run_id IS NULL OR p.sync_run_id <> $run_id DETACH DELETE p"


def _links(document: SyncDocument) -> list[tuple[str, str, str]]:
    """(label, relationship type, name) of each node the policy links to by name, each once."""
    return [(label, rel_type, name) for label, rel_type, names_of in LINKS
            for name in dict.fromkeys(names_of(document)) if name]


def _linked_nodes(document: SyncDocument) -> list[tuple[str, str]]:
    """(label, name) of every node the policy should link to, its canonical policy included (PostgreSQL's view)."""
    linked = [(label, name) for label, _, name in _links(document)]
    if document.duplicate_of:
        linked.append(("Policy", document.duplicate_of))
    return linked


def _row(document: SyncDocument, run_id: str) -> dict[str, Any]:
    linked = _linked_nodes(document)
    return {
        "id": document.id, "title": document.title, "issuing_organization": document.issuing_organization,
        "funding_type": document.funding_type, "source_system": document.source_system,
        "application_start_date": document.application_start_date.isoformat()
        if document.application_start_date else None,
        "application_end_date": document.application_end_date.isoformat() if document.application_end_date else None,
        "original_url": document.original_url, "status": document.status,
        # float(): DOUBLE in every batch, whatever number type the score came as (see UPSERT_POLICIES)
        "quality_score": float(document.quality_score) if document.quality_score is not None else 0.0,
        "has_quality_score": document.quality_score is not None,
        "version": document.version, "checksum": document.checksum, "sync_bucket": document.bucket,
        "sync_digest": document.digest, "sync_run_id": run_id, "link_count": len(linked),
        "links_digest": links_digest(linked), "link_key": link_key("Policy", document.id),
        "duplicate_of": document.duplicate_of,
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
                self._store.ensure_node_type(label, "name", LINKED_PROPERTIES)
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
                nodes = [{"name": name, "link_key": link_key(label, name)}
                         for name in sorted({pair["name"] for pair in pairs})]
                self._store.run(f"UNWIND $nodes AS n MERGE (x:{label} {{name: n.name}}) SET x.link_key = n.link_key",
                                {"nodes": nodes})
                self._store.run(f"UNWIND $pairs AS r MATCH (p:Policy {{id: r.id}}), (x:{label} {{name: r.name}}) "
                                f"CREATE (p)-[:{rel_type}]->(x)", {"pairs": pairs})
            duplicate_pairs = [{"duplicate": document.id, "canonical": document.duplicate_of}
                               for document in documents if document.duplicate_of]
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
        # A bucket holding a policy whose links differ from its digest differs (its `checksums` show it stale).
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
