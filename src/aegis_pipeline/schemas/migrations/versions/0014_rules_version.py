"""Scores tied to their rules (`cold_path/scoring_rules.py`): which scoring rules decided each score and status.

- `scoring_rules_versions`: one row per rules version the cold path has used. `version` (text, the key): the
  first 12 hex digits of the SHA-256 of the rules' canonical JSON; `parameters` (jsonb): those rules, the
  weights, threshold, duplicate guards and the code's constants they stand for, so that an operator can read
  what a version means; `first_used_at` (timestamptz): when a run first used it. Versions are ordered by
  `first_used_at`: "oldest version first" means that order.
- `policies.rules_version` (text, nullable, references `scoring_rules_versions`): the version under which the
  policy's current status and score were decided (written with `scored_version` and `scored_at`). NULL: scored
  before versions existed (every policy scored before this migration), or never scored; a NULL scored record is
  on the oldest version of all, and is rescored first.
- `quality_metrics.rules_version` (text, nullable, references `scoring_rules_versions`): the version of the rules
  that computed the row's scores. NULL: computed before versions existed.
- `idx_policies_rules_version`: scored policies (active or rejected) by rules version, so that the cold path
  finds the records of one older version by index, batch after batch, without reading the whole table.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE scoring_rules_versions (
        version        text PRIMARY KEY CHECK (version ~ '^[0-9a-f]{12}$'),
        parameters     jsonb NOT NULL,
        first_used_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
    "ALTER TABLE policies ADD COLUMN rules_version text REFERENCES scoring_rules_versions (version)",
    "ALTER TABLE quality_metrics ADD COLUMN rules_version text REFERENCES scoring_rules_versions (version)",
    "CREATE INDEX idx_policies_rules_version ON policies (rules_version, id) "
    "WHERE status IN ('active', 'rejected')",
]

DOWNGRADE = [
    "DROP INDEX idx_policies_rules_version",
    "ALTER TABLE quality_metrics DROP COLUMN rules_version",
    "ALTER TABLE policies DROP COLUMN rules_version",
    "DROP TABLE scoring_rules_versions",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
