"""The async engine and session factory, built once per process."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from infrastructure.database.migrate import head_revision


def create_engine(url: str, pool_size: int, statement_timeout_ms: int) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1_800,
        # Statement parameters (password hashes, tokens) never appear in errors or logs.
        hide_parameters=True,
        connect_args={
            "server_settings": {
                "statement_timeout": str(statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(statement_timeout_ms * 4),
                "application_name": "knowledge-foundry",
                "timezone": "UTC",
            },
        },
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def migrations_at_head(engine: AsyncEngine) -> bool:
    """True when the database's Alembic revision is the newest one in the code."""
    async with engine.connect() as conn:
        current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    return current is not None and current == head_revision()
