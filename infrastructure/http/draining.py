"""Graceful shutdown: answers being streamed finish, new ones are refused, then uvicorn stops.

uvicorn's own shutdown closes every open WebSocket at once (code 1012), which
would cut an answer mid-stream and lose it. :class:`DrainingServer` first stops
accepting connections and closes the idle HTTP keep-alive ones, then waits (up to the
grace period) for the `answer` subscriptions and the mutations (`ask` among them) in
flight over WebSockets, which :class:`DrainingWebSockets` tracks by watching the
GraphQL-over-WebSocket frames, and for the GraphQL requests in flight over HTTP, which
:class:`DrainingHTTP` counts; only then does uvicorn close the rest (idle
`documentEvents` subscriptions, whose clients reconnect to another replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import cast

import structlog
import uvicorn
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
)
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.errors import ErrorCode
from infrastructure.http.middleware import error_body
from infrastructure.http.socket_work import SCOPE_KEY, SocketWork
from schema.build import SchemaLimits
from schema.operation_cache import DocumentCache

log = structlog.get_logger("foundry.shutdown")

ANSWER_FIELD = "answer"
# graphql-transport-ws uses subscribe/complete; the legacy graphql-ws start/stop.
_CLIENT_STARTS = frozenset({"subscribe", "start"})
# Each protocol's start frame: strawberry ignores the other protocol's without an answer,
# so counting it would keep an answer "in flight" until the socket closes.
_START_OF_PROTOCOL = {"graphql-transport-ws": "subscribe", "graphql-ws": "start"}
_CLIENT_STOPS = frozenset({"complete", "stop"})
_SERVER_ENDS = frozenset({"complete", "error"})
REFUSED_MESSAGE = "The server is shutting down; connect again and ask again."


class AnswerDrain:
    """Counts `answer` streams, mutations over WebSockets and GraphQL requests over HTTP
    in flight; once closing, no new one starts."""

    def __init__(self) -> None:
        self.closing = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def started(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def finished(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        if self._in_flight == 0:
            self._idle.set()

    async def wait_idle(self, seconds: float, forced: Callable[[], bool] = lambda: False) -> bool:
        """True when every stream ended within ``seconds`` (gives up early once ``forced()``)."""
        deadline = time.monotonic() + seconds
        while not self._idle.is_set() and not forced():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), min(left, 0.1))
        return self._idle.is_set()


def answer_drain_of(app: Starlette) -> AnswerDrain:
    drain = getattr(app.state, "answer_drain", None)
    if not isinstance(drain, AnswerDrain):
        raise RuntimeError("the app has no answer drain; build it with create_app()")
    return drain


def _operation(
    payload: object, parse: Callable[[str], DocumentNode]
) -> tuple[DocumentNode, OperationDefinitionNode] | None:
    """The document and the operation a subscribe/start payload runs, if it names one."""
    if not isinstance(payload, dict):
        return None
    query = payload.get("query")
    name = payload.get("operationName")
    if not isinstance(query, str):
        return None
    try:
        document = parse(query)
        operation = get_operation_ast(document, name if isinstance(name, str) else None)
    except GraphQLError:
        return None  # the GraphQL layer reports it
    return None if operation is None else (document, operation)


def is_answer_subscription(payload: object, parse: Callable[[str], DocumentNode]) -> bool:
    """Whether a subscribe/start payload runs the `answer` subscription.

    ``parse`` must enforce the schema's limits: this runs before the socket is even
    authenticated.
    """
    found = _operation(payload, parse)
    if found is None or found[1].operation is not OperationType.SUBSCRIPTION:
        return False
    return ANSWER_FIELD in _root_fields(*found)


def is_drained_operation(payload: object, parse: Callable[[str], DocumentNode]) -> bool:
    """Whether a subscribe/start payload runs what a shutdown lets finish: the `answer`
    subscription or a mutation. `ask` (a whole answer, up to a minute) is a mutation, and
    clients such as Python gql's WebsocketsTransport, urql with every operation over the
    socket and graphql-ws (legacy) clients send it over the socket; any mutation cut off
    mid-way would leave its client not knowing whether it happened.
    """
    found = _operation(payload, parse)
    if found is None:
        return False
    document, operation = found
    if operation.operation is OperationType.MUTATION:
        return True
    return operation.operation is OperationType.SUBSCRIPTION and ANSWER_FIELD in _root_fields(
        document, operation
    )


def _root_fields(document: DocumentNode, operation: OperationDefinitionNode) -> set[str]:
    """The names of the operation's root fields, through inline fragments and named
    fragments (``... on Subscription { answer(...) }`` runs the answer too)."""
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    names: set[str] = set()
    spread: set[str] = set()
    pending = list(operation.selection_set.selections)
    while pending:
        selection = pending.pop()
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            pending.extend(selection.selection_set.selections)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None and fragment.name.value not in spread:
                spread.add(fragment.name.value)  # each once: cycles are the validator's
                pending.extend(fragment.selection_set.selections)
    return names


def _frame(message: Message) -> dict[str, object] | None:
    text = message.get("text")
    if not isinstance(text, str):
        return None
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return cast(dict[str, object], frame) if isinstance(frame, dict) else None


def _refusal(start_type: object, operation_id: str) -> str:
    error = {"message": REFUSED_MESSAGE, "extensions": {"code": ErrorCode.SERVICE_UNAVAILABLE}}
    payload: object = [error] if start_type == "subscribe" else error
    return json.dumps({"id": operation_id, "type": "error", "payload": payload})


class DrainingWebSockets:
    """ASGI wrapper of the GraphQL WebSocket endpoint that reports `answer` streams and
    mutations."""

    def __init__(
        self, app: ASGIApp, drain: AnswerDrain, limits: SchemaLimits, documents: DocumentCache
    ) -> None:
        self._app = app
        self._drain = drain
        self._limits = limits
        self._documents = documents

    def _parse(self, text: str) -> DocumentNode:
        """The text as the schema parses it (same cache entry), within the same limits."""
        if len(text) > self._limits.max_chars:
            raise GraphQLError("The operation text is too long.")
        return self._documents(text, max_tokens=self._limits.max_tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self._app(scope, receive, send)
            return
        drain = self._drain
        # The socket's operations, also read by its handler should its session end.
        work = SocketWork()
        scope = {**scope, SCOPE_KEY: work}
        # The start frame of the protocol the app accepted (any, until it has).
        starts: frozenset[str] = _CLIENT_STARTS

        def ended(operation_id: object, every: bool) -> None:
            for _ in range(work.end(operation_id, every)):
                drain.finished()

        async def receiving() -> Message:
            while True:
                message = await receive()
                frame = _frame(message) if message["type"] == "websocket.receive" else None
                if frame is None:
                    return message
                kind, operation_id = frame.get("type"), frame.get("id")
                if kind in starts and isinstance(operation_id, str):
                    drained = is_drained_operation(frame.get("payload"), self._parse)
                    if drained and drain.closing:
                        await send({"type": "websocket.send", "text": _refusal(kind, operation_id)})
                        continue
                    # graphql-transport-ws refuses a reused id (4409) rather than run it.
                    if kind == "start" or not work.running(operation_id):
                        work.start(operation_id, drained)
                        if drained:
                            drain.started()
                elif kind in _CLIENT_STOPS:
                    ended(operation_id, every=True)
                return message

        async def sending(message: Message) -> None:
            nonlocal starts
            await send(message)
            if message["type"] == "websocket.accept":
                start = _START_OF_PROTOCOL.get(str(message.get("subprotocol")))
                starts = frozenset({start}) if start else _CLIENT_STARTS
            text = message.get("text")
            # Only frames that can be an end are parsed (not every streamed token).
            if work.busy and isinstance(text, str) and ("complete" in text or "error" in text):
                frame = _frame(message)
                if frame is not None and frame.get("type") in _SERVER_ENDS:
                    ended(frame.get("id"), every=False)

        try:
            await self._app(scope, receiving, sending)
        finally:
            for _ in range(work.end_all()):
                drain.finished()


class DrainingHTTP:
    """ASGI wrapper of the GraphQL HTTP endpoint: a request running when the shutdown
    begins is counted, so the shutdown waits for it (an `ask` is a whole answer); one
    that arrives while closing is refused at once.

    The server closes the keep-alive connections when the drain begins (an idle one at
    once, a busy one after its response), so what still arrives is a request read just
    then or pipelined behind one running. Every GraphQL request counts and every new one
    is refused, queries too: telling a mutation from a query means reading the body
    (a whole upload) first, a query in flight is short and would be waited for anyway,
    and a client refused here retries on another replica, as `/readyz` already sends
    new clients there.
    """

    def __init__(self, app: ASGIApp, drain: AnswerDrain) -> None:
        self._app = app
        self._drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        drain = self._drain
        if drain.closing:
            await _refuse_http(send)
            return
        drain.started()
        try:
            await self._app(scope, receive, send)
        finally:
            drain.finished()


async def _refuse_http(send: Send) -> None:
    """503 with the WebSocket refusal's error; the connection closes after it."""
    body = error_body(REFUSED_MESSAGE, ErrorCode.SERVICE_UNAVAILABLE)
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Stopped(Exception):
    """SIGTERM, re-raised by uvicorn once its graceful shutdown is over."""


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


