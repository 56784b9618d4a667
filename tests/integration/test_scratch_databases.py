"""Tests that change the schema work on a database of their own, on the server the suite
uses: the embedded one, or FOUNDRY_TEST_DATABASE_URL's (never the shared database, and
never the embedded server when the suite runs elsewhere)."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from infrastructure.container import BackendUrls
from infrastructure.database.engine import create_engine
from tests.helpers import admin_dsn_for, scratch_database

DATABASES = "SELECT datname FROM pg_database WHERE datname = $1"


async def test_a_scratch_database_is_a_new_database_beside_the_suites(
    urls: BackendUrls, admin_dsn: str
) -> None:
    url = await scratch_database(urls, "scratch")
    name = make_url(url).database
    assert name is not None and name != make_url(urls.database_url).database
    # Everything but the database is the suite's: same server, user and options.
    assert make_url(url).set(database="x") == make_url(urls.database_url).set(database="x")
    admin = await asyncpg.connect(admin_dsn)
    try:
        assert await admin.fetchval(DATABASES, name) == name  # made on the suite's server
    finally:
        await admin.close()
    scratch = await asyncpg.connect(admin_dsn_for(url))
    try:
        assert await scratch.fetchval("SELECT current_database()") == name
        assert (
            await scratch.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            == 0
        )
    finally:
        await scratch.close()


async def test_the_admin_dsn_reaches_the_suites_connections(
    urls: BackendUrls, admin_dsn: str
) -> None:
    """What tests that end a backend rely on: the pid is one of the suite's server."""
    engine = create_engine(urls.database_url, pool_size=1, statement_timeout_ms=5_000)
    try:
        async with engine.connect() as conn:
            backend = await conn.scalar(text("SELECT pg_backend_pid()"))
            admin = await asyncpg.connect(admin_dsn)
            try:
                seen = await admin.fetchval(
                    "SELECT datname FROM pg_stat_activity WHERE pid = $1", backend
                )
            finally:
                await admin.close()
    finally:
        await engine.dispose()
    assert seen == make_url(urls.database_url).database
