"""Stops the embedded servers of a `foundry` process that was killed without its cleanup.

A process that starts (or attaches to) the embedded PostgreSQL or Redis stops them as it
exits, the last of their users stopping each (``embedded.py``). Killed outright
(SIGKILL, the OOM killer) it runs no cleanup, and the servers would run on until the
next `foundry` command or a reboot. So such a process starts a keeper first: a child in a
session of its own, reading its stdin, a pipe whose other end only that process holds.

What the keeper reads:
- ``wait <pid>``: a process the servers must outlive (`up`'s worker, which hands its
  documents back to the database as it stops);
- ``release``: the process has stopped its servers itself; the keeper exits.

The end of its input without ``release`` means the process died. The keeper waits for the
processes it was told to (at most ``--wait-seconds``), then leaves each server as the dead
process would have: it attaches as a user and leaves, so the last user stops it and a
server other processes still use (`foundry up` beside a `foundry ingest`) keeps running.
A server that is not running is left alone (never started by the keeper).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from infrastructure.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    forget_dead_users,
    postmaster_pid,
    process_alive,
    redis_server_pid,
)

RELEASE = "release"
WAIT = "wait"


@dataclass(frozen=True)
class KeeperOrders:
    released: bool
    outlive: tuple[int, ...]


def read_orders(lines: list[str]) -> KeeperOrders:
    """What the lines read before the end of input ask for (unknown lines are ignored)."""
    outlive: list[int] = []
    released = False
    for line in lines:
        word, _, argument = line.strip().partition(" ")
        if word == RELEASE:
            released = True
        elif word == WAIT and argument.isdigit():
            outlive.append(int(argument))
    return KeeperOrders(released, tuple(outlive))


def leave_servers(state_dir: Path, database: str, postgres: bool, redis: bool) -> None:
    """Leave the embedded servers as their dead user would have (the last user stops each)."""
    if redis and redis_server_pid(state_dir) is not None:
        server = EmbeddedRedis(state_dir)
        server.start()  # attaches to the running server, as one more user
        server.stop()  # the dead process's registration is stale: the last user stops it
    pgdata = state_dir / "postgres"
    if postgres and (pid := postmaster_pid(pgdata)) is not None and process_alive(pid):
        forget_dead_users(pgdata)
        keeper = EmbeddedPostgres(state_dir, database, batch_scheduling=False)
        keeper.start()  # attaches to the running server, as one more user
        keeper.stop()


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan whose new parent has yet to reap it has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:  # gone, or no /proc here: whether the pid exists must do
        return process_alive(pid)
    return state not in ("Z", "X")


def _wait_for(pids: tuple[int, ...], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


class Keeper:
    """The parent's end of a keeper: spawned before the embedded servers start."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self._child = child

    @classmethod
    def spawn(
        cls, state_dir: Path, database: str, *, postgres: bool, redis: bool, wait_seconds: float
    ) -> Keeper:
        command = [sys.executable, "-m", "infrastructure.embedded_keeper"]
        command += ["--state-dir", str(state_dir), "--database", database]
        command += ["--wait-seconds", f"{wait_seconds:g}"]
        command += ["--postgres"] if postgres else []
        command += ["--redis"] if redis else []
        # A session of its own: a terminal's Ctrl-C or hang-up reaches only the parent.
        child = subprocess.Popen(  # noqa: S603  # this interpreter, our own module
            command, stdin=subprocess.PIPE, start_new_session=True
        )
        return cls(child)

    def _tell(self, line: str) -> None:
        stdin = self._child.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):  # a keeper gone already: nothing to tell
                stdin.write(f"{line}\n".encode())
                stdin.flush()

    def outlive(self, pid: int) -> None:
        """Should the parent die, stop the servers only once ``pid`` has exited too."""
        self._tell(f"{WAIT} {pid}")

    def release(self) -> None:
        """The parent stopped its servers itself: the keeper leaves them alone and exits."""
        self._tell(RELEASE)
        if self._child.stdin is not None:
            with contextlib.suppress(OSError):
                self._child.stdin.close()
        try:
            self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="foundry-embedded-keeper")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--redis", action="store_true")
    parser.add_argument("--wait-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    # A terminal's signals are for the process it serves, which tells the keeper.
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    orders = read_orders(sys.stdin.read().splitlines())
    if orders.released:
        return 0
    _wait_for(orders.outlive, args.wait_seconds)
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        leave_servers(Path(args.state_dir), args.database, args.postgres, args.redis)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
