"""An authenticated WebSocket closes once its session has ended.

A socket is authenticated once, at connection_init, and holds one of its user's
connection slots (``ws_connections_user``, shared with uploads and downloads) while it
stays open. Its operations check the session when they start, and a stream before its
next event, but an idle socket outlived its session, slot and all. So every
authenticated socket is watched, and its token checked again:

- at once when this process hears that the session was logged out, removed from the
  organisation or had its role changed, or that its API key was revoked: the notice
  ``documentEvents`` streams use (``RedisSessionRevocations.watch``, on the process's
  one Redis subscription);
- when its access token expires (an API key's expiry is left to the periodic check);
- every ``RECHECK_SECONDS`` otherwise, for a notice lost while that subscription
  reconnected.

A token found refused (UNAUTHENTICATED, TOKEN_EXPIRED) ends the socket: its slot is
given back at once, new operations are refused with the code, running ones end with it
except those a shutdown also lets finish (an answer being written, a mutation: see
``socket_work.py``), which are waited for; then (a second later when it had
operations, so their clients read how they ended) the socket closes as a refused
connection_init does (graphql-transport-ws: 4403 and ``{"code": ...}``). An answer
ends by itself at its next event once its session was logged out or removed, and runs
to its end when only the token expired or the role changed, as before. A check that
cannot run (Redis down: SERVICE_UNAVAILABLE) keeps the socket and tries again later.

An idle watch is a timer and an entry in the notice registry: no task of its own (one
runs for a check), no Redis subscription, however many operations the socket runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable
from uuid import UUID

import jwt
import structlog
from graphql import GraphQLError, GraphQLFormattedError
from strawberry.asgi import ASGIWebSocketAdapter

from domain.errors import DomainError, TokenExpired, Unauthenticated
from infrastructure.auth.tokens import LEEWAY_SECONDS
from infrastructure.http.socket_work import SocketWork, socket_work_of
from schema.context import Context

log = structlog.get_logger("foundry.sockets")

RECHECK_SECONDS = 30.0
# Between the last operation's end and the close, on a socket that had operations.
CLOSE_GRACE_SECONDS = 1.0
# The codec accepts a token up to LEEWAY_SECONDS past its exp: checked just after that.
_PAST_EXPIRY_SECONDS = 0.5
# The least wait after a check that still found the token good at its expiry (clocks).
_SHORTEST_WAIT_SECONDS = 1.0


class SessionNotices(Protocol):
    def watch(self, session_id: UUID, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` on each notice about the session until the result is called."""
        ...


class EndableSocket(Protocol):
    """A socket's protocol handler as a session's end needs it (socket_refusals.py)."""

    # Set once the session ended: operations that arrive then are refused with it.
    session_error: DomainError | None

    def operation_ids(self) -> list[str]: ...

    async def end_operation(self, operation_id: str, error: DomainError) -> None:
        """Stop the operation, then tell its client it ended with ``error``."""
        ...

    async def close_for(self, error: DomainError) -> None:
        """Close the socket as a connection_init refused with ``error`` is."""
        ...


@runtime_checkable
class WatchesSessions(Protocol):
    """The view, as a socket's handler asks it to watch the socket's session."""

    def watch_session(
        self, context: Context, socket: EndableSocket, work: SocketWork | None
    ) -> SocketSessionWatch | None: ...


def watch_session(
    view: object, context: Context, socket: EndableSocket, websocket: object
) -> SocketSessionWatch | None:
    """For a handler that has just acknowledged its socket: the watch of its session."""
    if not isinstance(view, WatchesSessions):
        return None
    scope = websocket.ws.scope if isinstance(websocket, ASGIWebSocketAdapter) else {}
    return view.watch_session(context, socket, socket_work_of(scope))


def ended_error(error: DomainError) -> GraphQLFormattedError:
    """``error`` as an operation's GraphQL error (as schema/errors.py formats it)."""
    return GraphQLError(
        error.message, extensions={"code": error.code.value, **error.details}
    ).formatted


async def end_socket(socket: EndableSocket, work: SocketWork | None, error: DomainError) -> None:
    """End a socket whose session ended with ``error``."""
    socket.session_error = error
    operation_ids = socket.operation_ids()
    for operation_id in operation_ids:
        if work is None or not work.may_finish(operation_id):
            await socket.end_operation(operation_id, error)
    if work is not None:
        await work.finished()
    if operation_ids:
        # Clients read how their operations ended before the socket goes: gql, for one,
        # answers an operation's end with a complete frame, and reports a lost
        # connection instead of the operation's error when the socket is gone by then.
        await asyncio.sleep(CLOSE_GRACE_SECONDS)
    await socket.close_for(error)


def access_token_expiry(token: str) -> float | None:
    """The ``exp`` of an access token that authentication has already verified."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    expiry = claims.get("exp")
    return float(expiry) if isinstance(expiry, int | float) else None


class SocketSessionWatch:
    """Checks one socket's token when told of its session, at its expiry and every
    ``recheck_seconds``; ends the socket once the token is refused."""

    __slots__ = (
        "_again",
        "_context",
        "_expires_at",
        "_recheck_seconds",
        "_socket",
        "_stopped",
        "_task",
        "_timer",
        "_unwatch",
        "_work",
    )

    def __init__(
        self,
        context: Context,
        socket: EndableSocket,
        work: SocketWork | None,
        notices: SessionNotices | None,
        recheck_seconds: float,
    ) -> None:
        principal = context.require_principal()
        token = context.socket_token
        self._context = context
        self._socket = socket
        self._work = work
        self._recheck_seconds = recheck_seconds
        self._expires_at = (
            access_token_expiry(token)
            if token is not None and principal.api_key_id is None
            else None
        )
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._stopped = False
        self._unwatch = (
            notices.watch(principal.session_id, self.wake) if notices is not None else None
        )
        self._arm()

    def wake(self) -> None:
        """Check the token now (a notice about the session, or the timer)."""
        if self._stopped:
            return
        if self._task is not None:
            # The check under way may have read the session before this notice.
            self._again = True
            return
        self._disarm()
        self._task = asyncio.get_running_loop().create_task(self._check())

    def stop(self) -> None:
        """The socket closed: forget it, and stop a check or an ending under way."""
        self._forget()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _check(self) -> None:
        try:
            error = await self._refusal()
        except Exception:  # a database error (an API key's check): keep it, try later
            log.exception("socket.session_check_failed", request_id=self._context.request_id)
            error = None
        if error is None:
            self._task = None
            if not self._stopped:
                self._arm()
            return
        self._forget()
        log.info("socket.session_ended", code=error.code.value, request_id=self._context.request_id)
        await self._context.release_socket_slot()
        try:
            await end_socket(self._socket, self._work, error)
        except Exception as exc:  # the client left meanwhile; its handler cleans up
            log.info("socket.session_end_cut", error=type(exc).__name__)

    async def _refusal(self) -> DomainError | None:
        """The error the socket's token is refused with now, if it is."""
        context = self._context
        while True:
            self._again = False
            await context.revalidate_socket()
            error = context.auth_error if context.principal is None else None
            if isinstance(error, Unauthenticated | TokenExpired):
                return error
            if not self._again:
                return None

    def _arm(self) -> None:
        delay = self._recheck_seconds
        if self._expires_at is not None:
            expiry = self._expires_at + LEEWAY_SECONDS + _PAST_EXPIRY_SECONDS - time.time()
            delay = min(delay, max(expiry, _SHORTEST_WAIT_SECONDS))
        self._timer = asyncio.get_running_loop().call_later(delay, self.wake)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _forget(self) -> None:
        self._stopped = True
        self._disarm()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
