"""Sync: a change marker on policies, a watermark per sync target, stored embeddings, consistency reports.

Change tracking. A trigger stamps each inserted or updated policy with the id of the writing transaction
(`sync_xid`, from `pg_current_xact_id()`); a change to a policy's duplicate link stamps the policy too. A sync run
reads the policies stamped at or after its target's watermark, and its next watermark is the snapshot's xmin,
taken before reading: every transaction below it has finished, so a transaction that commits late (after rows of
later transactions were read) still has an id at or above the new watermark and is read by the next run. Rows
near the watermark may be read twice; target writes are idempotent upserts keyed by id and carrying the checksum.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE policies ADD COLUMN sync_xid bigint NOT NULL DEFAULT 0",
    "CREATE INDEX idx_policies_sync_xid ON policies (sync_xid, id)",
    """
    CREATE FUNCTION policies_stamp_sync_xid() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.sync_xid := pg_current_xact_id()::text::bigint;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER policies_stamp_sync_xid BEFORE INSERT OR UPDATE ON policies
    FOR EACH ROW EXECUTE FUNCTION policies_stamp_sync_xid()
    """,
    # A duplicate link is part of the linked policy's graph document: re-stamp that policy.
    """
    CREATE FUNCTION policy_duplicates_stamp_policy() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE policies SET sync_xid = 0 WHERE id = OLD.policy_id;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            UPDATE policies SET sync_xid = 0 WHERE id = NEW.policy_id;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER policy_duplicates_stamp_policy AFTER INSERT OR UPDATE OR DELETE ON policy_duplicates
    FOR EACH ROW EXECUTE FUNCTION policy_duplicates_stamp_policy()
    """,
    "UPDATE policies SET sync_xid = 0",  # existing rows: stamped by the trigger, so the first run reads them
    """
    CREATE TABLE sync_watermarks (
        target           varchar(32) PRIMARY KEY CHECK (target IN ('vectors', 'graph', 'search')),
        watermark_xid    bigint NOT NULL,
        last_run_id      varchar(255) NOT NULL,
        last_success_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
    # Embeddings by the hash of the embedded text and the model, so no text is ever encoded twice.
    """
    CREATE TABLE text_embeddings (
        text_hash   char(64) NOT NULL,
        model       varchar(200) NOT NULL,
        dimension   integer NOT NULL CHECK (dimension > 0),
        embedding   bytea NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (text_hash, model)
    )
    """,
    """
    CREATE TABLE consistency_reports (
        id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        kind          varchar(16) NOT NULL CHECK (kind IN ('check', 'repair')),
        consistent    boolean NOT NULL,
        report        jsonb NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX idx_consistency_reports_created_at ON consistency_reports (created_at)",
]

DOWNGRADE = [
    "DROP TABLE consistency_reports",
    "DROP TABLE text_embeddings",
    "DROP TABLE sync_watermarks",
    "DROP TRIGGER policy_duplicates_stamp_policy ON policy_duplicates",
    "DROP FUNCTION policy_duplicates_stamp_policy()",
    "DROP TRIGGER policies_stamp_sync_xid ON policies",
    "DROP FUNCTION policies_stamp_sync_xid()",
    "ALTER TABLE policies DROP COLUMN sync_xid",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
