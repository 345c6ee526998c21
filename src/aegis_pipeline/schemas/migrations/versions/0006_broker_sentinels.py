"""What the hot path knows about the broker's data: one row per sentinel topic it created. A sentinel topic that
is missing although a row says it was created means the broker lost its data (the embedded broker keeps it in
memory); the hot path then announces again what the broker may have lost (hot_path/broker_watch.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE broker_sentinels (
            sentinel_topic     text PRIMARY KEY,
            created_at         timestamptz NOT NULL DEFAULT now(),
            last_recovered_at  timestamptz,
            recoveries         integer NOT NULL DEFAULT 0 CHECK (recoveries >= 0)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE broker_sentinels")
