"""`sync.consistency` without engines: when a target and a whole check count as consistent, the summary and the
stored form of a check (ids capped, counts complete), when a repair counts as a success, and the drift gauges."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY

from aegis_pipeline.sync.consistency import (
    _STORED_IDS,
    KINDS,
    ConsistencyReport,
    RepairReport,
    TargetCheck,
    _set_gauges,
)
from aegis_pipeline.sync.digest import Drift
from aegis_pipeline.sync.run import TargetResult

CHECKED_AT = datetime(2025, 5, 1, 3, 0, tzinfo=UTC)


def test_a_target_is_consistent_without_drift_and_without_error() -> None:
    assert TargetCheck("search", "elasticsearch").consistent
    assert not TargetCheck("search", "elasticsearch", drift=Drift(orphaned=["x"])).consistent
    # a target that could not be read is not consistent, though no drift was found
    assert not TargetCheck("graph", "neo4j", error_code="DP_3002", error="unreachable").consistent


def test_a_targets_summary_is_its_counts_and_its_error_with_the_code() -> None:
    check = TargetCheck("vectors", "milvus", drift=Drift(missing=["a", "b"], stale=["c"]))
    assert check.summary() == {"missing": 2, "stale": 1, "orphaned": 0}
    failed = TargetCheck("graph", "neo4j", error_code="DP_3002", error="neo4j open failed")
    assert failed.summary() == {"missing": 0, "stale": 0, "orphaned": 0, "error": "DP_3002: neo4j open failed"}


def _report() -> ConsistencyReport:
    return ConsistencyReport(CHECKED_AT, {
        "vectors": TargetCheck("vectors", "milvus"),
        "graph": TargetCheck("graph", "neo4j", drift=Drift(missing=["m-1"], orphaned=["o-1", "o-2"])),
        "search": TargetCheck("search", "elasticsearch", error_code="DP_3003", error="timeout"),
    }, duration_seconds=1.25)


def test_a_check_is_consistent_only_if_every_target_is() -> None:
    assert not _report().consistent
    assert ConsistencyReport(CHECKED_AT, {"vectors": TargetCheck("vectors", "milvus")}).consistent
    assert ConsistencyReport(CHECKED_AT, {}).consistent


def test_the_summary_lists_every_target() -> None:
    assert _report().summary() == {"consistent": False, "targets": {
        "vectors": {"missing": 0, "stale": 0, "orphaned": 0},
        "graph": {"missing": 1, "stale": 0, "orphaned": 2},
        "search": {"missing": 0, "stale": 0, "orphaned": 0, "error": "DP_3003: timeout"},
    }}


def test_inconsistencies_are_one_entry_per_target_and_kind_found() -> None:
    assert _report().inconsistencies() == [
        {"target": "graph", "kind": "missing", "count": 1, "ids": ["m-1"]},
        {"target": "graph", "kind": "orphaned", "count": 2, "ids": ["o-1", "o-2"]},
    ]


def test_stored_ids_are_capped_and_counts_are_complete() -> None:
    stale = [f"s-{n:05d}" for n in range(_STORED_IDS + 500)]
    report = ConsistencyReport(CHECKED_AT, {"search": TargetCheck("search", "elasticsearch",
                                                                  drift=Drift(stale=stale))})
    [entry] = report.inconsistencies()
    assert entry["count"] == 1500 and _STORED_IDS == 1000
    assert entry["ids"] == stale[:1000]


def test_the_stored_form_has_the_designs_fields_then_the_counts() -> None:
    report = _report()
    assert report.stored_form() == {
        "is_consistent": False,
        "inconsistencies": report.inconsistencies(),
        "fixes_applied": [],
        "checked_at": "2025-05-01T03:00:00+00:00",
        "targets": report.summary()["targets"],
        "duration_seconds": 1.25,
    }


def test_a_repair_succeeds_only_if_every_target_was_written_completely() -> None:
    done = TargetResult("graph", "neo4j", success=True, upserted=2)
    assert RepairReport(None, CHECKED_AT, {}, {"graph": done}).success
    deferred = TargetResult("vectors", "milvus", success=True, upserted=1, deferred=1)
    assert not RepairReport(None, CHECKED_AT, {}, {"graph": done, "vectors": deferred}).success
    failed = TargetResult("search", "elasticsearch", error_code="DP_3003", error="DP_3003: refused")
    assert not RepairReport(None, CHECKED_AT, {}, {"search": failed}).success


def test_a_repairs_summary_names_the_errors_only() -> None:
    fixed = {"graph": {"missing": 1, "stale": 0, "orphaned": 2}, "search": dict.fromkeys(KINDS, 0)}
    results = {"graph": TargetResult("graph", "neo4j", success=True),
               "search": TargetResult("search", "elasticsearch", error_code="DP_3003", error="bulk refused")}
    assert RepairReport("id-1", CHECKED_AT, fixed, results).summary() == {
        "success": False, "fixed": fixed, "busy": [], "errors": {"search": "DP_3003: bulk refused"}}
    busy = TargetResult("search", "elasticsearch", success=True, busy=True)
    assert RepairReport("id-2", CHECKED_AT, fixed, {"search": busy}).summary() == {
        "success": True, "fixed": fixed, "busy": ["search"], "errors": {}}  # left to the next repair, not failed


def test_the_drift_gauges_are_set_per_store_and_kind() -> None:
    _set_gauges("vectors", {"missing": 3, "stale": 0, "orphaned": 7})
    _set_gauges("search", {"missing": 0, "stale": 5, "orphaned": 0})

    def value(store: str, kind: str) -> float | None:
        return REGISTRY.get_sample_value("consistency_drift_documents", {"target_db": store, "kind": kind})

    assert [value("milvus", kind) for kind in KINDS] == [3.0, 0.0, 7.0]
    assert [value("elasticsearch", kind) for kind in KINDS] == [0.0, 5.0, 0.0]
    assert KINDS == ("missing", "stale", "orphaned")
