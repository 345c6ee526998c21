"""Contracts: the record models, the versioned event schemas and the database migrations.

Everything another service or a later version depends on is defined here and nowhere else.
May import: the standard library, pydantic, jsonschema, alembic/sqlalchemy (migrations only), `common`.
"""
