"""Less work per hot-path write: the outbox envelope as bytea kept whole, no index the writes never use.

- `event_outbox.envelope` becomes bytea: the envelope is serialised once, in Python, as UTF-8 JSON, and those
  bytes are stored and sent as they are. As text, each one was decoded to a Python string only for the driver
  to encode it back, and PostgreSQL checked its UTF-8 again; `convert_from(envelope, 'UTF8')::jsonb` still
  reads one in SQL.
- `event_outbox` keeps rows up to 8,160 bytes whole (`toast_tuple_target`): a row lives for the milliseconds
  between commit and the broker's acknowledgement, and above 2 kB PostgreSQL would compress each one (pglz) or
  move it out of line first, for nothing (measured: about 6 µs less per hot-path event, batches of 1,000).
- `idx_event_outbox_unsent` and `idx_event_outbox_sent_at` go, and so does `sent_at`: an event's row is deleted
  once the broker acknowledged it, so `sent_at` was never set, and the unsent index was the primary key again,
  one more index entry per event.
- `processing_history.policy_id` loses its foreign key, as in the design's DDL (§10.1): the history is
  a log written only in the transaction that wrote the policy it names, by the id that write returned, and the
  key's check cost a lookup and a row lock on `policies` per hot-path row (about 5-7 µs per record, measured in
  batches of 1,000). Policies are archived, never deleted, so the cascade it carried never ran.
- `idx_processing_history_run_id` only holds the rows that have a run id (the cold path's, looked up by it);
  the hot path's rows, one per stored policy and without one, no longer enter it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE event_outbox ALTER COLUMN envelope TYPE bytea USING convert_to(envelope, 'UTF8')")
    op.execute("ALTER TABLE event_outbox SET (toast_tuple_target = 8160)")
    op.execute("DROP INDEX idx_event_outbox_unsent")
    op.execute("DROP INDEX idx_event_outbox_sent_at")
    op.execute("ALTER TABLE event_outbox DROP COLUMN sent_at")
    op.execute("DROP INDEX idx_processing_history_run_id")
    op.execute("CREATE INDEX idx_processing_history_run_id ON processing_history (run_id) WHERE run_id IS NOT NULL")
    op.execute("ALTER TABLE processing_history DROP CONSTRAINT processing_history_policy_id_fkey")


def downgrade() -> None:
    op.execute("""
        ALTER TABLE processing_history ADD CONSTRAINT processing_history_policy_id_fkey
        FOREIGN KEY (policy_id) REFERENCES policies (id) ON DELETE CASCADE
    """)
    op.execute("DROP INDEX idx_processing_history_run_id")
    op.execute("CREATE INDEX idx_processing_history_run_id ON processing_history (run_id)")
    op.execute("ALTER TABLE event_outbox ADD COLUMN sent_at timestamptz")
    op.execute("CREATE INDEX idx_event_outbox_sent_at ON event_outbox (sent_at) WHERE sent_at IS NOT NULL")
    op.execute("CREATE INDEX idx_event_outbox_unsent ON event_outbox (id) WHERE sent_at IS NULL")
    op.execute("ALTER TABLE event_outbox RESET (toast_tuple_target)")
    op.execute("ALTER TABLE event_outbox ALTER COLUMN envelope TYPE text USING convert_from(envelope, 'UTF8')")
