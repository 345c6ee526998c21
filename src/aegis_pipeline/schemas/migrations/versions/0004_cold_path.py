"""Cold path: duplicate links between policies, what each policy's last scoring covered, fingerprints for
near-duplicate lookup, and the run id on the per-record history (lineage).

- `policy_duplicates`: the cold path keeps one canonical record per program and links the others (same
  program, published by another source or reworded) to it; the graph sync turns these links into DUPLICATE_OF
  relationships.
- `policies.scored_version` / `scored_at` / `status_reasons`: which version of the record the current status
  and score belong to, when, and why (rejection reasons, DP codes). A record whose `version` moved past
  `scored_version` is scored again on the next run.
- `policy_fingerprints`: the MinHash band keys of each scored record (cold_path/duplicates.py); a GIN index
  finds the records sharing a band with a new one, so duplicate detection never scans the whole table.
- `processing_history.run_id`, `quality_metrics.run_id`: which pipeline run (`pipeline_metadata.pipeline_run_id`)
  wrote the row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE policy_duplicates (
            policy_id     uuid PRIMARY KEY REFERENCES policies (id) ON DELETE CASCADE,
            canonical_id  uuid NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
            similarity    double precision NOT NULL CHECK (similarity BETWEEN 0 AND 1),
            method        varchar(100) NOT NULL,
            run_id        varchar(255) NOT NULL,
            detected_at   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT policy_duplicates_not_self CHECK (policy_id <> canonical_id)
        )
    """)
    op.execute("CREATE INDEX idx_policy_duplicates_canonical_id ON policy_duplicates (canonical_id)")
    op.execute("""
        ALTER TABLE policies
            ADD COLUMN scored_version  integer,
            ADD COLUMN scored_at       timestamptz,
            ADD COLUMN status_reasons  jsonb NOT NULL DEFAULT '[]'::jsonb
    """)
    # What the cold path loads: records waiting for a score, or changed since their last one.
    op.execute("""
        CREATE INDEX idx_policies_needs_scoring ON policies (updated_at, id)
        WHERE status = 'pending_validation' OR scored_version IS DISTINCT FROM version
    """)
    op.execute("""
        CREATE TABLE policy_fingerprints (
            policy_id    uuid PRIMARY KEY REFERENCES policies (id) ON DELETE CASCADE,
            band_keys    bigint[] NOT NULL,
            scheme       varchar(50) NOT NULL,
            computed_at  timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("CREATE INDEX idx_policy_fingerprints_band_keys ON policy_fingerprints USING gin (band_keys)")
    op.execute("ALTER TABLE processing_history ADD COLUMN run_id varchar(255)")
    op.execute("CREATE INDEX idx_processing_history_run_id ON processing_history (run_id)")
    op.execute("ALTER TABLE quality_metrics ADD COLUMN run_id varchar(255)")


def downgrade() -> None:
    op.execute("ALTER TABLE quality_metrics DROP COLUMN run_id")
    op.execute("DROP INDEX idx_processing_history_run_id")
    op.execute("ALTER TABLE processing_history DROP COLUMN run_id")
    op.execute("DROP TABLE policy_fingerprints")
    op.execute("DROP INDEX idx_policies_needs_scoring")
    op.execute("ALTER TABLE policies DROP COLUMN status_reasons, DROP COLUMN scored_at, DROP COLUMN scored_version")
    op.execute("DROP TABLE policy_duplicates")
