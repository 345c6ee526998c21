"""`sync.run` without engines: what a target's result and a run's report say, run ids, the choice of targets, how
a failure is recorded, and `_write` (what reaches a target's upsert and delete, what is deferred for want of an
embedding) with a stand-in target and embedding provider."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from aegis_pipeline.common.errors import ErrorCode, SyncFailedError
from aegis_pipeline.sync.run import (
    SyncReport,
    TargetResult,
    _fail,
    _store_name,
    _write,
    check_target_names,
    new_run_id,
)
from aegis_pipeline.sync.targets.base import SyncBatch, SyncDocument
from aegis_pipeline.sync.targets.graph import GraphTarget
from aegis_pipeline.sync.targets.search import SearchTarget
from aegis_pipeline.sync.targets.vectors import VectorsTarget

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def test_records_synced_counts_upserts_and_deletes() -> None:
    assert TargetResult("search", "elasticsearch", upserted=7, deleted=2, deferred=5).records_synced == 9


def test_a_results_dict_leaves_out_the_synced_ids() -> None:
    result = TargetResult("vectors", "milvus", success=True, upserted=2, deferred=1, encoded=3,
                          synced_ids={"p-1", "p-2"})
    assert result.as_dict() == {"target": "vectors", "store": "milvus", "success": True, "upserted": 2, "deleted": 0,
                                "deferred": 1, "encoded": 3, "error_code": None, "error": None,
                                "duration_seconds": 0.0, "busy": False}


def test_a_run_succeeds_only_if_every_target_did() -> None:
    ok = TargetResult("vectors", "milvus", success=True)
    failed = TargetResult("graph", "neo4j", success=False)
    assert SyncReport("r", NOW, NOW, [ok, TargetResult("search", "elasticsearch", success=True)]).success
    assert not SyncReport("r", NOW, NOW, [ok, failed]).success
    assert SyncReport("r", NOW, NOW, []).success  # nothing asked, nothing failed


def test_policies_synced_counts_each_policy_once_across_targets() -> None:
    report = SyncReport("r", NOW, NOW, [
        TargetResult("vectors", "milvus", synced_ids={"p-1", "p-2"}),
        TargetResult("graph", "neo4j", synced_ids={"p-2", "p-3", "gone-1"}),
        TargetResult("search", "elasticsearch", synced_ids=set()),
    ])
    assert report.policies_synced == 4
    assert SyncReport("r", NOW, NOW, []).policies_synced == 0


def test_a_report_finds_a_targets_result_by_name() -> None:
    graph = TargetResult("graph", "neo4j", upserted=3)
    report = SyncReport("r", NOW, NOW, [TargetResult("vectors", "milvus"), graph])
    assert report.result("graph") is graph
    with pytest.raises(StopIteration):
        report.result("search")


def test_a_run_id_names_its_kind_its_utc_second_and_a_random_suffix() -> None:
    run_id = new_run_id("sync")
    match = re.fullmatch(r"sync-(\d{8}T\d{6}Z)-([0-9a-f]{8})", run_id)
    assert match is not None, run_id
    stamp = datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert new_run_id("rebuild").startswith("rebuild-")
    assert len({new_run_id("sync") for _ in range(50)}) == 50


def test_no_targets_means_all_three_in_their_order() -> None:
    assert check_target_names(None) == ["vectors", "graph", "search"]
    assert check_target_names([]) == ["vectors", "graph", "search"]


def test_targets_asked_twice_are_run_once_in_the_order_asked() -> None:
    assert check_target_names(["search", "vectors", "search"]) == ["search", "vectors"]


def test_an_unknown_target_is_refused_with_every_unknown_one_named() -> None:
    with pytest.raises(ValueError, match=r"^unknown sync target\(s\) milvus, es; expected vectors, graph, search$"):
        check_target_names(["vectors", "milvus", "es"])


def test_store_names_are_the_targets_own() -> None:
    for target in (VectorsTarget, GraphTarget, SearchTarget):
        assert _store_name(target.name) == target.store_name
    with pytest.raises(KeyError):
        _store_name("postgres")


def test_a_failure_records_the_dp_code_of_a_pipeline_error() -> None:
    result = TargetResult("graph", "neo4j", success=True)
    _fail(result, SyncFailedError("neo4j upsert failed: lock held", code=ErrorCode.NEO4J_SYNC_FAILED))
    assert (result.success, result.error_code, result.error) == (
        False, "DP_3002", "DP_3002: neo4j upsert failed: lock held")


def test_an_untranslated_exception_is_recorded_as_a_batch_processing_error() -> None:
    result = TargetResult("search", "elasticsearch")
    _fail(result, KeyError("title"))
    assert (result.success, result.error_code, result.error) == (False, "DP_4003", "KeyError: 'title'")


# --- _write ------------------------------------------------------------------------------------------------------


class RecordingTarget:
    def __init__(self, needs_embeddings: bool) -> None:
        self.needs_embeddings = needs_embeddings
        self.batches: list[SyncBatch] = []
        self.deleted: list[list[str]] = []

    def upsert(self, batch: SyncBatch) -> None:
        self.batches.append(batch)

    def delete(self, ids: Sequence[str]) -> None:
        self.deleted.append(list(ids))


class Handle:
    def __init__(self, target: RecordingTarget) -> None:
        self.target = target

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)


class Embeddings:
    """Has an embedding for the ids in `known`, encodes the ids in `encodable`, defers the rest."""

    def __init__(self, known: set[str], encodable: frozenset[str] = frozenset()) -> None:
        self.known, self.encodable = known, encodable
        self.encoded = 10  # from earlier batches of the run
        self.asked: list[list[str]] = []

    async def for_documents(self, documents: Sequence[SyncDocument]) -> tuple[dict[str, Any], list[str]]:
        self.asked.append([document.id for document in documents])
        found = {document.id: [float(len(document.id))] for document in documents
                 if document.id in self.known | self.encodable}
        self.encoded += len([document for document in documents if document.id in self.encodable])
        return found, [document.id for document in documents if document.id not in found]


async def test_a_target_with_embeddings_gets_only_the_documents_that_have_one(document) -> None:
    target = RecordingTarget(needs_embeddings=True)
    result = TargetResult("vectors", "milvus", upserted=1, synced_ids={"earlier"})
    docs = [document(id="p-1"), document(id="p-22"), document(id="p-333")]
    embeddings = Embeddings(known={"p-1"}, encodable={"p-333"})
    deferred = await _write(Handle(target), result, "run-1", docs, ["gone-1"], embeddings)  # type: ignore[arg-type]
    assert deferred == ["p-22"]
    [batch] = target.batches
    assert batch.run_id == "run-1"
    assert [doc.id for doc in batch.documents] == ["p-1", "p-333"]
    assert batch.embeddings == {"p-1": [3.0], "p-333": [5.0]}
    assert target.deleted == [["gone-1"]]
    assert (result.upserted, result.deleted, result.deferred, result.encoded) == (3, 1, 1, 1)
    assert result.synced_ids == {"earlier", "p-1", "p-333", "gone-1"}  # the deferred one is not synced


async def test_a_target_without_embeddings_gets_every_document_and_no_embedding_is_made(document) -> None:
    target = RecordingTarget(needs_embeddings=False)
    result = TargetResult("search", "elasticsearch")
    embeddings = Embeddings(known=set())
    deferred = await _write(Handle(target), result, "run-1", [document(id="a"), document(id="b")], [],
                            embeddings)  # type: ignore[arg-type]
    assert deferred == []
    assert [doc.id for doc in target.batches[0].documents] == ["a", "b"]
    assert target.batches[0].embeddings == {}
    assert embeddings.asked == []
    assert (result.upserted, result.deleted, result.deferred, result.encoded) == (2, 0, 0, 0)
    assert target.deleted == [[]]  # the target itself skips an empty delete


async def test_only_deletions_ask_for_no_embedding(document) -> None:
    target = RecordingTarget(needs_embeddings=True)
    result = TargetResult("vectors", "milvus")
    embeddings = Embeddings(known=set())
    await _write(Handle(target), result, "run-1", [], ["x", "y"], embeddings)  # type: ignore[arg-type]
    assert embeddings.asked == []
    assert target.batches[0].documents == [] and target.deleted == [["x", "y"]]
    assert (result.upserted, result.deleted, result.synced_ids) == (0, 2, {"x", "y"})
