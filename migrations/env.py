"""Alembic environment: async engine, URL and app role handed in by ``foundry migrate``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from infrastructure.database.models import Base

config = context.config
target_metadata = Base.metadata
# Any fixed key: the same for every release, so replicas of different releases queue too.
MIGRATION_LOCK_KEY = 0x6B66_6D69_6772  # "kfmigr"


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        # Replicas starting together (`foundry up`/`migrate` on each) take turns: the
        # next one reads the revision after the first committed and finds nothing to
        # do, instead of running the same DDL and failing on what the first created.
        # Released with the transaction, also when a migration fails.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def _run_async() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "sqlalchemy.url is not configured; run migrations through `foundry migrate`"
        )
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
