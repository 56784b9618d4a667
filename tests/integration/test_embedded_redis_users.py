"""The embedded Redis stays up while another foundry process uses it, whichever started it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from infrastructure.cache.redis_client import create_redis
from infrastructure.embedded import EmbeddedRedis, RedisUsers
from tests.integration.test_redis_backends import _gone

# `foundry ingest` started first on the embedded defaults: it starts Redis, and leaves
# when told to (a line on stdin), as the command finishing would.
_FIRST_COMMAND = """
import sys
from pathlib import Path
from infrastructure.embedded import EmbeddedRedis
embedded = EmbeddedRedis(Path(sys.argv[1]))
embedded.start()
assert embedded._owner
print(embedded._server.pid, file=sys.stderr, flush=True)
sys.stdin.readline()
embedded.stop()
"""


async def test_the_owner_leaving_keeps_redis_up_for_a_process_attached_since(
    tmp_path: Path,
) -> None:
    first = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _FIRST_COMMAND,
        str(tmp_path),
        cwd=Path(__file__).parents[2],
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,  # its pid; structlog writes to stdout
    )
    assert first.stdin is not None and first.stderr is not None
    try:
        pid = int(await first.stderr.readline())
        attached = EmbeddedRedis(tmp_path)  # `foundry up`, started afterwards
        attached.start()
        assert not attached._owner
        redis = create_redis(attached.url())
        try:
            await redis.set("foundry:up", b"running")
            first.stdin.write(b"stop\n")
            await first.stdin.drain()
            assert await asyncio.wait_for(first.wait(), 60) == 0
            assert await redis.ping()  # the first command's exit left it running
            assert await redis.get("foundry:up") == b"running"
        finally:
            await redis.aclose()
            attached.stop()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert await asyncio.to_thread(_gone, pid)  # the last one to leave stops it


def test_processes_gone_without_their_cleanup_do_not_count(tmp_path: Path) -> None:
    users = RedisUsers(tmp_path / "users")
    users.add(os.getpid())
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / "users" / gone.stdout.strip()).write_text("1")  # killed, never removed
    (tmp_path / "users" / str(os.getppid())).write_text("1")  # pid reused by another
    assert users.others(os.getpid()) == []
    assert sorted(p.name for p in (tmp_path / "users").iterdir()) == [str(os.getpid())]
    users.add(os.getppid())
    assert users.others(os.getpid()) == [os.getppid()]
    users.remove(os.getppid())
    assert users.others(os.getpid()) == []
