"""Incremental collection: where a source's full listing stands (`collectors.incremental`).

A source collected incrementally (by a date window, or newest first until what was already seen) is also listed
in full every `full_listing.every_days`, to read what the incremental filter cannot see. A catalogue of ten
thousand services under a daily request budget may take several runs, even days, to list; the listing resumes
where the last run stopped:

- `collection_checkpoints.full_listing_next_page` (integer, nullable): the index of the next page of the full
  listing in progress (0 = its first page); NULL when none is in progress.
- `collection_checkpoints.full_listing_completed_at` (timestamptz, nullable): when the last full listing read
  its last page; NULL before the first one completed, so the first run starts one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE collection_checkpoints ADD COLUMN full_listing_next_page integer, "
               "ADD COLUMN full_listing_completed_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE collection_checkpoints DROP COLUMN full_listing_next_page, "
               "DROP COLUMN full_listing_completed_at")
