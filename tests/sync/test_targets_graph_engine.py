"""`sync.targets.graph` against the embedded engine itself (Ladybug, in process: no stack needed).

The engine-less tests (test_targets_graph.py) check the statements an upsert sends; only the engine says whether it
binds them. Ladybug types a parameter by the Python values bound to it, so a batch whose rows have no quality score
(archived and pending policies), or only some, must upsert like a batch of scored ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from aegis_pipeline.stores.graph import LadybugGraphStore
from aegis_pipeline.sync.targets.base import SyncBatch, SyncDocument
from aegis_pipeline.sync.targets.graph import GraphTarget


@pytest.fixture
def target(tmp_path: Path) -> Iterator[GraphTarget]:
    graph = GraphTarget(LadybugGraphStore(tmp_path / "graph" / "policies.lbug", lock_timeout_seconds=5))
    graph.setup()
    yield graph
    graph.close()


def _policy(document, number: int, **overrides) -> SyncDocument:
    return document(id=f"3f2c8a4e-0000-4000-8000-{number:012d}", checksum=f"{number:08x}" + "b" * 56,
                    **overrides)


def _scores(target: GraphTarget) -> dict[str, float | None]:
    rows = target._store.run("MATCH (p:Policy) RETURN p.id AS id, p.quality_score AS score")
    return {row["id"]: row["score"] for row in rows}


def _assert_consistent(target: GraphTarget, documents: list[SyncDocument]) -> None:
    """What the consistency check reads: every policy with its checksum, its links intact."""
    expected = {document.id: document.checksum for document in documents}
    buckets = {document.bucket for document in documents}
    assert {id_: checksum for id_, checksum in target.checksums(buckets).items() if id_ in expected} == expected


def test_a_batch_where_no_policy_has_a_quality_score_upserts(target, document) -> None:
    archived = [_policy(document, n, quality_score=None, status="archived") for n in (1, 2, 3)]
    target.upsert(SyncBatch("run-1", archived, {}))
    assert _scores(target) == {policy.id: None for policy in archived}
    _assert_consistent(target, archived)


@pytest.mark.parametrize("scores", [(None, 0.87, None), (0.123456789012345678, None), (0.5, Decimal("0.25"), 1)],
                         ids=["unscored-first", "unscored-last", "decimal-and-int"])
def test_a_batch_mixing_scored_and_unscored_policies_upserts_each_score_as_it_is(target, document, scores) -> None:
    policies = [_policy(document, n, quality_score=score, status="active" if score is not None else "archived")
                for n, score in enumerate(scores, start=1)]
    target.upsert(SyncBatch("run-1", policies, {}))
    assert _scores(target) == {policy.id: None if policy.quality_score is None else float(policy.quality_score)
                               for policy in policies}
    _assert_consistent(target, policies)


def test_a_mixed_batch_after_one_without_scores_upserts(target, document) -> None:
    # What the stack's sync met: archived policies first, then a mixed batch on the same connection. Ladybug caches
    # a statement by the shape of its parameters, a None counting as any type: the mixed batch reused the first
    # batch's statement, prepared for a STRING score, and failed with it.
    archived = [_policy(document, n, quality_score=None, status="archived") for n in (1, 2)]
    target.upsert(SyncBatch("run-1", archived, {}))
    mixed = [_policy(document, 3, quality_score=None, status="archived"), _policy(document, 4, quality_score=0.6)]
    target.upsert(SyncBatch("run-1", mixed, {}))
    assert _scores(target) == {archived[0].id: None, archived[1].id: None, mixed[0].id: None, mixed[1].id: 0.6}
    _assert_consistent(target, archived + mixed)


def test_a_score_that_goes_away_is_cleared_and_one_that_comes_back_is_stored(target, document) -> None:
    # The same connection each time: its cached statements must serve batches of every shape.
    scored = [_policy(document, 1, quality_score=0.9), _policy(document, 2, quality_score=0.4)]
    target.upsert(SyncBatch("run-1", scored, {}))
    unscored = [_policy(document, 1, quality_score=None, status="archived"), _policy(document, 2, quality_score=None)]
    target.upsert(SyncBatch("run-2", unscored, {}))
    assert _scores(target) == {scored[0].id: None, scored[1].id: None}
    mixed = [_policy(document, 1, quality_score=None, status="archived"), _policy(document, 2, quality_score=0.75)]
    target.upsert(SyncBatch("run-3", mixed, {}))
    assert _scores(target) == {mixed[0].id: None, mixed[1].id: 0.75}
    _assert_consistent(target, mixed)
