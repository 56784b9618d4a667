"""`foundry up`'s worker: a `foundry worker` child process, supervised (its exit stops
`up`) and tied to its parent (it stops when `up` exits, however `up` does)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from infrastructure.cli_signals import STOP_SIGNALS
from infrastructure.container import BackendUrls
from infrastructure.settings import Settings


class SupervisedWorker:
    """`foundry up`'s worker child. Should it exit on its own (a crash, the OOM killer, a
    setting only the worker checks), the API would go on accepting uploads nobody
    processes: the whole process stops instead and exits 1, naming the worker's code."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        self.stopping = False
        self.exit_code: int | None = None
        self._watcher = threading.Thread(target=self._watch, name="worker-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        code = self.child.wait()
        if self.stopping:
            return
        self.exit_code = code
        print(
            f"The ingestion worker exited unexpectedly (exit code {code}); stopping, "
            "since uploads would never be processed. Its log is above.",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGTERM)  # the API's graceful shutdown


@contextmanager
def worker_process(settings: Settings, urls: BackendUrls) -> Iterator[SupervisedWorker]:
    """`foundry worker` as a child process using the same backends; stopped on exit."""
    env = {
        **os.environ,
        "FOUNDRY_DATABASE_URL": urls.database_url,
        "FOUNDRY_REDIS_URL": urls.redis_url,
        "FOUNDRY_STATE_DIR": str(settings.state_dir),
        # `up --host` also decides where the worker's metrics listen.
        "FOUNDRY_HOST": settings.host,
    }
    # Its own session: a terminal's Ctrl-C reaches only this process, which stops the
    # API gracefully and then the worker (a worker gone first would look like a crash).
    # Its stdin is a pipe this process holds open: should this process die without
    # stopping it (SIGKILL, the OOM killer), the pipe closes and the worker stops too.
    with contextlib.ExitStack() as cleanup:
        with STOP_SIGNALS.deferred():  # a stop requested meanwhile finds it there to stop
            child = subprocess.Popen(
                [sys.executable, "-m", "infrastructure.cli", "worker", "--exit-with-stdin"],
                env=env,
                stdin=subprocess.PIPE,
                start_new_session=True,
            )
            worker = SupervisedWorker(child)
            cleanup.callback(_stop_worker, worker, settings.shutdown_grace_seconds + 10)
        yield worker


def _stop_worker(worker: SupervisedWorker, timeout: float) -> None:
    STOP_SIGNALS.stopping()
    worker.stopping = True
    child = worker.child
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def stop_when_stdin_closes() -> None:
    """Stop as on SIGTERM once stdin reaches its end: the parent holding the pipe exited,
    however it did (the parse server watches its stdin the same way)."""

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdin.buffer.read()  # nobody writes: returns when the parent's end closes
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
