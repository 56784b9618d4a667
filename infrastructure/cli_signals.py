"""How `foundry up`, `serve` and `worker` stop on a signal while they start or stop.

Before the API serves (starting the embedded servers, migrating, starting the worker)
and after it, SIGINT and SIGTERM unwind like Ctrl-C, so the ``finally`` blocks stop what
was started; a closed terminal (SIGHUP) becomes SIGTERM. While the API runs, uvicorn's
and DrainingServer's handlers take over.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


def hang_up(signum: int, frame: FrameType | None) -> None:
    """A closed terminal stops everything as Ctrl-C does (the embedded servers included)."""
    os.kill(os.getpid(), signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """SIGTERM, a closed terminal or Ctrl-C before the API serves: unwinds as Ctrl-C does,
    so the `finally` blocks stop what was started (embedded servers, the worker)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopSignals:
    """Signals while the embedded servers and the worker start and stop. A stop request
    raises StopRequested, except while a server or the worker is being started (the
    request waits until it is there to stop) and once the stop is under way."""

    def __init__(self) -> None:
        self._deferring = 0
        self._pending: int | None = None
        self._stopping = False

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._requested)
        signal.signal(signal.SIGHUP, hang_up)

    def _requested(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return
        if self._deferring:
            self._pending = signum
            return
        self._stopping = True
        raise StopRequested(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Starting something that would run on, unstopped, if interrupted halfway."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring and self._pending is not None and not self._stopping:
            self._stopping = True
            raise StopRequested(self._pending)

    def stopping(self) -> None:
        """The stop is under way: further requests change nothing."""
        self._stopping = True


STOP_SIGNALS = StopSignals()
