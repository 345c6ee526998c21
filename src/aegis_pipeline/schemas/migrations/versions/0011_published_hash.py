"""Records are cleaned once, in the hot path: `policies.published_hash` says which published record is stored.

The collectors used to clean every record they published only to learn the content hash the hot path would
store, and remembered that hash (`collected_records.content_hash`) to find records the broker acknowledged but
never delivered (`collectors.state.CollectorState.unstored`). Now they remember the content hash of the record as
published, before cleaning (`domain.hashing.published_hash`), and the hot path stores that same hash, computed
from the record it received, beside the version it made of it:

- `policies.published_hash` (text, nullable): the content hash of the record as last published, for the stored
  version. The hot path keeps it current even when the cleaned content is unchanged (a record published again
  that cleans to the same policy: no new version, no event, only this column).
- Existing rows get their `content_hash`: the hash of a record whose cleaning changed nothing, and the hash the
  collectors remembered until now. So `unstored` finds nothing missing after the upgrade; a record whose
  cleaning did change something is published once more by the next collection (its hash as published differs
  from the one remembered), which the hot path stores as unchanged, setting its published hash.
  The backfill runs without the sync's stamping trigger (migration 0005): nothing a target holds changes, so
  the next sync must not read every policy again.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE policies ADD COLUMN published_hash text")
    op.execute("ALTER TABLE policies DISABLE TRIGGER policies_stamp_sync_xid")
    op.execute("UPDATE policies SET published_hash = content_hash")
    op.execute("ALTER TABLE policies ENABLE TRIGGER policies_stamp_sync_xid")


def downgrade() -> None:
    op.execute("ALTER TABLE policies DROP COLUMN published_hash")
