"""The cold path on the real PostgreSQL: pending records become active or rejected with their reasons, scores,
history, audit rows, run metadata and data.quality_updated events; cross-source duplicates are linked to one
canonical record; a record changed after scoring is scored again; duplicates of a canonical record that is
rejected later are unlinked and scored again; two runs at once decide each record once and still find the
duplicates between their batches."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from aegis_pipeline.cold_path.run import run_cold_path
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.domain.records import CollectionMetadata, RawPolicyData
from aegis_pipeline.hot_path.store import PolicyStore
from aegis_pipeline.schemas.events import validate_event
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()
# Titles name the year of their application period (dates are relative to today): a title whose year the period
# does not cover is a poor record.
YEAR = TODAY.year


def announcement(source: str, external_id: str, **fields: Any) -> RawPolicyData:
    values: dict[str, Any] = {
        "title": f"{YEAR}년 예비창업패키지 예비창업자 모집 공고",
        "content": ("혁신적인 기술창업 아이디어를 보유한 예비창업자에게 사업화 자금 최대 1억원(평균 5천만원)과 "
                    "창업교육, 멘토링을 지원합니다. 신청일 기준 사업자 등록이 없는 자가 신청할 수 있으며, "
                    "K-Startup 누리집에서 온라인으로 접수합니다. 문의: 담당자 ☎ 042-480-1234"),
        "issuing_organization": "중소벤처기업부",
        "target_region": ["전국"],
        "target_industry": ["전체"],
        "funding_type": "창업",
        "application_start_date": TODAY - timedelta(days=5),
        "application_end_date": TODAY + timedelta(days=20),
        "original_url": f"https://www.bizinfo.go.kr/web/lay1/bbs/S1T122C128/AS/74/view.do?pblancId={external_id}",
    }
    values.update(fields)
    return RawPolicyData(**values, collection_metadata=CollectionMetadata(
        source=source, external_id=external_id, collected_at=datetime.now(UTC)))


async def store(settings: Settings, records: list[RawPolicyData]) -> dict[str, str]:
    """Store as the hot path does (pending_validation); returns external_id -> policy id."""
    pool = await postgres.create_pool(settings)
    try:
        outcome = await PolicyStore(pool).store_batch([normalize_record(r) for r in records], lambda stored: [])
    finally:
        await pool.close()
    return {item.policy.external_id: item.policy_id for item in outcome.stored}


async def fetch(settings: Settings, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return [dict(row) for row in await connection.fetch(sql, *args)]


async def policies(settings: Settings, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await fetch(settings, "SELECT id::text, status, quality_score, version, scored_version, status_reasons "
                                 "FROM policies WHERE id = ANY($1::uuid[])", ids)
    return {row["id"]: {**row, "status_reasons": orjson.loads(row["status_reasons"])} for row in rows}


async def events_for(settings: Settings, ids: list[str]) -> list[dict[str, Any]]:
    rows = await fetch(settings, "SELECT envelope FROM event_outbox WHERE event_type = 'data.quality_updated' "
                                 "AND message_key = ANY($1::text[]) ORDER BY id", ids)
    return [orjson.loads(row["envelope"]) for row in rows]


async def audit_rows(settings: Settings, entity_id: str) -> list[dict[str, Any]]:
    """The entity's audit rows, oldest first, with `changes` and `metadata` decoded."""
    rows = await fetch(settings, 'SELECT action, actor, changes::text, metadata::text FROM audit_logs '
                                 'WHERE entity_id = $1 ORDER BY "timestamp", id', entity_id)
    return [{**row, "changes": orjson.loads(row["changes"]), "metadata": orjson.loads(row["metadata"])}
            for row in rows]


