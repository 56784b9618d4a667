"""Replicas that start together each run `foundry migrate` (or `up`) on the same database:
they take turns, and both succeed. A migration the database refuses is reported as such,
not as a backend that cannot be reached."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from infrastructure.container import BackendUrls
from infrastructure.database.migrate import head_revision, upgrade_to_head
from infrastructure.embedded import EmbeddedPostgres
from tests.e2e.test_foundry_up import clean_env
from tests.helpers import admin_dsn_for, new_database

FOUNDRY = [sys.executable, "-m", "infrastructure.cli"]


def _dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _migrate(database_url: str, redis_url: str, state_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*FOUNDRY, "migrate", "--state-dir", str(state_dir)],
        env=clean_env(FOUNDRY_DATABASE_URL=database_url, FOUNDRY_REDIS_URL=redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _wait_until_blocked(url: str, sessions: int) -> None:
    """Until ``sessions`` connections to ``url``'s database wait for a lock (asked on a
    connection of its own: inside a transaction, pg_stat_activity stays as first read)."""
    admin = await asyncpg.connect(_dsn(url))
    try:
        await _poll_blocked(admin, make_url(url).database or "", sessions)
    finally:
        await admin.close()


async def _poll_blocked(admin: asyncpg.Connection, database: str, sessions: int) -> None:
    for _ in range(1200):
        waiting = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
            database,
        )
        if waiting >= sessions:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{waiting} of {sessions} migrations reached the database")


async def test_replicas_migrating_a_fresh_database_at_once_all_succeed(
    embedded_postgres: EmbeddedPostgres, urls: BackendUrls, tmp_path: Path
) -> None:
    url = await new_database(embedded_postgres, urls, "concurrent_migrate")
    gate = await asyncpg.connect(_dsn(url))
    try:
        # Every replica must be inside its migration before any of them gets far, as
        # when they start together: an uncommitted table they all need holds them...
        opened = gate.transaction()
        await opened.start()
        await gate.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        replicas = [_migrate(url, urls.redis_url, tmp_path / f"r{n}") for n in range(3)]
        await _wait_until_blocked(url, len(replicas))
        await opened.rollback()  # ...and lets them all go at once.
        outcomes = [replica.communicate(timeout=180) for replica in replicas]
        for replica, (stdout, stderr) in zip(replicas, outcomes, strict=True):
            assert replica.returncode == 0, stderr
            assert "Migrations applied." in stdout
        assert await gate.fetchval("SELECT version_num FROM alembic_version") == head_revision()
    finally:
        await gate.close()


async def test_a_migration_the_database_refuses_is_reported_as_a_failed_migration(
    embedded_postgres: EmbeddedPostgres, urls: BackendUrls, tmp_path: Path
) -> None:
    """Here an object the first migration creates is already there."""
    url = await new_database(embedded_postgres, urls, "refused_migrate")
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute("CREATE TABLE organizations (id int)")
    finally:
        await conn.close()
    refused = _migrate(url, urls.redis_url, tmp_path)
    _, stderr = refused.communicate(timeout=180)
    assert refused.returncode == 1
    assert "Cannot migrate the database: DuplicateTableError" in stderr
    assert "Cannot reach a backend" not in stderr
    assert "Traceback" not in stderr


async def test_a_database_migrated_while_another_creates_the_app_role_succeeds(
    embedded_postgres: EmbeddedPostgres, urls: BackendUrls
) -> None:
    """Roles belong to the server, not to a database, and a migration's lock is per
    database: two databases migrated at once on one server both create the app role.
    Here another session has created it but not yet committed when this migration
    creates it too."""
    url = await new_database(embedded_postgres, urls, "role_race_migrate")
    role = f"race_app_{uuid.uuid4().hex[:8]}"
    other = await asyncpg.connect(admin_dsn_for(urls.database_url))
    try:
        creating = other.transaction()
        await creating.start()
        await other.execute(f"CREATE ROLE {role} NOLOGIN")
        migration = asyncio.create_task(asyncio.to_thread(upgrade_to_head, url, role))
        await _wait_until_blocked(url, 1)  # its CREATE ROLE waits for ours...
        await creating.commit()  # ...which now exists.
        await asyncio.wait_for(migration, timeout=180)
        check = await asyncpg.connect(_dsn(url))
        try:
            assert await check.fetchval("SELECT version_num FROM alembic_version") == (
                head_revision()
            )
            assert await check.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", role)
        finally:
            await check.close()
    finally:
        # The role outlives the database only until both are dropped (roles are the server's).
        await other.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        await other.execute(f"DROP ROLE IF EXISTS {role}")
        await other.close()
