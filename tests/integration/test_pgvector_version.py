"""A pgvector older than 0.8 breaks every tenant transaction (its hnsw.* settings do not
exist there): `foundry migrate` refuses such a database in one line and /readyz reports
it. The old version is faked in a scratch database by rewriting the catalogue's record of
the extension, which is what the checks read."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from infrastructure.cli import _migrate
from infrastructure.cli_errors import CommandFailed
from infrastructure.container import BackendUrls, Container
from infrastructure.database.migrate import upgrade_to_head
from infrastructure.settings import Settings
from tests.e2e.test_foundry_up import clean_env
from tests.helpers import admin_dsn_for, scratch_database

TOO_OLD = (
    "pgvector 0.7.4 is too old: Knowledge Foundry needs 0.8.0 or newer "
    "(upgrade pgvector, then run ALTER EXTENSION vector UPDATE)"
)


async def _pretend_pgvector(url: str, version: str, *, create: bool = False) -> None:
    """Make the database's catalogue say pgvector ``version`` is installed."""
    conn = await asyncpg.connect(admin_dsn_for(url))
    try:
        if create:
            await conn.execute("CREATE EXTENSION vector")
        await conn.execute(
            "UPDATE pg_extension SET extversion = $1 WHERE extname = 'vector'", version
        )
    finally:
        await conn.close()


async def test_readiness_reports_a_pgvector_older_than_0_8(
    settings: Settings, urls: BackendUrls
) -> None:
    url = await scratch_database(urls, "foundry_old_vector")
    await asyncio.to_thread(upgrade_to_head, url, settings.database_app_role)
    container = Container(settings, BackendUrls(url, urls.redis_url))
    try:
        assert (await container.readiness())["database"] == "ok"
        await _pretend_pgvector(url, "0.7.4")
        old = await asyncio.wait_for(container.readiness(), timeout=10)
        await _pretend_pgvector(url, "0.10.0")
        newer = await asyncio.wait_for(container.readiness(), timeout=10)
    finally:
        await container.aclose()
    assert old["database"] == TOO_OLD
    assert newer["database"] == "ok"


async def test_migrate_refuses_a_pgvector_older_than_0_8_in_one_line(
    settings: Settings, urls: BackendUrls
) -> None:
    url = await scratch_database(urls, "foundry_old_vector_migrate")
    await _pretend_pgvector(url, "0.7.4", create=True)
    with pytest.raises(CommandFailed) as refused:
        await asyncio.to_thread(_migrate, settings, BackendUrls(url, urls.redis_url))
    assert str(refused.value) == f"Cannot migrate the database: {TOO_OLD}."
    conn = await asyncpg.connect(admin_dsn_for(url))
    try:  # refused before any migration ran
        assert await conn.fetchval("SELECT to_regclass('alembic_version')") is None
    finally:
        await conn.close()


async def test_a_worker_on_a_pgvector_older_than_0_8_names_the_upgrade_not_a_migration(
    settings: Settings, urls: BackendUrls, tmp_path: Path
) -> None:
    url = await scratch_database(urls, "foundry_old_vector_worker")
    await asyncio.to_thread(upgrade_to_head, url, settings.database_app_role)
    await _pretend_pgvector(url, "0.7.4")
    worker = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "infrastructure.cli", "worker", "--state-dir", str(tmp_path)],
        env=clean_env(FOUNDRY_DATABASE_URL=url, FOUNDRY_REDIS_URL=urls.redis_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 2, worker.stderr
    assert f"Cannot start the worker: {TOO_OLD}." in worker.stderr
    assert "schema is behind" not in worker.stderr
