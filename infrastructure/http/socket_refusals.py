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
from collections.abc import Coroutine
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
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyWsInit,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    OperationMessage as LegacyWsMessage,
)

from domain.errors import ErrorCode, RateLimited
from infrastructure.http.socket_frames import (
    INVALID_FRAME,
    legacy_ws_problem,
    transport_ws_problem,
)
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
        await super().cleanup()

    async def _close_unless_initialised(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        if not self.init_received:
            await self.websocket.close(INIT_TIMEOUT, "Connection initialisation timeout")

    async def send_message(self, message: LegacyWsMessage) -> None:
        if message["type"] == "error":
            _add_code(message["payload"])
        await super().send_message(message)

    async def handle_connection_init(self, message: LegacyWsInit) -> None:
        self.init_received = True
        try:
            await super().handle_connection_init(message)
        except (SocketRateLimited, SocketRefused) as refused:
            # As strawberry answers a ConnectionRejectionError on this protocol.
            await self.send_message({"type": "connection_error", "payload": refused.payload})
            await self.websocket.close(1011, "")
