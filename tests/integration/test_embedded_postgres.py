"""The embedded PostgreSQL runs with our shared_buffers, applied at each start."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import asyncpg

from infrastructure.embedded import (
    SETTINGS_FILE,
    EmbeddedPostgres,
    default_shared_buffers_mb,
    memory_bytes,
    postmaster_pid,
    process_tree,
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


async def backend_policy(server: EmbeddedPostgres) -> int:
    """The scheduling policy of a new connection's backend (forked after the start),
    read while the connection is open."""
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        return os.sched_getscheduler(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()


def test_the_suites_server_and_its_new_backends_run_as_batch(
    embedded_postgres: EmbeddedPostgres,
) -> None:
    pgdata = embedded_postgres.state_dir / "postgres"
    postmaster = postmaster_pid(pgdata)
    assert postmaster is not None
    tree = process_tree(postmaster)
    assert len(tree) > 1  # the checkpointer, the WAL writer... were there at start
    assert {os.sched_getscheduler(pid) for pid in tree} == {os.SCHED_BATCH}
    assert asyncio.run(backend_policy(embedded_postgres)) == os.SCHED_BATCH
    assert os.sched_getscheduler(os.getpid()) == os.SCHED_OTHER  # only the server's


def test_batch_scheduling_can_be_turned_off(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path, "foundry_unbatched", batch_scheduling=False)
    server.start()
    try:
        postmaster = postmaster_pid(tmp_path / "postgres")
        assert postmaster is not None
        assert os.sched_getscheduler(postmaster) == os.SCHED_OTHER
        assert asyncio.run(backend_policy(server)) == os.SCHED_OTHER
    finally:
        server.stop()


def test_the_process_tree_follows_parents_past_odd_command_names(tmp_path: Path) -> None:
    for pid, command, parent in ((10, "postgres", 1), (11, "a) b (c", 10), (12, "x", 11)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({command}) S {parent} 1 1 0\n")
    (tmp_path / "self").mkdir()  # not a process directory
    (tmp_path / "13").mkdir()  # exited before its stat was read
    assert sorted(process_tree(10, tmp_path)) == [10, 11, 12]
    assert process_tree(12, tmp_path) == [12]


def test_a_user_killed_without_its_cleanup_does_not_keep_the_server_running(
    tmp_path: Path,
) -> None:
    """A dead process's pid left in pgserver's list of users (SIGKILL, OOM) would keep
    every later run from stopping the server."""
    server = EmbeddedPostgres(tmp_path, "foundry_users")
    server.start()
    server.stop()
    users = tmp_path / "postgres" / ".handle_pids.json"
    dead = 2**22 + 12_345  # above Linux's default pid_max: no process has it
    users.write_text(json.dumps([dead]))
    server = EmbeddedPostgres(tmp_path, "foundry_users")
    server.start()
    pid = postmaster_pid(tmp_path / "postgres")
    server.stop()
    assert pid is not None and not (tmp_path / "postgres" / "postmaster.pid").exists()
    assert dead not in json.loads(users.read_text() or "[]")
