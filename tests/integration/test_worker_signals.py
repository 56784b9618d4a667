"""A worker stops on SIGTERM whichever of its threads the kernel hands the signal to."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import uuid
from pathlib import Path

from infrastructure.settings import Settings
from tests.conftest import WorkerProcess, worker_env

SYS_TGKILL = 234  # x86_64 and the number Linux gives it there


def _tgkill(pid: int, tid: int, signum: int) -> None:
    """Send ``signum`` to one thread of ``pid`` (what the kernel may do with a kill)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL, pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


def test_a_sigterm_delivered_to_another_thread_still_stops_the_worker(
    settings: Settings, tmp_path: Path
) -> None:
    """Python runs signal handlers in the main thread, which the worker keeps waiting:
    a SIGTERM taken by another thread must still end that wait (a worker once ran on
    for 30 s after its SIGTERM and was killed)."""
    env = worker_env(settings, FOUNDRY_REDIS_KEY_PREFIX=f"signals-{uuid.uuid4().hex[:8]}:")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_started()
        pid = worker.process.pid
        others = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
        assert others, "the worker runs threads besides its main one"
        _tgkill(pid, others[-1], signal.SIGTERM)
        try:
            code = worker.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, (tmp_path / "worker.log").read_text()[-2000:]
        assert b"worker.stopping" in (tmp_path / "worker.log").read_bytes()
    finally:
        worker.stop()
