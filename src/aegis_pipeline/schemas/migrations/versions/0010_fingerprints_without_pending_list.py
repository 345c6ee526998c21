"""Duplicate detection at national size: the fingerprint index is updated in place, and only active records keep
fingerprints.

- `idx_policy_fingerprints_band_keys` (GIN) without `fastupdate`. With it, new keys wait in a pending list that
  every lookup reads from end to end until it is merged (at `gin_pending_list_limit`, 4 MB): the cold path files
  about 80 keys per record and probes a few thousand keys per batch, so each batch re-read a pending list of
  up to tens of thousands of entries, and PostgreSQL spent 15 ms of CPU per scored record (measured on 10,000
  records). In place, an insert costs a little more and a lookup stays an index descent.
- Fingerprints of records that are not active are deleted: a rejected or archived record is never a canonical
  one, so its keys only made the blocks larger (the cold path now keeps them for active records only).
- Every fingerprint of the old scheme stays until the next cold-path run files its record again under the new
  one (`cold_path.store.ColdPathStore.refresh_fingerprints`); that needs the Python code, not SQL.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER INDEX idx_policy_fingerprints_band_keys SET (fastupdate = off)")
    op.execute("DELETE FROM policy_fingerprints f USING policies p WHERE p.id = f.policy_id AND p.status <> 'active'")


def downgrade() -> None:
    op.execute("ALTER INDEX idx_policy_fingerprints_band_keys RESET (fastupdate)")
