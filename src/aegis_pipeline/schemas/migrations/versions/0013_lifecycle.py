"""A programme's end of life (docs/lifecycle.md): archived when it closed or its source stopped listing it.

- `policies.archived_at` (timestamptz) and `policies.archived_reason` (`closed`: its application period ended more
  than ARCHIVE_AFTER_DAYS ago; `withdrawn`: a complete listing of its source no longer had it): set with
  `status = 'archived'`, cleared when it comes back.
- `collected_records.last_listed_at` (timestamptz): when a listing of the source last showed the record, changed
  or not (the "mark" of mark and sweep). NULL: not since this column exists.
- `collection_checkpoints.listing_started_at`: when the complete listing in progress started (a full listing
  may take several runs); `collection_checkpoints.last_complete_listing_at`: the start of the last listing that
  read the source to its end. A record not listed since then was withdrawn (the "sweep", by the cold path).
- `idx_policies_active_end_date`: the active policies by end date, for the hourly search of closed ones.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE policies ADD COLUMN archived_at timestamptz, ADD COLUMN archived_reason text "
    "CHECK (archived_reason IN ('closed', 'withdrawn'))",
    "ALTER TABLE collected_records ADD COLUMN last_listed_at timestamptz",
    "ALTER TABLE collection_checkpoints ADD COLUMN listing_started_at timestamptz, "
    "ADD COLUMN last_complete_listing_at timestamptz",
    "CREATE INDEX idx_policies_active_end_date ON policies (application_end_date) WHERE status = 'active'",
]

DOWNGRADE = [
    "DROP INDEX idx_policies_active_end_date",
    "ALTER TABLE collection_checkpoints DROP COLUMN listing_started_at, DROP COLUMN last_complete_listing_at",
    "ALTER TABLE collected_records DROP COLUMN last_listed_at",
    "ALTER TABLE policies DROP COLUMN archived_at, DROP COLUMN archived_reason",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
