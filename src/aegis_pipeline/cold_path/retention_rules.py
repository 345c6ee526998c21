"""Retention, the decisions: which tables lose their old rows, from which age, and what each keeps however old.
Pure (no I/O; `now` is passed in). `cold_path/retention.py` applies them, batch after batch, in SQL.

What each table keeps however old (a row's age in brackets):

- `audit_logs` (`timestamp`): each entity's latest status change (an entry whose `changes` has `status`).
- `processing_history` (`processed_at`): each policy's latest row per path (hot: its last arrival; cold: the
  decision behind its status).
- `quality_metrics` (`calculated_at`): each policy's latest score.
- `consistency_reports` (`created_at`): the latest report of each kind (check, repair), and the latest of each
  kind per target it names.
- `dead_letters` (last failure): every letter that is not closed (pending, exhausted, or any state but resolved
  and purged), and a closed one retried last within the retention.
- `pipeline_metadata` (`started_at`): the latest run of each kind (cold, sync, retention...); its retention is
  never shorter than EVENT_REANNOUNCE_HORIZON_HOURS (the broker watch rebuilds sync events from these rows).

Tables that do not grow per run are left alone: `event_outbox` holds events not yet sent (the relay deletes each
row once the broker has it; deleting one here would lose the event), `policies`, `policy_duplicates`,
`policy_fingerprints`, `collected_records` hold one row per policy or record, and `collection_checkpoints`,
`sync_watermarks`, `broker_sentinels`, `scoring_rules_versions` a row per source, target, topic or rules version.
`text_embeddings` holds one row per text embedded: it grows with changed texts, not with runs, and an
embedding no current text uses is not deleted yet (docs/scale.md, Retention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aegis_pipeline.settings import CoreSettings

# Dead letters nobody has to deal with any more; every other state (pending: a retry will take it; exhausted: a
# person must) is never deleted, nor a state added later that is not listed here.
CLOSED_LETTER_STATUSES = ("resolved", "purged")

# The tables, in the order a run works through them.
TABLES = ("audit_logs", "processing_history", "quality_metrics", "consistency_reports", "dead_letters",
          "pipeline_metadata")


@dataclass(frozen=True)
class TableRule:
    table: str
    days: int  # rows older than this many days go (what must stay aside); 0: the table is kept whole

    def cutoff(self, now: datetime) -> datetime | None:
        """Rows older than this are deleted (unless kept); None: none is."""
        return now - timedelta(days=self.days) if self.days > 0 else None


def table_rules(settings: CoreSettings) -> list[TableRule]:
    """Each table's rule from the RETENTION_DAYS_* settings. `pipeline_metadata` keeps at least the event
    re-announce horizon: after a broker loses its data, the sync runs within it are announced again from there."""
    horizon_days = math.ceil(settings.event_reannounce_horizon_hours / 24)
    days = {
        "audit_logs": settings.retention_days_audit_logs,
        "processing_history": settings.retention_days_processing_history,
        "quality_metrics": settings.retention_days_quality_metrics,
        "consistency_reports": settings.retention_days_consistency_reports,
        "dead_letters": settings.retention_days_dead_letters,
        "pipeline_metadata": settings.retention_days_pipeline_metadata,
    }
    if days["pipeline_metadata"]:
        days["pipeline_metadata"] = max(days["pipeline_metadata"], horizon_days)
    return [TableRule(table, days[table]) for table in TABLES]


@dataclass
class TableOutcome:
    """What a run did to one table. `examined`: rows past the cutoff it looked at; `deleted`: of those, removed
    (a dry run: would be); the rest were kept (a row that must stay, or one locked by a writer at that moment)."""

    table: str
    days: int
    cutoff: datetime | None
    examined: int = 0
    deleted: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return self.examined - self.deleted

    def as_dict(self) -> dict[str, Any]:
        return {"days": self.days, "cutoff": self.cutoff.isoformat() if self.cutoff else None,
                "deleted": self.deleted, "kept": self.kept, "batches": self.batches, "seconds": self.seconds}


@dataclass
class RetentionReport:
    run_id: str
    dry_run: bool
    batch_size: int
    started_at: datetime
    tables: dict[str, TableOutcome] = field(default_factory=dict)
    duration_seconds: float = 0.0

    @property
    def deleted(self) -> int:
        return sum(outcome.deleted for outcome in self.tables.values())

    def counts(self) -> dict[str, int]:
        """Rows deleted per table (a dry run: rows it would delete)."""
        return {table: outcome.deleted for table, outcome in self.tables.items()}

    def summary(self) -> dict[str, Any]:
        """What `retention --json` prints and the DAG task returns."""
        return {"run_id": self.run_id, "dry_run": self.dry_run, "deleted": self.deleted,
                "batch_size": self.batch_size, "duration_seconds": self.duration_seconds,
                "tables": {table: outcome.as_dict() for table, outcome in self.tables.items()}}