async def test_pending_records_become_active_or_rejected_with_their_trail(stack: Settings) -> None:
    source = f"cold_{uuid.uuid4().hex[:6]}"
    good = [make_record(index, source=source) for index in range(8)]
    weak = announcement(source, "WEAK", content="<p>창업 지원 &nbsp; 내용은 첨부 파일을 참고하세요.</p>",
                        target_region=[], target_industry=[], funding_type=None, original_url=None,
                        application_start_date=None, application_end_date=date(2025, 1, 10))
    invalid = announcement(source, "NO_TITLE", title="제목 없음")
    ids = await store(stack, [*good, weak, invalid])
    assert len(ids) == 10

    report = await run_cold_path(stack, source=source, run_id=f"test-{source}")

    assert report.counts == {"active": 8, "rejected": 2, "duplicate": 0}
    assert report.rejected_by_code == {"DP_2001": 1, "DP_2002": 1}
    assert sum(report.score_distribution.values()) == 10
    assert set(report.mean_score_by_source) == {source}
    stored = await policies(stack, list(ids.values()))
    assert {stored[ids[r.collection_metadata.external_id]]["status"] for r in good} == {"active"}
    assert all(stored[ids[r.collection_metadata.external_id]]["quality_score"] >= 0.7 for r in good)
    weak_row, invalid_row = stored[ids["WEAK"]], stored[ids["NO_TITLE"]]
    assert weak_row["status"] == "rejected" and weak_row["quality_score"] < 0.7
    assert weak_row["status_reasons"][0].startswith("DP_2002")
    assert invalid_row["status"] == "rejected" and invalid_row["status_reasons"][0].startswith("DP_2001")
    assert {row["scored_version"] for row in stored.values()} == {1}

    metrics = await fetch(stack, "SELECT policy_id::text, total_score, completeness, accuracy, consistency, "
                                 "timeliness, calculation_method, run_id FROM quality_metrics "
                                 "WHERE policy_id = ANY($1::uuid[])", list(ids.values()))
    assert len(metrics) == 10
    assert {row["run_id"] for row in metrics} == {report.run_id}
    assert all(row["calculation_method"].startswith("quality/2 c=0.3") for row in metrics)
    weak_metrics = next(row for row in metrics if row["policy_id"] == ids["WEAK"])
    assert weak_metrics["accuracy"] < 1 and weak_metrics["completeness"] < 1 and weak_metrics["timeliness"] < 0.5

    audits = await fetch(stack, "SELECT entity_id, action, actor, changes::text, metadata::text FROM audit_logs "
                                "WHERE entity_id = ANY($1::text[])", list(ids.values()))
    assert len(audits) == 10 and {row["action"] for row in audits} == {"status_changed"}
    assert {row["actor"] for row in audits} == {f"cold_path:{report.run_id}"}
    invalid_audit = next(row for row in audits if row["entity_id"] == ids["NO_TITLE"])
    assert orjson.loads(invalid_audit["changes"])["status"] == {"from": "pending_validation", "to": "rejected"}
    assert orjson.loads(invalid_audit["metadata"])["error_code"] == "DP_2001"

    history = await fetch(stack, "SELECT status FROM processing_history WHERE processing_path = 'cold' "
                                 "AND run_id = $1", report.run_id)
    assert sorted(row["status"] for row in history) == ["active"] * 8 + ["rejected"] * 2
    (run,) = await fetch(stack, "SELECT status, records_processed, records_failed, metadata::text "
                                "FROM pipeline_metadata WHERE pipeline_run_id = $1", report.run_id)
    assert (run["status"], run["records_processed"], run["records_failed"]) == ("succeeded", 10, 0)
    assert orjson.loads(run["metadata"])["counts"] == report.counts

    events = await events_for(stack, list(ids.values()))
    assert len(events) == 10
    for event in events:
        validate_event(event)
    assert {event["data"]["policy_id"] for event in events} == set(ids.values())
    by_policy = {event["data"]["policy_id"]: event["data"] for event in events}
    assert by_policy[ids["NO_TITLE"]]["status"] == "rejected"
    assert by_policy[ids["NO_TITLE"]]["reasons"][0].startswith("DP_2001")

    again = await run_cold_path(stack, source=source)  # nothing changed: nothing to do
    assert again.processed == 0


