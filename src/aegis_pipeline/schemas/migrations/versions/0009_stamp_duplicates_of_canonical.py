"""Sync: a policy whose activeness changes re-stamps its active duplicates, whose graph documents depend on it.

A duplicate's DUPLICATE_OF link exists in the graph only while its canonical policy is active (a policy that is
not active is no node there), so the duplicate's checksum marks a canonical policy that is not active
(`sync.source.CHECKSUM_SQL`). When the canonical policy becomes active or stops being active, its duplicates'
checksums change although their rows did not: this trigger stamps them (`sync_xid`, through the stamping trigger
of 0005), so the next sync writes them again instead of the consistency check finding them stale.

Only active duplicates are stamped: the others are no document in any target. The cold path rejects every
duplicate it links, so in its normal course the trigger finds none and costs one probe of
`idx_policy_duplicates_canonical_id` per status change into or out of `active` (the WHEN clause keeps every other
update of a policy from calling it at all), and it takes no row lock the cold path or the hot path would wait for.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE FUNCTION policies_stamp_active_duplicates() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        duplicates uuid[] := ARRAY(SELECT policy_id FROM policy_duplicates WHERE canonical_id = NEW.id);
    BEGIN
        -- By primary key only: written as a join or IN, the plan cached for this function once walked every
        -- active policy (statistics taken while none was active said there were none), per status change.
        IF cardinality(duplicates) > 0 THEN
            UPDATE policies SET sync_xid = 0 WHERE id = ANY(duplicates) AND status = 'active';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER policies_stamp_active_duplicates AFTER UPDATE OF status ON policies
    FOR EACH ROW WHEN ((OLD.status = 'active') IS DISTINCT FROM (NEW.status = 'active'))
    EXECUTE FUNCTION policies_stamp_active_duplicates()
    """,
]

DOWNGRADE = [
    "DROP TRIGGER policies_stamp_active_duplicates ON policies",
    "DROP FUNCTION policies_stamp_active_duplicates()",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
