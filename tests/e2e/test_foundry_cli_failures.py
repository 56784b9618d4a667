"""`foundry` commands that cannot do what was asked say why in a line, with an exit code,
never with a traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from infrastructure.container import BackendUrls
from infrastructure.database.migrate import head_revision
from infrastructure.embedded import EmbeddedPostgres
from tests.e2e.test_foundry_up import run_foundry
from tests.helpers import new_database


def test_an_organisation_id_that_is_no_uuid_is_a_usage_error(tmp_path: Path) -> None:
    result = run_foundry(
        "ingest", tmp_path, args=["x", "--email", "e@example.com", "--org", "acme"]
    )
    assert result.returncode == 2
    assert "argument --org: not an organisation id (a UUID): 'acme'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_schema_file_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    output = tmp_path / "missing" / "dir" / "schema.graphql"
    result = run_foundry("schema export", None, args=["--output", str(output)])
    assert result.returncode == 1
    assert f"Cannot write {output}: No such file or directory" in result.stderr
    assert "backend" not in result.stderr  # no backend is involved
    assert "Traceback" not in result.stderr


def test_a_database_migrated_by_a_newer_release_is_said_plainly(
    tmp_path: Path, embedded_postgres: EmbeddedPostgres, urls: BackendUrls
) -> None:
    url = asyncio.run(new_database(embedded_postgres, urls, "newer"))
    name = url.split("?")[0].rsplit("/", 1)[1]  # the host, after "?", is a socket path

    async def migrated_by_a_newer_release() -> None:
        conn = await asyncpg.connect(embedded_postgres._require().get_uri(database=name))
        try:
            await conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
            await conn.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
        finally:
            await conn.close()

    asyncio.run(migrated_by_a_newer_release())
    result = run_foundry(
        "migrate", tmp_path, FOUNDRY_DATABASE_URL=url, FOUNDRY_REDIS_URL=urls.redis_url
    )
    assert result.returncode == 1
    assert "The database was migrated by a newer release of Knowledge Foundry" in result.stderr
    assert f"whose newest is {head_revision()}" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_embedded_server_that_does_not_start_is_said_plainly(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    server = EmbeddedPostgres(state_dir, "foundry_broken", batch_scheduling=False)
    server.start()  # a data directory...
    server.stop()
    with (state_dir / "postgres" / "postgresql.conf").open("a") as conf:
        conf.write("this is not a setting\n")  # ...the server refuses to start with
    result = run_foundry("migrate", state_dir)
    assert result.returncode == 1
    assert (
        "The embedded PostgreSQL did not start (pg_ctl exited with code 1); "
        f"see its log, {state_dir / 'postgres' / 'log'}"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (state_dir / "postgres" / "postmaster.pid").exists()
