"""The pool replaces connections the server has closed (no ping on every checkout)."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import text

from infrastructure.container import BackendUrls
from infrastructure.database.engine import create_engine
from infrastructure.embedded import EmbeddedPostgres

BACKEND = text("SELECT pg_backend_pid()")


async def test_a_connection_closed_by_the_server_while_idle_is_replaced(
    urls: BackendUrls, embedded_postgres: EmbeddedPostgres
) -> None:
    engine = create_engine(urls.database_url, pool_size=1, statement_timeout_ms=5_000)
    try:
        async with engine.connect() as conn:
            first = await conn.scalar(BACKEND)
        # The server ends that backend (a restart or an idle timeout does the same).
        admin = await asyncpg.connect(embedded_postgres.admin_dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        await asyncio.sleep(0.3)  # the termination notice reaches the idle connection

        async with engine.connect() as conn:
            second = await conn.scalar(BACKEND)
        assert second != first
    finally:
        await engine.dispose()
