"""The transactional outbox: events are written in the same transaction as the data they describe, and a
relay sends them to Kafka and marks them sent. A crash may send an event twice (same event_id), never lose one,
and never send one for data that did not commit.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE event_outbox (
            id           bigserial PRIMARY KEY,
            event_id     uuid NOT NULL UNIQUE,
            event_type   varchar(64) NOT NULL,
            topic        text NOT NULL,
            message_key  text NOT NULL,
            envelope     jsonb NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            sent_at      timestamptz
        )
    """)
    # The relay reads unsent events in order; sent ones are only kept for a while.
    op.execute("CREATE INDEX idx_event_outbox_unsent ON event_outbox (id) WHERE sent_at IS NULL")
    op.execute("CREATE INDEX idx_event_outbox_sent_at ON event_outbox (sent_at) WHERE sent_at IS NOT NULL")
    op.execute("ALTER TABLE dead_letters ADD COLUMN last_retry_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE dead_letters DROP COLUMN last_retry_at")
    op.execute("DROP TABLE event_outbox")
