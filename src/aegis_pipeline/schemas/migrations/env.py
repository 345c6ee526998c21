"""Alembic environment: runs the migrations over an asyncpg connection (no other driver is installed)."""

from __future__ import annotations

import asyncio

from alembic import context

from aegis_pipeline.schemas.migrations import create_engine


def _run(connection: object) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(context.config.attributes["postgres_dsn"])
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


asyncio.run(_run_online())
