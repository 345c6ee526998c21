"""Scores tied to their rules, on the real PostgreSQL: every score is stored with its rules version; when the rules
change, the cold path rescores the catalogue in the background, after the records waiting for a score, the oldest
version first, within its budget per run (the next run goes on), with progress, a report of what was rescored and
what is left, and the gauge of records still on older rules; a rescore announces only what changed.

Each test has a database of its own: background rescoring takes the whole catalogue, and the gauge counts it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import orjson
import prometheus_client
import pytest
from click.testing import CliRunner
from test_cold_path import TODAY, YEAR, fetch, store

from aegis_pipeline.cli.main import main
from aegis_pipeline.cold_path import run as cold_run
from aegis_pipeline.cold_path.run import run_cold_path
from aegis_pipeline.cold_path.scoring_rules import ScoringRules
from aegis_pipeline.common.progress import Progress
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.records import RawPolicyData
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

pytestmark = pytest.mark.integration

# The rules each test moves between. Completeness and accuracy are 1 for the synthetic records and timeliness is
# not, so moving weight from the first two to timeliness changes every total score.
NEW_WEIGHTS = {"quality_weight_completeness": 0.25, "quality_weight_accuracy": 0.25,
               "quality_weight_timeliness": 0.3}
TINY_BUDGET = 1e-6  # seconds: a worker takes one batch of older rules, then stops


@pytest.fixture
async def own_database(stack: Settings) -> AsyncIterator[Settings]:
    """The stack's settings with a migrated database of this test's own (dropped afterwards)."""
    name = f"rules_{uuid.uuid4().hex[:8]}"
    await postgres.ensure_database(stack.postgres_dsn(database="postgres"), name)
    # The synthetic records' programmes closed in 2026: the lifecycle step must not archive them here.
    settings = stack.model_copy(update={"postgres_db": name, "archive_after_days": 3650})
    await asyncio.to_thread(upgrade_to_head, settings)
    yield settings
    with contextlib.suppress(Exception):
        await postgres.drop_database(stack.postgres_dsn(database="postgres"), name)


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[Progress]:
    """Every progress block the cold path opens, as it stood when it ended."""
    blocks: list[Progress] = []
    real = cold_run.progress

    @contextlib.contextmanager
    def recorded(task: str, **options: Any) -> Iterator[Progress]:
        with real(task, **options) as block:
            blocks.append(block)
            yield block

    monkeypatch.setattr(cold_run, "progress", recorded)
    return blocks


def rescore_blocks(blocks: list[Progress]) -> list[tuple[str, int | None, int]]:
    return [(block.task, block.total, block.done) for block in blocks if "rescore" in block.task]


def stale_gauge(source: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value("cold_path_stale_score_records", {"source": source})


async def rescored_in(settings: Settings, run_id: str) -> dict[str, str | None]:
    """policy id -> the rules version it was rescored from, for the records `run_id` rescored."""
    rows = await fetch(settings, "SELECT policy_id::text, validation_errors->>'rescored_from_rules' AS old "
                                 "FROM processing_history WHERE run_id = $1 "
                                 "AND validation_errors ? 'rescored_from_rules'", run_id)
    return {row["policy_id"]: row["old"] for row in rows}


async def policy_rows(settings: Settings, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await fetch(settings, "SELECT id::text, status, quality_score, status_reasons::text AS reasons, "
                                 "rules_version FROM policies WHERE id = ANY($1::uuid[])", ids)
    return {row["id"]: {**row, "reasons": orjson.loads(row["reasons"])} for row in rows}


async def test_new_rules_rescore_the_catalogue_oldest_first_within_each_runs_budget(
        own_database: Settings, shown: list[Progress], restore_logging: None) -> None:
    old = own_database.model_copy(update={"cold_path_batch_size": 4})
    token = uuid.uuid4().hex[:6]
    unversioned, first, second, waiting = (f"{name}_{token}" for name in ("nov", "aaa", "ccc", "new"))
    ids = {source: list((await store(old, [make_record(i, source=source) for i in range(4)])).values())
           for source in (unversioned, first, second)}
    # Three older versions: scored before versions existed (NULL, the oldest of all), the first rules, other rules.
    await run_cold_path(old, source=unversioned)
    async with postgres.connect(old.postgres_dsn()) as connection:
        await connection.execute("UPDATE policies SET rules_version = NULL WHERE source_system = $1", unversioned)
    await run_cold_path(old, source=first)
    other = old.model_copy(update={"quality_score_threshold": 0.71})
    await run_cold_path(other, source=second)
    rules_a, rules_c = ScoringRules.from_settings(old), ScoringRules.from_settings(other)

    # The weights change. Each run rescores one batch (its budget is tiny), oldest rules first.
    new = old.model_copy(update={**NEW_WEIGHTS, "cold_path_rescore_seconds": TINY_BUDGET})
    rules_b = ScoringRules.from_settings(new)
    assert len({rules_a.version, rules_b.version, rules_c.version}) == 3
    first_run = await run_cold_path(new)
    assert (first_run.rules_version, first_run.rescored, first_run.stale_remaining) == (rules_b.version, 4, 8)
    assert first_run.processed == 4
    assert await rescored_in(new, first_run.run_id) == dict.fromkeys(ids[unversioned])
    assert rescore_blocks(shown) == [(f"cold path rescore (rules {rules_b.version})", 12, 4)]
    assert (stale_gauge(unversioned), stale_gauge(first), stale_gauge(second)) == (0, 4, 4)

    # New records arrive meanwhile: all of them are scored first (two batches, outside the budget), then one
    # batch of the next older version.
    arrived = list((await store(new, [make_record(i, source=waiting) for i in range(5)])).values())
    shown.clear()
    second_run = await run_cold_path(new)
    assert (second_run.processed, second_run.rescored, second_run.stale_remaining) == (9, 4, 4)
    assert await rescored_in(new, second_run.run_id) == dict.fromkeys(ids[first], rules_a.version)
    decided = await fetch(new, "SELECT policy_id::text, processed_at FROM processing_history WHERE run_id = $1",
                          second_run.run_id)
    assert {row["policy_id"] for row in decided} == set(arrived) | set(ids[first])
    assert max(row["processed_at"] for row in decided if row["policy_id"] in arrived) < min(
        row["processed_at"] for row in decided if row["policy_id"] in ids[first])
    assert [block.total for block in shown if block.task == "cold path"] == [5]
    assert rescore_blocks(shown) == [(f"cold path rescore (rules {rules_b.version})", 8, 4)]

    # The next run, as an operator runs it: the command prints what it rescored and what is left.
    shown.clear()
    environment = {"POSTGRES_HOST": new.postgres_host, "POSTGRES_PORT": str(new.postgres_port),
                   "POSTGRES_USER": new.postgres_user, "POSTGRES_DB": new.postgres_db, "LOG_LEVEL": "WARNING",
                   "COLD_PATH_BATCH_SIZE": "4", "COLD_PATH_RESCORE_SECONDS": str(TINY_BUDGET),
                   **{name.upper(): str(value) for name, value in NEW_WEIGHTS.items()}}
    done = await asyncio.to_thread(CliRunner().invoke, main, ["cold-path", "run"], env=environment)
    assert done.exit_code == 0, done.output
    assert f"  rules {rules_b.version}: rescored 4 (scored under older rules), 0 still on older rules" in \
        done.stdout.splitlines(), done.stdout
    (third_run_id,) = re.findall(r"^  run (cold-\S+):", done.stdout, re.MULTILINE)
    assert await rescored_in(new, third_run_id) == dict.fromkeys(ids[second], rules_c.version)
    assert rescore_blocks(shown) == [(f"cold path rescore (rules {rules_b.version})", 4, 4)]
    assert {stale_gauge(source) for source in (unversioned, first, second, waiting)} == {0}

    # Nothing is left: a run rescores nothing, and shows no rescoring.
    shown.clear()
    fourth_run = await run_cold_path(new)
    assert (fourth_run.processed, fourth_run.rescored, fourth_run.stale_remaining) == (0, 0, 0)
    assert rescore_blocks(shown) == []

    # Every record and its latest score carry the new version; the versions seen say what they mean, in order.
    every_id = [policy_id for group in ids.values() for policy_id in group] + arrived
    assert {row["rules_version"] for row in (await policy_rows(new, every_id)).values()} == {rules_b.version}
    latest = await fetch(new, "SELECT DISTINCT ON (policy_id) rules_version, calculation_method FROM quality_metrics "
                              "ORDER BY policy_id, calculated_at DESC")
    assert len(latest) == 17 and {row["rules_version"] for row in latest} == {rules_b.version}
    assert {row["calculation_method"] for row in latest} == {rules_b.weights.method}
    versions = await fetch(new, "SELECT version, parameters::text FROM scoring_rules_versions "
                                "ORDER BY first_used_at, version")
    assert [row["version"] for row in versions] == [rules_a.version, rules_c.version, rules_b.version]
    assert [orjson.loads(row["parameters"]) for row in versions] == [
        rules_a.parameters, rules_c.parameters, rules_b.parameters]


def programme(index: int, source: str, days_closed: int) -> RawPolicyData:
    """A synthetic programme of this year that closed `days_closed` days ago (negative: still open), so that its
    score does not depend on the day the test runs."""
    record = make_record(index, source=source)
    end = TODAY - timedelta(days=days_closed)
    return record.model_copy(update={"title": re.sub(r"^\d{4}년", f"{YEAR}년", record.title),
                                     "application_start_date": end - timedelta(days=60),
                                     "application_end_date": end})


async def test_a_rescore_is_stored_with_its_version_and_announces_only_what_changed(own_database: Settings) -> None:
    settings = own_database.model_copy(update={"cold_path_batch_size": 3})
    source = f"ann_{uuid.uuid4().hex[:6]}"
    # Scores from 1.0 (open) down to about 0.84 (closed 270 days ago) with the default rules.
    ids = list((await store(settings, [programme(i, source, days) for i, days in
                                       enumerate((-10, 30, 90, 150, 210, 270))])).values())
    scored = await run_cold_path(settings)
    rules = ScoringRules.from_settings(settings)
    assert (scored.counts["active"], scored.rescored, scored.stale_remaining) == (6, 0, 0)
    assert {row["rules_version"] for row in (await policy_rows(settings, ids)).values()} == {rules.version}
    metrics = await fetch(settings, "SELECT rules_version, run_id FROM quality_metrics")
    assert {(row["rules_version"], row["run_id"]) for row in metrics} == {(rules.version, scored.run_id)}
    history = await fetch(settings, "SELECT validation_errors->>'rules_version' AS rules FROM processing_history "
                                    "WHERE run_id = $1", scored.run_id)
    assert [row["rules"] for row in history] == [rules.version] * 6

    async def events() -> dict[str, int]:
        rows = await fetch(settings, "SELECT message_key, count(*) AS n FROM event_outbox "
                                     "WHERE event_type = 'data.quality_updated' GROUP BY message_key")
        return {row["message_key"]: row["n"] for row in rows}

    # A duplicate guard moves, and nothing it decides changes: every record is rescored and stored with the new
    # version, and none of them is announced again.
    guards = settings.model_copy(update={"duplicate_similarity_threshold": 0.56})
    again = await run_cold_path(guards)
    assert (again.processed, again.rescored, again.stale_remaining) == (6, 6, 0)
    assert await events() == dict.fromkeys(ids, 1)
    after_guards = await policy_rows(guards, ids)
    assert {row["rules_version"] for row in after_guards.values()} == {ScoringRules.from_settings(guards).version}

    # The threshold moves above some of the scores: those become rejected (DP_2002), each with its event and its
    # audited status change; the others say what they said, and are not announced.
    strict = guards.model_copy(update={"quality_score_threshold": 0.9})
    stricter = await run_cold_path(strict)
    assert (stricter.processed, stricter.rescored, stricter.stale_remaining) == (6, 6, 0)
    after = await policy_rows(strict, ids)
    changed = {policy_id for policy_id in ids if after[policy_id]["status"] != after_guards[policy_id]["status"]}
    assert changed == {policy_id for policy_id in ids if after_guards[policy_id]["quality_score"] < 0.9}
    assert len(changed) == 3, after  # closed 150 days ago or more
    assert {after[policy_id]["status"] for policy_id in changed} == {"rejected"}
    assert await events() == {policy_id: 2 if policy_id in changed else 1 for policy_id in ids}
    audits = await fetch(strict, "SELECT entity_id FROM audit_logs WHERE actor = $1 AND action = 'status_changed'",
                         f"cold_path:{stricter.run_id}")
    assert {row["entity_id"] for row in audits} == changed
    assert stricter.rejected_by_code == {"DP_2002": len(changed)}