async def test_duplicates_are_linked_changes_rescored_and_orphans_requeued(stack: Settings) -> None:
    token = uuid.uuid4().hex[:6]
    bizinfo, kstartup = f"biz_{token}", f"kst_{token}"
    canonical = announcement(bizinfo, "PBLN_1")
    ids = await store(stack, [canonical])
    first = await run_cold_path(stack, source=bizinfo)
    assert first.counts["active"] == 1

    reworded = announcement(
        kstartup, "171234", title=f"[창업진흥원] {YEAR}년도 예비창업패키지 예비창업자 모집",
        issuing_organization="창업진흥원",
        content=f"중소벤처기업부와 창업진흥원은 {YEAR}년 예비창업패키지에 참여할 예비창업자를 모집한다. 선정되면 최대 "
                "1억원의 사업화 자금과 창업교육, 멘토링을 받는다. 신청은 K-Startup에서 받는다.")
    next_year = announcement(kstartup, "171999", title=f"{YEAR + 1}년 예비창업패키지 예비창업자 모집 공고",
                             application_start_date=TODAY + timedelta(days=100),
                             application_end_date=TODAY + timedelta(days=120))
    ids |= await store(stack, [reworded, next_year])
    second = await run_cold_path(stack, source=kstartup)
    assert second.counts == {"active": 1, "rejected": 0, "duplicate": 1}
    assert second.rejected_by_code == {"DP_2003": 1}
    links = await fetch(stack, "SELECT policy_id::text, canonical_id::text, similarity, method, run_id "
                               "FROM policy_duplicates WHERE canonical_id = $1::uuid", ids["PBLN_1"])
    assert [(row["policy_id"], row["run_id"]) for row in links] == [(ids["171234"], second.run_id)]
    assert 0.55 <= links[0]["similarity"] < 1
    stored = await policies(stack, list(ids.values()))
    assert stored[ids["171234"]]["status"] == "rejected"
    assert stored[ids["171234"]]["status_reasons"][0].startswith("DP_2003")
    assert stored[ids["171999"]]["status"] == "active"  # same title, next year: another program
    # The duplicate's audit trail: its status change (DP_2003) and the link to its canonical record, by this run.
    audits = {row["action"]: row for row in await audit_rows(stack, ids["171234"])}
    assert set(audits) == {"status_changed", "duplicate_linked"}
    assert {row["actor"] for row in audits.values()} == {f"cold_path:{second.run_id}"}
    assert audits["status_changed"]["changes"]["status"] == {"from": "pending_validation", "to": "rejected"}
    assert audits["status_changed"]["metadata"]["error_code"] == "DP_2003"
    assert audits["duplicate_linked"]["changes"] == {"canonical_id": ids["PBLN_1"],
                                                     "similarity": links[0]["similarity"]}
    assert audits["duplicate_linked"]["metadata"]["method"] == links[0]["method"]

    # The canonical record changes (a corrected announcement): stored as version 2, scored again.
    corrected = announcement(bizinfo, "PBLN_1", content=canonical.content + " (정정: 접수 기간 연장)")
    await store(stack, [corrected])
    third = await run_cold_path(stack, source=bizinfo)
    assert third.counts["active"] == 1
    row = (await policies(stack, [ids["PBLN_1"]]))[ids["PBLN_1"]]
    assert (row["status"], row["version"], row["scored_version"]) == ("active", 2, 2)
    scored_twice = await fetch(stack, "SELECT count(*) AS n FROM quality_metrics WHERE policy_id = $1::uuid",
                               ids["PBLN_1"])
    assert scored_twice[0]["n"] == 2

    # --rescore-all scores everything again, changed or not.
    rescored = await run_cold_path(stack, source=kstartup, rescore_all=True)
    assert rescored.processed == 2 and rescored.counts["duplicate"] == 1

    # The canonical record is withdrawn (its new version is unusable): its duplicate is unlinked and, scored
    # again, becomes the program's canonical record.
    await store(stack, [announcement(bizinfo, "PBLN_1", title="제목 없음")])
    fourth = await run_cold_path(stack)
    assert fourth.requeued == 1
    stored = await policies(stack, [ids["PBLN_1"], ids["171234"]])
    assert stored[ids["PBLN_1"]]["status"] == "rejected"
    assert stored[ids["171234"]]["status"] == "active"
    assert await fetch(stack, "SELECT 1 FROM policy_duplicates WHERE canonical_id = $1::uuid", ids["PBLN_1"]) == []
    # Audited: the hot path put the new version (3) back to pending_validation; the run rejected it (DP_2001),
    # and unlinked and re-queued its duplicate, then scored that again: now active.
    trail = await audit_rows(stack, ids["PBLN_1"])
    assert [(row["actor"], row["changes"]["status"], row["metadata"]["version"]) for row in trail[-2:]] == [
        ("hot_path", {"from": "active", "to": "pending_validation"}, 3),
        (f"cold_path:{fourth.run_id}", {"from": "pending_validation", "to": "rejected"}, 3)]
    withdrawn = [row for row in trail if row["metadata"].get("run_id") == fourth.run_id]
    assert [(row["action"], row["changes"]["status"]) for row in withdrawn] == [
        ("status_changed", {"from": "pending_validation", "to": "rejected"})]
    assert withdrawn[0]["metadata"]["error_code"] == "DP_2001"
    promoted = [row for row in await audit_rows(stack, ids["171234"])
                if row["metadata"].get("run_id") == fourth.run_id]
    assert [row["changes"]["status"] for row in promoted] == [{"from": "rejected", "to": "pending_validation"},
                                                              {"from": "pending_validation", "to": "active"}]
    assert ids["PBLN_1"] in promoted[0]["metadata"]["reasons"][0]


