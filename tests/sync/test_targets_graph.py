"""`sync.targets.graph` without a graph engine: the links a document makes, the Policy node's row (its link
count and links digest from PostgreSQL's view), and the statements an upsert sends, recorded by a stand-in store."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

import pytest

from aegis_pipeline.common.errors import ErrorCode, SyncFailedError
from aegis_pipeline.stores.graph import GraphStore
from aegis_pipeline.sync.digest import BucketDigest
from aegis_pipeline.sync.targets.base import SyncBatch
from aegis_pipeline.sync.targets.graph import (
    BUCKET_DIGESTS,
    CHECKSUMS,
    DELETE_OUTGOING,
    DELETE_POLICIES,
    LINK_DUPLICATES,
    LINKED_PROPERTIES,
    POLICY_PROPERTIES,
    SWEEP,
    UPSERT_POLICIES,
    GraphTarget,
    _linked_nodes,
    _links,
    _row,
)


def key(label: str, name: str) -> int:
    """The link key as the engines store it, computed here independently of `sync.digest`."""
    return int(hashlib.md5(f"{label}\x1f{name}".encode()).hexdigest()[:8], 16)


class RecordingStore(GraphStore):
    def __init__(self, answers: Mapping[str, list[dict[str, Any]]] | None = None) -> None:
        self.statements: list[tuple[str, Any]] = []
        self.node_types: list[tuple[str, str, dict[str, str]]] = []
        self.relationship_types: list[tuple[str, str, str]] = []
        self.answers = answers or {}

    def ensure_node_type(self, label: str, key: str, properties: Mapping[str, str]) -> None:
        self.node_types.append((label, key, dict(properties)))

    def ensure_relationship_type(self, rel_type: str, from_label: str, to_label: str) -> None:
        self.relationship_types.append((rel_type, from_label, to_label))

    def run(self, cypher: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        self.statements.append((cypher, parameters))
        return self.answers.get(cypher, [])

    def close(self) -> None:
        pass


# --- links of a document -----------------------------------------------------------------------------------------


def test_a_document_links_to_its_organisation_regions_industries_funding_type_and_source(document) -> None:
    assert _links(document()) == [
        ("Organization", "ISSUED_BY", "중소벤처기업부"),
        ("Region", "TARGETS_REGION", "서울"),
        ("Region", "TARGETS_REGION", "부산"),
        ("Industry", "IN_INDUSTRY", "제조업"),
        ("FundingType", "HAS_FUNDING_TYPE", "보조금"),
        ("Source", "COLLECTED_FROM", "bizinfo"),
    ]


def test_each_node_is_linked_once_and_empty_names_not_at_all(document) -> None:
    doc = document(target_region=("서울", "", "부산", "서울"), target_industry=(), funding_type=None,
                   issuing_organization="")
    assert _links(doc) == [("Region", "TARGETS_REGION", "서울"), ("Region", "TARGETS_REGION", "부산"),
                           ("Source", "COLLECTED_FROM", "bizinfo")]


def test_the_canonical_policy_is_a_linked_node_only_through_duplicate_of(document) -> None:
    plain = document(canonical_id="p-0", duplicate_of=None)  # canonical policy not active: no link
    assert ("Policy", "p-0") not in _linked_nodes(plain)
    duplicate = document(canonical_id="p-0", duplicate_of="p-0")
    assert _linked_nodes(duplicate) == [(label, name) for label, _, name in _links(duplicate)] + [("Policy", "p-0")]


# --- the Policy node's row ---------------------------------------------------------------------------------------


def test_a_policy_row_carries_its_links_expectation(document) -> None:
    doc = document(id="p-1", version=2, checksum="0000002a" + "b" * 56, duplicate_of="p-0",
                   application_start_date=date(2025, 3, 1), application_end_date=None)
    row = _row(doc, "run-9")
    linked = [("Organization", "중소벤처기업부"), ("Region", "서울"), ("Region", "부산"), ("Industry", "제조업"),
              ("FundingType", "보조금"), ("Source", "bizinfo"), ("Policy", "p-0")]
    assert row == {
        "id": "p-1", "title": "스마트공장 구축 지원사업", "issuing_organization": "중소벤처기업부",
        "funding_type": "보조금", "source_system": "bizinfo", "application_start_date": "2025-03-01",
        "application_end_date": None, "original_url": "https://www.bizinfo.go.kr/p/1", "quality_score": 0.87,
        "has_quality_score": True, "status": "active", "version": 2, "checksum": "0000002a" + "b" * 56,
        "sync_bucket": doc.bucket, "sync_digest": 42, "sync_run_id": "run-9", "link_count": 7,
        "links_digest": sum(key(label, name) for label, name in linked), "link_key": key("Policy", "p-1"),
        "duplicate_of": "p-0",
    }


def test_a_row_without_links_has_a_zero_digest(document) -> None:
    row = _row(document(issuing_organization="", target_region=(), target_industry=(), funding_type=None,
                        source_system=""), "r")
    assert row["link_count"] == 0 and row["links_digest"] == 0


def test_a_row_without_a_score_sends_a_float_and_says_it_is_none(document) -> None:
    # A None would make Ladybug bind the batch's scores as STRING (test_targets_graph_engine.py).
    row = _row(document(quality_score=None), "r")
    assert (row["quality_score"], row["has_quality_score"]) == (0.0, False)
    assert type(_row(document(quality_score=1), "r")["quality_score"]) is float


def test_the_schema_declares_every_property_a_row_sets_and_the_statement_sets_them_all(document) -> None:
    row = _row(document(), "r")
    assert set(row) - {"has_quality_score"} == set(POLICY_PROPERTIES)
    assignments = set(re.findall(r"p\.(\w+) = r\.(\w+)", UPSERT_POLICIES))
    assert assignments == {(name, name) for name in row if name not in ("id", "quality_score", "has_quality_score")}
    assert "p.quality_score = CASE r.has_quality_score WHEN true THEN r.quality_score END" in UPSERT_POLICIES


def test_setup_declares_policies_the_linked_nodes_and_their_relationships() -> None:
    store = RecordingStore()
    GraphTarget(store).setup()
    assert store.node_types == [("Policy", "id", POLICY_PROPERTIES)] + [
        (label, "name", LINKED_PROPERTIES) for label in ("Organization", "Region", "Industry", "FundingType", "Source")]
    assert store.relationship_types == [
        ("ISSUED_BY", "Policy", "Organization"), ("TARGETS_REGION", "Policy", "Region"),
        ("IN_INDUSTRY", "Policy", "Industry"), ("HAS_FUNDING_TYPE", "Policy", "FundingType"),
        ("COLLECTED_FROM", "Policy", "Source"), ("DUPLICATE_OF", "Policy", "Policy")]


# --- the statements of an upsert ---------------------------------------------------------------------------------


def test_an_upsert_writes_nodes_replaces_outgoing_links_and_relinks_duplicates(document) -> None:
    first = document(id="p-1", target_region=("서울", "부산"), funding_type=None, duplicate_of="p-0",
                     duplicate_ids=("p-7",))
    second = document(id="p-2", target_region=("부산", "대구"), target_industry=(), source_system="kstartup")
    store = RecordingStore()
    GraphTarget(store).upsert(SyncBatch("run-3", [first, second], {}))
    assert store.statements == [
        (UPSERT_POLICIES, {"rows": [_row(first, "run-3"), _row(second, "run-3")]}),
        (DELETE_OUTGOING, {"ids": ["p-1", "p-2"]}),
        ("UNWIND $nodes AS n MERGE (x:Organization {name: n.name}) SET x.link_key = n.link_key",
         {"nodes": [{"name": "중소벤처기업부", "link_key": key("Organization", "중소벤처기업부")}]}),
        ("UNWIND $pairs AS r MATCH (p:Policy {id: r.id}), (x:Organization {name: r.name}) CREATE (p)-[:ISSUED_BY]->(x)",
         {"pairs": [{"id": "p-1", "name": "중소벤처기업부"}, {"id": "p-2", "name": "중소벤처기업부"}]}),
        ("UNWIND $nodes AS n MERGE (x:Region {name: n.name}) SET x.link_key = n.link_key",
         {"nodes": [{"name": name, "link_key": key("Region", name)} for name in sorted({"서울", "부산", "대구"})]}),
        ("UNWIND $pairs AS r MATCH (p:Policy {id: r.id}), (x:Region {name: r.name}) CREATE (p)-[:TARGETS_REGION]->(x)",
         {"pairs": [{"id": "p-1", "name": "서울"}, {"id": "p-1", "name": "부산"}, {"id": "p-2", "name": "부산"},
                    {"id": "p-2", "name": "대구"}]}),
        ("UNWIND $nodes AS n MERGE (x:Industry {name: n.name}) SET x.link_key = n.link_key",
         {"nodes": [{"name": "제조업", "link_key": key("Industry", "제조업")}]}),
        ("UNWIND $pairs AS r MATCH (p:Policy {id: r.id}), (x:Industry {name: r.name}) CREATE (p)-[:IN_INDUSTRY]->(x)",
         {"pairs": [{"id": "p-1", "name": "제조업"}]}),
        ("UNWIND $nodes AS n MERGE (x:FundingType {name: n.name}) SET x.link_key = n.link_key",
         {"nodes": [{"name": "보조금", "link_key": key("FundingType", "보조금")}]}),
        ("UNWIND $pairs AS r MATCH (p:Policy {id: r.id}), (x:FundingType {name: r.name}) "
         "CREATE (p)-[:HAS_FUNDING_TYPE]->(x)", {"pairs": [{"id": "p-2", "name": "보조금"}]}),
        ("UNWIND $nodes AS n MERGE (x:Source {name: n.name}) SET x.link_key = n.link_key",
         {"nodes": [{"name": "bizinfo", "link_key": key("Source", "bizinfo")},
                    {"name": "kstartup", "link_key": key("Source", "kstartup")}]}),
        ("UNWIND $pairs AS r MATCH (p:Policy {id: r.id}), (x:Source {name: r.name}) CREATE (p)-[:COLLECTED_FROM]->(x)",
         {"pairs": [{"id": "p-1", "name": "bizinfo"}, {"id": "p-2", "name": "kstartup"}]}),
        (LINK_DUPLICATES, {"pairs": [{"duplicate": "p-1", "canonical": "p-0"},
                                     {"duplicate": "p-7", "canonical": "p-1"}]}),
    ]


def test_a_label_nobody_links_to_gets_no_statement_and_no_duplicates_no_relinking(document) -> None:
    store = RecordingStore()
    GraphTarget(store).upsert(SyncBatch("r", [document(id="p-1", funding_type=None, target_industry=())], {}))
    sent = [cypher for cypher, _ in store.statements]
    assert not any("FundingType" in cypher or "Industry" in cypher for cypher in sent)
    assert LINK_DUPLICATES not in sent
    assert len(sent) == 2 + 2 * 3  # policies, outgoing links, then nodes and links of 3 labels


def test_an_empty_batch_or_no_ids_send_nothing() -> None:
    store = RecordingStore()
    target = GraphTarget(store)
    target.upsert(SyncBatch("r", [], {}))
    target.delete([])
    assert store.statements == []
    target.delete(("p-1", "p-2"))
    assert store.statements == [(DELETE_POLICIES, {"ids": ["p-1", "p-2"]})]


# --- the consistency check and the rebuild -----------------------------------------------------------------------


def test_a_bucket_with_broken_links_differs_from_postgresqls_digest() -> None:
    store = RecordingStore({BUCKET_DIGESTS: [{"bucket": 5, "n": 2, "total": 100, "broken": 0},
                                             {"bucket": 9, "n": 3, "total": 300, "broken": 2}]})
    assert GraphTarget(store).bucket_digests() == {5: BucketDigest(2, 100), 9: BucketDigest(3, 302)}


def test_checksums_ask_for_the_buckets_in_order() -> None:
    store = RecordingStore({CHECKSUMS: [{"id": "p-1", "checksum": "c1"}, {"id": "p-2", "checksum": "c2:links-differ"}]})
    assert GraphTarget(store).checksums({9, 2, 5}) == {"p-1": "c1", "p-2": "c2:links-differ"}
    assert store.statements == [(CHECKSUMS, {"buckets": [2, 5, 9]})]


def test_a_rebuild_sweeps_what_it_did_not_write_and_an_abort_sweeps_nothing() -> None:
    store = RecordingStore()
    target = GraphTarget(store)
    target.begin_rebuild("rebuild-4")
    target.finish_rebuild()
    assert store.statements == [(SWEEP, {"run_id": "rebuild-4"})]
    with pytest.raises(RuntimeError, match="finish_rebuild without begin_rebuild"):
        target.finish_rebuild()
    target.begin_rebuild("rebuild-5")
    target.abort_rebuild()
    with pytest.raises(RuntimeError):
        target.finish_rebuild()
    assert len(store.statements) == 1


def test_a_store_failure_becomes_dp_3002(document) -> None:
    class Broken(RecordingStore):
        def run(self, cypher: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
            raise RuntimeError("lock held")

    with pytest.raises(SyncFailedError) as caught:
        GraphTarget(Broken()).upsert(SyncBatch("r", [document()], {}))
    assert caught.value.code is ErrorCode.NEO4J_SYNC_FAILED
    assert "neo4j upsert failed: RuntimeError: lock held" in str(caught.value)
