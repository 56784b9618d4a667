"""The embedded PostgreSQL runs with our shared_buffers, applied at each start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from infrastructure.embedded import (
    SETTINGS_FILE,
    EmbeddedPostgres,
    default_shared_buffers_mb,
    memory_bytes,
)

SHARED_BUFFERS_MB = "SELECT setting::bigint * 8192 / 1048576 FROM pg_settings WHERE name = $1"


async def shared_buffers_mb(server: EmbeddedPostgres) -> int:
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        value: int = await conn.fetchval(SHARED_BUFFERS_MB, "shared_buffers")
        return value
    finally:
        await conn.close()


def test_the_default_is_a_quarter_of_the_memory_within_bounds(tmp_path: Path) -> None:
    assert 128 <= default_shared_buffers_mb() <= 1_024
    limit = tmp_path / "memory.max"
    limit.write_text(f"{2 * 2**30}\n")  # a container limited to 2 GB (on a larger machine)
    machine = memory_bytes([])
    assert machine is not None
    assert default_shared_buffers_mb([limit]) == max(128, min(2 * 2**30, machine) // 4 // 2**20)
    limit.write_text(f"{256 * 2**20}\n")
    assert default_shared_buffers_mb([limit]) == 128  # never below PostgreSQL's own
    limit.write_text("max\n")  # cgroup v2: no limit; the machine's memory counts
    assert default_shared_buffers_mb([limit]) == default_shared_buffers_mb([])


async def test_the_suites_server_runs_with_the_default(
    embedded_postgres: EmbeddedPostgres,
) -> None:
    assert await shared_buffers_mb(embedded_postgres) == default_shared_buffers_mb()


def test_a_changed_setting_is_applied_at_the_next_start(tmp_path: Path) -> None:
    for wanted in (160, 192):  # the first start also makes the data directory
        server = EmbeddedPostgres(tmp_path, "foundry_tuning", shared_buffers_mb=wanted)
        server.start()
        try:
            assert asyncio.run(shared_buffers_mb(server)) == wanted
        finally:
            server.stop()
    main = (tmp_path / "postgres" / "postgresql.conf").read_text()
    assert main.count(f"include_if_exists = '{SETTINGS_FILE}'") == 1
