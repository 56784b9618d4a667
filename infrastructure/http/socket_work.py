"""What runs on one GraphQL WebSocket, as its frames show it.

:class:`~infrastructure.http.draining.DrainingWebSockets` reads every frame a client
sends and every end of an operation the server sends; it keeps this record for each
socket and puts it in the connection's ASGI scope. Two readers: the graceful shutdown
(how many answers and mutations are in flight) and a socket whose session ended
(``socket_sessions.py``), which lets those finish and ends the others at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

SCOPE_KEY = "foundry.socket_work"


class SocketWork:
    """The operations running on one socket, each marked whether it may finish: an
    `answer` being written or a mutation, which a shutdown or a session's end lets run to
    its end rather than cut it (``is_drained_operation``)."""

    __slots__ = ("_finished", "_finishing", "_running")

    def __init__(self) -> None:
        # Per operation id, the operations started under it whose end has not been seen,
        # oldest first. graphql-ws lets a start reuse the id of a running operation:
        # strawberry stops the old one (its "complete" follows) and runs the new one, so
        # one id can name two at once.
        self._running: dict[str, list[bool]] = {}
        self._finishing = 0
        self._finished: asyncio.Future[None] | None = None

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def running(self, operation_id: str) -> bool:
        return operation_id in self._running

    def may_finish(self, operation_id: str) -> bool:
        """Whether an operation under this id is one that is let finish."""
        return any(self._running.get(operation_id, ()))

    def start(self, operation_id: str, may_finish: bool) -> None:
        self._running.setdefault(operation_id, []).append(may_finish)
        self._finishing += may_finish

    def end(self, operation_id: object, every: bool) -> int:
        """The oldest operation under ``operation_id`` ended (``every``: all of them);
        how many of those were ones let finish."""
        pending = self._running.get(operation_id) if isinstance(operation_id, str) else None
        if pending is None:
            return 0
        count = len(pending) if every else 1
        ended = sum(pending[:count])
        del pending[:count]
        if not pending:
            del self._running[str(operation_id)]
        self._count_down(ended)
        return ended

    def end_all(self) -> int:
        """The socket closed; how many of its operations were ones let finish."""
        ended = sum(sum(pending) for pending in self._running.values())
        self._running.clear()
        self._count_down(ended)
        return ended

    async def finished(self) -> None:
        """Until no operation that is let finish runs (at once when none does)."""
        if self._finishing == 0:
            return
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_future()
        # Shielded: one waiter cancelled must not cancel the others' future.
        await asyncio.shield(self._finished)

    def _count_down(self, ended: int) -> None:
        self._finishing -= ended
        if self._finishing == 0 and self._finished is not None:
            if not self._finished.done():
                self._finished.set_result(None)
            self._finished = None


def socket_work_of(scope: Mapping[str, object]) -> SocketWork | None:
    """The record DrainingWebSockets keeps for this connection, if it runs in front."""
    work = scope.get(SCOPE_KEY)
    return work if isinstance(work, SocketWork) else None
