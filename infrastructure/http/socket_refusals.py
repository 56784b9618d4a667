"""WebSocket handlers that tell a client over its open-connections budget when to return.

strawberry closes every refused connection_init with 4403 and the bare reason
"Forbidden", so a client could not tell a missing token from an expired one or from a
server that could not check it. Our refusals carry their code instead: a refused
token closes with 4403 and a JSON reason (``{"code": "TOKEN_EXPIRED"}``), which clients
read as "refresh, then connect again"; a check that could not run (Redis down:
SERVICE_UNAVAILABLE) closes with 1013, "try again later", which graphql-ws clients
retry without refreshing. A rate-limited socket closes with 4429 and a JSON reason
holding the code and retryAfter. On the legacy graphql-ws protocol the
connection_error payload holds the same. strawberry's own refusal of an operation over
the per-socket limit ("Subscription limit reached") gets a code, TOO_MANY_OPERATIONS.

Once acknowledged, a socket's session is watched (``socket_sessions.py``): when it ends,
the handler ends the socket's operations and closes it as a refused connection_init.

The legacy graphql-ws handler also runs queries and mutations, as graphql-transport-ws
does: strawberry's would refuse them as an internal error (see ``EveryOperation``); and
it closes a socket that sends no connection_init in time (4408), as strawberry does
only on graphql-transport-ws.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import Coroutine, Mapping
from typing import cast

from strawberry.schema.base import BaseSchema
from strawberry.schema.schema import SubscriptionResult
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage as TransportWsInit,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message as TransportWsMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    SubscribeMessage as TransportWsSubscribe,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyWsInit,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    OperationMessage as LegacyWsMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    StartMessage as LegacyWsStart,
)

from domain.errors import DomainError, ErrorCode, RateLimited
from infrastructure.http.socket_frames import (
    INVALID_FRAME,
    legacy_ws_problem,
    transport_ws_problem,
)
from infrastructure.http.socket_sessions import SocketSessionWatch, ended_error, watch_session
from schema.context import Context

TOO_MANY_CONNECTIONS = 4429
REFUSED = 4403  # strawberry's code for a refused connection_init
TRY_AGAIN_LATER = 1013  # RFC 6455's registry: the server cannot serve it now
INIT_TIMEOUT = 4408  # as strawberry's graphql-transport-ws handler closes
LIMIT_MESSAGE = "Subscription limit reached"
LIMIT_EXTENSIONS = {"code": ErrorCode.TOO_MANY_OPERATIONS.value}


def _add_code(error: object) -> None:
    """Give strawberry's per-socket limit error its code (in place)."""
    if isinstance(error, dict) and error.get("message") == LIMIT_MESSAGE:
        extensions = error.setdefault("extensions", {})
        if isinstance(extensions, dict):
            extensions.update(LIMIT_EXTENSIONS)


class SocketRefused(Exception):
    """Raised by on_ws_connect for a socket it will not serve: its code reaches the
    client (strawberry's ConnectionRejectionError would lose it on graphql-transport-ws)."""

    def __init__(self, code: ErrorCode | str) -> None:
        self.code = code.value if isinstance(code, ErrorCode) else code
        super().__init__(self.code)
        self.payload: dict[str, object] = {"code": self.code}

    @property
    def close_code(self) -> int:
        return TRY_AGAIN_LATER if self.code == ErrorCode.SERVICE_UNAVAILABLE.value else REFUSED


class SocketRateLimited(Exception):
    """Raised by on_ws_connect; the handlers below turn it into the refusal."""

    def __init__(self, error: RateLimited) -> None:
        super().__init__(error.message)
        self.payload: dict[str, object] = {
            "code": error.code.value,
            "retryAfter": error.retry_after,
        }


class TransportWsHandler(BaseGraphQLTransportWSHandler[Context, None]):
    session_error: DomainError | None = None
    session_watch: SocketSessionWatch | None = None

    async def handle_message(self, message: TransportWsMessage) -> None:
        problem = transport_ws_problem(message)
        if problem is not None:
            await self.handle_invalid_message(problem)  # closes with 4400
            return
        await super().handle_message(message)

    async def send_message(self, message: TransportWsMessage) -> None:
        if message["type"] == "error":
            for error in message["payload"]:
                _add_code(error)
        await super().send_message(message)

    async def handle_connection_init(self, message: TransportWsInit) -> None:
        try:
            await super().handle_connection_init(message)
        except SocketRateLimited as limited:
            await self.websocket.close(TOO_MANY_CONNECTIONS, json.dumps(limited.payload))
        except SocketRefused as refused:
            await self.websocket.close(refused.close_code, json.dumps(refused.payload))
        if self.connection_acknowledged and self.session_watch is None:
            self.session_watch = watch_session(self.view, self.context, self, self.websocket)

    async def handle_subscribe(self, message: TransportWsSubscribe) -> None:
        error = self.session_error
        if error is not None and message["id"] not in self.operations:
            await self._send_ended(message["id"], error)  # its session has ended
            return
        await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        if self.session_watch is not None:
            self.session_watch.stop()
        await super().shutdown()

    def operation_ids(self) -> list[str]:
        return list(self.operations)

    async def end_operation(self, operation_id: str, error: DomainError) -> None:
        operation = self.operations.get(operation_id)
        if operation is None:
            return
        await self.cleanup_operation(operation_id)  # forgets it and cancels its task
        if operation.task is not None:
            await asyncio.wait({operation.task})  # its cleanup has run; it sends no more
        await self._send_ended(operation_id, error)

    async def _send_ended(self, operation_id: str, error: DomainError) -> None:
        """What a stream that raises ``error`` sends: the error, then complete."""
        await self.send_message(
            {
                "id": operation_id,
                "type": "next",
                "payload": {"data": None, "errors": [ended_error(error)]},
            }
        )
        await self.send_message({"id": operation_id, "type": "complete"})

    async def close_for(self, error: DomainError) -> None:
        await self.websocket.close(REFUSED, json.dumps(SocketRefused(error.code).payload))


