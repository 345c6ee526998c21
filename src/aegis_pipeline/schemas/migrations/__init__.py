"""Versioned PostgreSQL migrations (Alembic), run by `aegis-pipeline db upgrade`.

Each file in `versions/` is one step, applied in order and recorded in `alembic_version`; a step is never edited
after it is on main: change the schema with a new step.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aegis_pipeline.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent


def create_engine(dsn: str) -> AsyncEngine:
    """The SQLAlchemy engine Alembic drives, over asyncpg (the only PostgreSQL driver the project ships).

    asyncpg opens each connection from the pipeline's own URL, TLS parameters included, as every other connection
    is opened: SQLAlchemy would pass the URL's `sslmode` to `asyncpg.connect` as an argument it does not take.
    """
    return create_async_engine("postgresql+asyncpg://", async_creator=lambda: asyncpg.connect(dsn))


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["postgres_dsn"] = settings.postgres_dsn()  # read by env.py
    return config


def upgrade_to_head(settings: Settings) -> None:
    command.upgrade(alembic_config(settings), "head")


def downgrade_to(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(settings: Settings) -> str | None:
    """The revision the database is at (None when empty). Call from synchronous code."""
    return asyncio.run(_current_revision_async(settings))


async def _current_revision_async(settings: Settings) -> str | None:
    engine = create_engine(settings.postgres_dsn())
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync_connection: MigrationContext.configure(sync_connection).get_current_revision()
            )
    finally:
        await engine.dispose()
