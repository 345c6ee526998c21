"""Retention's decisions, without a database (`cold_path.retention_rules`): each table's days from its setting, 0
keeps a table whole, `pipeline_metadata` never keeps less than the event re-announce horizon, the cutoff."""

from __future__ import annotations

from datetime import UTC, datetime

from aegis_pipeline.cold_path.retention_rules import TABLES, RetentionReport, TableOutcome, table_rules
from aegis_pipeline.settings import CoreSettings

NOW = datetime(2026, 12, 6, 3, 30, tzinfo=UTC)


def test_each_table_takes_its_setting_and_zero_keeps_it_whole() -> None:
    settings = CoreSettings(retention_days_audit_logs=0, retention_days_processing_history=60,
                            retention_days_quality_metrics=45, retention_days_consistency_reports=14,
                            retention_days_dead_letters=21, retention_days_pipeline_metadata=30)
    rules = {rule.table: rule for rule in table_rules(settings)}
    assert list(rules) == list(TABLES)
    assert {table: rule.days for table, rule in rules.items()} == {
        "audit_logs": 0, "processing_history": 60, "quality_metrics": 45, "consistency_reports": 14,
        "dead_letters": 21, "pipeline_metadata": 30}
    assert rules["audit_logs"].cutoff(NOW) is None
    assert rules["quality_metrics"].cutoff(NOW) == datetime(2026, 10, 22, 3, 30, tzinfo=UTC)


def test_run_records_are_kept_at_least_as_long_as_events_may_be_announced_again() -> None:
    # The broker watch rebuilds data.sync_completed from pipeline_metadata for EVENT_REANNOUNCE_HORIZON_HOURS.
    floor = {rule.table: rule.days for rule in table_rules(CoreSettings(
        retention_days_pipeline_metadata=3, event_reannounce_horizon_hours=24 * 9 + 1))}
    assert floor["pipeline_metadata"] == 10
    kept_whole = {rule.table: rule.days for rule in table_rules(CoreSettings(retention_days_pipeline_metadata=0))}
    assert kept_whole["pipeline_metadata"] == 0


def test_the_report_counts_deleted_and_kept_per_table() -> None:
    report = RetentionReport(run_id="r", dry_run=False, batch_size=3, started_at=NOW, tables={
        "quality_metrics": TableOutcome("quality_metrics", 90, NOW, examined=18, deleted=12, batches=7),
        "audit_logs": TableOutcome("audit_logs", 0, None)})
    assert report.deleted == 12
    assert report.counts() == {"quality_metrics": 12, "audit_logs": 0}
    summary = report.summary()
    assert summary["tables"]["quality_metrics"] == {"days": 90, "cutoff": NOW.isoformat(), "deleted": 12, "kept": 6,
                                                    "batches": 7, "seconds": 0.0}
    assert summary["tables"]["audit_logs"]["cutoff"] is None
