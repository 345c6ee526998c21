"""Initial schema: policies (the source of truth), the design's bookkeeping tables (§10), the dead-letter table.

The design's SQL used MySQL-style inline INDEX clauses; here each index is a CREATE INDEX of its own.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE policies (
        id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        source_system           text NOT NULL,
        external_id             text NOT NULL,
        title                   varchar(500) NOT NULL,
        content                 text NOT NULL,
        issuing_organization    text NOT NULL,
        target_region           text[] NOT NULL DEFAULT '{}',
        target_industry         text[] NOT NULL DEFAULT '{}',
        funding_type            text,
        application_start_date  date,
        application_end_date    date,
        original_url            text,
        raw_data                jsonb NOT NULL DEFAULT '{}'::jsonb,
        content_hash            char(64) NOT NULL,
        status                  varchar(32) NOT NULL DEFAULT 'pending_validation'
            CHECK (status IN ('pending_validation', 'active', 'rejected', 'archived')),
        quality_score           double precision CHECK (quality_score BETWEEN 0 AND 1),
        version                 integer NOT NULL DEFAULT 1 CHECK (version >= 1),
        collected_at            timestamptz,
        created_at              timestamptz NOT NULL DEFAULT now(),
        updated_at              timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT policies_source_external_id_key UNIQUE (source_system, external_id),
        CONSTRAINT policies_application_dates_ordered
            CHECK (application_end_date IS NULL OR application_start_date IS NULL
                   OR application_end_date >= application_start_date)
    )
    """,
    "CREATE INDEX idx_policies_status ON policies (status)",
    "CREATE INDEX idx_policies_updated_at ON policies (updated_at)",
    "CREATE INDEX idx_policies_content_hash ON policies (content_hash)",
    """
    CREATE TABLE pipeline_metadata (
        id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        pipeline_run_id     varchar(255) NOT NULL,
        processing_path     varchar(50) NOT NULL CHECK (processing_path IN ('hot', 'cold')),
        started_at          timestamptz NOT NULL DEFAULT now(),
        completed_at        timestamptz,
        status              varchar(50) NOT NULL,
        records_processed   integer NOT NULL DEFAULT 0,
        records_failed      integer NOT NULL DEFAULT 0,
        metadata            jsonb
    )
    """,
    "CREATE INDEX idx_pipeline_metadata_run_id ON pipeline_metadata (pipeline_run_id)",
    "CREATE INDEX idx_pipeline_metadata_started_at ON pipeline_metadata (started_at)",
    """
    CREATE TABLE processing_history (
        id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        policy_id           uuid NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
        processing_path     varchar(50) NOT NULL CHECK (processing_path IN ('hot', 'cold')),
        status              varchar(50) NOT NULL,
        quality_score       double precision,
        validation_errors   jsonb,
        processed_at        timestamptz NOT NULL DEFAULT now(),
        processing_time_ms  integer
    )
    """,
    "CREATE INDEX idx_processing_history_policy_id ON processing_history (policy_id)",
    "CREATE INDEX idx_processing_history_processed_at ON processing_history (processed_at)",
    """
    CREATE TABLE quality_metrics (
        id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        policy_id           uuid NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
        total_score         double precision NOT NULL CHECK (total_score BETWEEN 0 AND 1),
        completeness        double precision CHECK (completeness BETWEEN 0 AND 1),
        accuracy            double precision CHECK (accuracy BETWEEN 0 AND 1),
        consistency         double precision CHECK (consistency BETWEEN 0 AND 1),
        timeliness          double precision CHECK (timeliness BETWEEN 0 AND 1),
        calculated_at       timestamptz NOT NULL DEFAULT now(),
        calculation_method  varchar(100)
    )
    """,
    "CREATE INDEX idx_quality_metrics_policy_id ON quality_metrics (policy_id)",
    "CREATE INDEX idx_quality_metrics_calculated_at ON quality_metrics (calculated_at)",
    """
    CREATE TABLE audit_logs (
        id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        entity_type  varchar(100) NOT NULL,
        entity_id    varchar(255) NOT NULL,
        action       varchar(100) NOT NULL,
        actor        varchar(255),
        changes      jsonb,
        "timestamp"  timestamptz NOT NULL DEFAULT now(),
        metadata     jsonb
    )
    """,
    "CREATE INDEX idx_audit_logs_entity_id ON audit_logs (entity_id)",
    'CREATE INDEX idx_audit_logs_timestamp ON audit_logs ("timestamp")',
    # Records and messages no stage could process: what failed, why (DP code and reason), and the payload
    # exactly as received, so a fix can retry it. Mirrors the data-pipeline-dlq topic, but is the durable copy
    # that `dlq list | retry | purge` works on (a topic is not a table).
    """
    CREATE TABLE dead_letters (
        id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        stage            varchar(50) NOT NULL CHECK (stage IN ('collect', 'hot', 'cold', 'sync')),
        source_system    text,
        record_key       text,
        error_code       varchar(16) NOT NULL CHECK (error_code ~ '^DP_[0-9]{4}$'),
        error_message    text NOT NULL,
        error_details    jsonb NOT NULL DEFAULT '{}'::jsonb,
        payload          jsonb,
        payload_text     text,
        retry_count      integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
        status           varchar(20) NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'retried', 'resolved', 'exhausted', 'purged')),
        first_failed_at  timestamptz NOT NULL DEFAULT now(),
        last_failed_at   timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX idx_dead_letters_status ON dead_letters (status, last_failed_at)",
    "CREATE INDEX idx_dead_letters_error_code ON dead_letters (error_code)",
    "CREATE INDEX idx_dead_letters_record_key ON dead_letters (record_key)",
]

DOWNGRADE = [
    "DROP TABLE dead_letters",
    "DROP TABLE audit_logs",
    "DROP TABLE quality_metrics",
    "DROP TABLE processing_history",
    "DROP TABLE pipeline_metadata",
    "DROP TABLE policies",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
