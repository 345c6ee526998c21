"""Contracts: the versioned event schemas and the database migrations.

Everything another service or a later version depends on is defined here and nowhere else; the record as
collected (the raw topic's contract, `RawPolicyData`) is the policy's input model and lives with it, in `domain`.
May import: the standard library, pydantic, jsonschema, alembic/sqlalchemy (migrations only), `domain`, `common`.
"""
