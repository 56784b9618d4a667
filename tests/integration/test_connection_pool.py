"""The pool replaces connections the server has closed (no ping on every checkout)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
from sqlalchemy import text

from infrastructure.container import BackendUrls
from infrastructure.database.engine import create_engine
from infrastructure.embedded import EmbeddedPostgres

BACKEND = text("SELECT pg_backend_pid()")


async def closed_by_the_server(driver: asyncpg.Connection) -> None:
    """Until the idle ``driver`` has read the server's termination notice (what the pool's
    checkout looks at); fails if it never does."""
    deadline = time.monotonic() + 30
    while not driver.is_closed():
        assert time.monotonic() < deadline, "the idle connection never saw its backend end"
        await asyncio.sleep(0.02)


async def test_a_connection_closed_by_the_server_while_idle_is_replaced(
    urls: BackendUrls, embedded_postgres: EmbeddedPostgres
) -> None:
    engine = create_engine(urls.database_url, pool_size=1, statement_timeout_ms=5_000)
    try:
        async with engine.connect() as conn:
            first = await conn.scalar(BACKEND)
            driver = (await conn.get_raw_connection()).driver_connection
        assert isinstance(driver, asyncpg.Connection)
        # The server ends that backend (a restart or an idle timeout does the same).
        admin = await asyncpg.connect(embedded_postgres.admin_dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        await closed_by_the_server(driver)

        async with engine.connect() as conn:
            second = await conn.scalar(BACKEND)
        assert second != first
    finally:
        await engine.dispose()
