"""Collector state: a checkpoint per source, and the content hash of every record published.

The checkpoint lets a re-run ask a source only for what is new (when the source supports a cursor); the hashes
let a collector skip a record it already published unchanged, whatever the source supports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE collection_checkpoints (
            source_system    text PRIMARY KEY,
            cursor_value     text,
            last_run_at      timestamptz NOT NULL,
            last_success_at  timestamptz,
            last_counts      jsonb NOT NULL DEFAULT '{}'::jsonb
        )
    """)
    op.execute("""
        CREATE TABLE collected_records (
            source_system      text NOT NULL,
            external_id        text NOT NULL,
            content_hash       char(64) NOT NULL,
            first_seen_at      timestamptz NOT NULL DEFAULT now(),
            last_published_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source_system, external_id)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE collected_records")
    op.execute("DROP TABLE collection_checkpoints")
