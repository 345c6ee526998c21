"""Cold path: duplicate links between policies (the canonical record and the ones that repeat it).

The cold path keeps one canonical record per program and links the others (same program, published by another
source or reworded) to it; the graph sync turns these links into DUPLICATE_OF relationships.

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


def downgrade() -> None:
    op.execute("DROP TABLE policy_duplicates")