async def test_two_runs_at_once_decide_each_record_once_and_copies_in_one_batch_keep_one(stack: Settings) -> None:
    token = uuid.uuid4().hex[:6]
    source, mirror = f"par_{token}", f"mir_{token}"
    records = [make_record(index, source=source) for index in range(30)]
    # The same announcement republished by another portal under its own id.
    copy = records[3].model_copy(update={"collection_metadata": CollectionMetadata(
        source=mirror, external_id="M-3", collected_at=datetime.now(UTC))})
    ids = await store(stack, [*records, copy])
    assert len(ids) == 31
    small_batches = stack.model_copy(update={"cold_path_batch_size": 4})

    first, second = await asyncio.gather(run_cold_path(small_batches), run_cold_path(small_batches))

    history = await fetch(stack, "SELECT policy_id::text, count(*) AS n FROM processing_history "
                                 "WHERE processing_path = 'cold' AND policy_id = ANY($1::uuid[]) GROUP BY policy_id",
                          list(ids.values()))
    assert len(history) == 31 and {row["n"] for row in history} == {1}  # SKIP LOCKED: never both runs
    assert first.batches > 1 and second.batches > 1                     # both really took part
    links = await fetch(stack, "SELECT policy_id::text, canonical_id::text, method FROM policy_duplicates "
                               "WHERE policy_id = ANY($1::uuid[])", list(ids.values()))
    assert len(links) == 1 and links[0]["method"] == "exact"
    original = ids[records[3].collection_metadata.external_id]
    assert {links[0]["policy_id"], links[0]["canonical_id"]} == {ids["M-3"], original}


async def test_a_record_that_cannot_be_scored_is_dead_lettered_once_then_resolved(
        stack: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from aegis_pipeline.cold_path import run as cold_run

    source = f"bug_{uuid.uuid4().hex[:6]}"
    ids = await store(stack, [make_record(index, source=source) for index in range(3)])
    broken_id = ids[make_record(1, source=source).collection_metadata.external_id]
    real_assess = cold_run.assess

    def assess_with_a_bug(record, **kwargs):  # a bug hit by one record only
        if record.id == broken_id:
            raise ZeroDivisionError("division by zero")
        return real_assess(record, **kwargs)

    monkeypatch.setattr(cold_run, "assess", assess_with_a_bug)
    for _ in range(2):  # the second run fails on it again, but writes no second letter
        report = await run_cold_path(stack, source=source)
        assert report.failed == 1
    letters = await fetch(stack, "SELECT error_code, status, error_message FROM dead_letters WHERE stage = 'cold' "
                                 "AND record_key = $1", f"{source}:PBLN_{1:012d}")
    assert [(row["error_code"], row["status"]) for row in letters] == [("DP_4002", "pending")]
    assert "ZeroDivisionError" in letters[0]["error_message"]
    assert (await policies(stack, [broken_id]))[broken_id]["status"] == "pending_validation"  # not lost

    monkeypatch.setattr(cold_run, "assess", real_assess)  # the bug is fixed
    fixed = await run_cold_path(stack, source=source)
    assert (fixed.processed, fixed.failed) == (1, 0)
    assert (await policies(stack, [broken_id]))[broken_id]["status"] == "active"
    resolved = await fetch(stack, "SELECT status FROM dead_letters WHERE stage = 'cold' AND record_key = $1",
                           f"{source}:PBLN_{1:012d}")
    assert [row["status"] for row in resolved] == ["resolved"]


async def test_cold_path_run_prints_counts_per_status_and_the_score_distribution(stack: Settings) -> None:
    """`aegis-pipeline cold-path run` as a user runs it: the installed command in its own process, finding the
    running stack through AEGIS_DATA_DIR."""
    source = f"cli_{uuid.uuid4().hex[:6]}"
    await store(stack, [make_record(0, source=source), make_record(1, source=source),
                        announcement(source, "NO_TITLE", title="제목 없음")])
    command = [str(Path(sys.executable).with_name("aegis-pipeline")), "cold-path", "run", "--source", source]

    done = await asyncio.to_thread(subprocess.run, command, env={**os.environ, "LOG_LEVEL": "WARNING"},
                                   capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"  run cold-\S+: 3 records in 1 batches, [\d.]+ s", lines[0]), done.stdout
    assert lines[1].startswith("  active 2, rejected 1, duplicate 0 "), done.stdout
    assert "  rejected by code: DP_2001 1" in lines
    assert "  archived: closed 0, withdrawn 0; back from withdrawn 0 (docs/lifecycle.md)" in lines
    (distribution,) = [line for line in lines if line.startswith("  score distribution: ")]
    buckets = dict(item.rsplit(" ", 1) for item in distribution.removeprefix("  score distribution: ").split(", "))
    assert all(re.fullmatch(r"\d\.\d-\d\.\d", bucket) for bucket in buckets)
    assert sum(int(count) for count in buckets.values()) == 3
    assert any(re.fullmatch(rf"  mean score by source: {source} \d\.\d\d", line) for line in lines), done.stdout
    assert any(re.fullmatch(r"  events sent: \d+", line) for line in lines), done.stdout
    after = await fetch(stack, "SELECT status, count(*) AS n FROM policies WHERE source_system = $1 GROUP BY status",
                        source)
    assert {row["status"]: row["n"] for row in after} == {"active": 2, "rejected": 1}