class DrainingServer(uvicorn.Server):
    """uvicorn that lets in-flight answers finish before it closes the WebSockets."""

    def __init__(self, config: uvicorn.Config, drain: AnswerDrain, grace_seconds: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._grace_seconds = grace_seconds

    def run_until_stopped(self, sock: socket.socket | None = None) -> None:
        """Serve (on ``sock`` if given, already bound) until SIGTERM or Ctrl-C; after the
        graceful shutdown return normally, so the caller's cleanup runs (embedded servers
        stop) and the exit code is 0."""
        previous = signal.signal(signal.SIGTERM, _stopped)
        try:
            self.run(sockets=None if sock is None else [sock])
        except (KeyboardInterrupt, _Stopped):
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        started = time.monotonic()
        # Stop accepting connections (load balancers move new clients elsewhere)...
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        self._drain.closing = True
        # ...and take no new request on the HTTP connections open: uvicorn's shutdown of
        # each closes an idle one now and a busy one once its response is sent (whatever
        # still reaches the app is refused: DrainingHTTP). uvicorn would only do it after
        # the drain, leaving them open for new requests (a whole `ask`) meanwhile, cut
        # when the grace ran out. WebSockets stay open: the drain waits for their answers.
        http = self.config.http_protocol_class
        for connection in list(self.server_state.connections):
            if isinstance(connection, http):
                connection.shutdown()
        if self._drain.in_flight:
            log.info("shutdown.draining_answers", in_flight=self._drain.in_flight)
            # ...let the answers being streamed finish and be stored...
            # (A second Ctrl-C forces the exit.)
            if not await self._drain.wait_idle(self._grace_seconds, lambda: self.force_exit):
                log.warning("shutdown.answers_cut", in_flight=self._drain.in_flight)
        # ...then uvicorn closes the remaining connections and runs the lifespan shutdown,
        # waiting for requests only as long as the grace period has left: one grace period
        # in all, which is what a service manager allows before it kills the process.
        # (Whole seconds: uvicorn's setting is an int.)
        left = self._grace_seconds - (time.monotonic() - started)
        self.config.timeout_graceful_shutdown = max(0, math.ceil(left))
        await super().shutdown(sockets)