class EveryOperation:
    """The schema as the legacy handler sees it: ``subscribe`` runs any operation.

    strawberry's graphql-ws handler sends every operation to ``schema.subscribe``, which
    refuses queries and mutations (the client saw INTERNAL). subscriptions-transport-ws
    clients (Apollo Client 2's WebSocketLink) send those over the socket too; ``stream``
    runs them and yields their one result, which the handler sends as ``data`` before
    ``complete``, as that protocol expects.
    """

    def __init__(self, schema: BaseSchema) -> None:
        self._schema = schema

    async def subscribe(
        self,
        *,
        query: str | None,
        variable_values: dict[str, object] | None = None,
        context_value: object | None = None,
        root_value: object | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, object] | None = None,
    ) -> SubscriptionResult:
        # Incremental delivery (@defer, @stream) is not enabled: no other frames come.
        return cast(
            SubscriptionResult,
            await self._schema.stream(
                query=query,
                variable_values=variable_values,
                context_value=context_value,
                root_value=root_value,
                operation_name=operation_name,
                operation_extensions=operation_extensions,
            ),
        )

    def __getattr__(self, name: str) -> object:
        return getattr(self._schema, name)


class LegacyWsHandler(BaseGraphQLWSHandler[Context, None]):
    init_received = False
    socket_ended = False
    session_error: DomainError | None = None
    session_watch: SocketSessionWatch | None = None
    # Operations being ended for their session: what they send meanwhile is dropped.
    silenced: frozenset[str] = frozenset()

    async def handle(self) -> None:
        if not isinstance(self.schema, EveryOperation):
            self.schema = cast(BaseSchema, EveryOperation(self.schema))
        # strawberry times connection_init out on graphql-transport-ws only: without this
        # a graphql-ws socket that never sends it stays open for good, unauthenticated,
        # so outside every per-user budget.
        timer = asyncio.create_task(self._close_unless_initialised())
        try:
            await super().handle()
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def handle_message(self, message: LegacyWsMessage) -> None:
        problem = legacy_ws_problem(message)
        if problem is not None:
            await self.websocket.close(INVALID_FRAME, problem)
            return
        await super().handle_message(message)

    async def cleanup_operation(self, operation_id: str) -> None:
        """Stop the operation, and say it ended even if it never began. strawberry's task
        sends "complete" when cancelled, but a task cancelled before its first step (a
        "stop", or a "start" reusing the id, read together with its "start") never runs
        that code, so the client, and the shutdown drain counting the socket's operations,
        would never hear that it ended."""
        task = self.tasks.get(operation_id)
        unstarted = (
            task is not None
            and inspect.getcoroutinestate(cast(Coroutine[object, object, None], task.get_coro()))
            == inspect.CORO_CREATED
        )
        await super().cleanup_operation(operation_id)
        if unstarted and not self.socket_ended:
            await self.send_message({"type": "complete", "id": operation_id})

    async def cleanup(self) -> None:
        """The socket ended: its operations are stopped, with nobody left to tell."""
        self.socket_ended = True
        if self.session_watch is not None:
            self.session_watch.stop()
        await super().cleanup()

    async def handle_start(self, message: LegacyWsStart) -> None:
        error = self.session_error
        if error is not None:
            await self._send_ended(message["id"], error)  # its session has ended
            return
        await super().handle_start(message)

    def operation_ids(self) -> list[str]:
        return list(self.tasks)

    async def end_operation(self, operation_id: str, error: DomainError) -> None:
        if operation_id not in self.tasks:
            return
        # Stopped, the operation says "complete" itself: dropped, sent after the error.
        self.silenced |= {operation_id}
        try:
            await self.cleanup_operation(operation_id)
        finally:
            self.silenced -= {operation_id}
        await self._send_ended(operation_id, error)

    async def _send_ended(self, operation_id: str, error: DomainError) -> None:
        """What a stream that raises ``error`` sends: data with the error, then complete."""
        await self.send_message(
            {
                "type": "data",
                "id": operation_id,
                "payload": {"data": None, "errors": [ended_error(error)]},
            }
        )
        await self.send_message({"type": "complete", "id": operation_id})

    async def close_for(self, error: DomainError) -> None:
        await self._refuse(SocketRefused(error.code).payload)

    async def _refuse(self, payload: dict[str, object]) -> None:
        """As strawberry answers a ConnectionRejectionError on this protocol."""
        await self.send_message({"type": "connection_error", "payload": payload})
        await self.websocket.close(1011, "")

    async def _close_unless_initialised(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        if not self.init_received:
            await self.websocket.close(INIT_TIMEOUT, "Connection initialisation timeout")

    async def send_message(self, message: LegacyWsMessage) -> None:
        if self.silenced and cast(Mapping[str, object], message).get("id") in self.silenced:
            return
        if message["type"] == "error":
            _add_code(message["payload"])
        await super().send_message(message)

    async def handle_connection_init(self, message: LegacyWsInit) -> None:
        self.init_received = True
        try:
            await super().handle_connection_init(message)
        except (SocketRateLimited, SocketRefused) as refused:
            await self._refuse(refused.payload)
        if self.connection_acknowledged and self.session_watch is None:
            self.session_watch = watch_session(self.view, self.context, self, self.websocket)
