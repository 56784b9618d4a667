"""Strawberry's ASGI view wired to our context, authentication and WebSocket handshake."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import timedelta

import strawberry
from cross_web import AsyncHTTPRequestAdapter, FormData, HTTPException, StarletteRequestAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from domain.errors import ErrorCode, RateLimited, Unauthenticated
from domain.ports import Budget
from infrastructure.container import Container
from infrastructure.http import socket_sessions
from infrastructure.http.graphiql import GraphiQLPage
from infrastructure.http.middleware import error_body
from infrastructure.http.socket_refusals import (
    LegacyWsHandler,
    SocketRateLimited,
    SocketRefused,
    TransportWsHandler,
)
from infrastructure.http.socket_sessions import EndableSocket, SocketSessionWatch
from infrastructure.http.socket_work import SocketWork
from schema.context import Context

BEARER_PREFIX = "bearer "
# strawberry's reason for refusing a JSON array body (tests pin it).
BATCHING_DISABLED_REASON = "Batching is not enabled"
# Starlette's multipart parser stops at max_files with this (a plain-text 400).
STARLETTE_TOO_MANY_FILES = "Too many files"
TOO_MANY_FILES_REASON = "too-many-files:"


def bearer_token(value: object) -> str | None:
    if not isinstance(value, str) or not value.lower().startswith(BEARER_PREFIX):
        return None
    token = value[len(BEARER_PREFIX) :].strip()
    return token or None


def client_ip(connection: Request | WebSocket) -> str | None:
    return connection.client.host if connection.client else None


def request_id_of(connection: Request | WebSocket) -> str:
    request_id = connection.scope.get("state", {}).get("request_id")
    return request_id if isinstance(request_id, str) else uuid.uuid4().hex


def limited_form_adapter(max_files: int) -> type[StarletteRequestAdapter]:
    """Starlette parses at most ``max_files`` files (default 1000, each spooled in memory up
    to 1 MB) before any resolver could refuse them."""

    class LimitedFormAdapter(StarletteRequestAdapter):
        async def get_form_data(self) -> FormData:
            try:
                form = await self._request.form(max_files=max_files, max_fields=max_files + 10)
            except StarletteHTTPException as error:
                if str(error.detail).startswith(STARLETTE_TOO_MANY_FILES):
                    raise HTTPException(400, f"{TOO_MANY_FILES_REASON}{max_files}") from error
                # Too many fields, no boundary, a part over its size: answered with a code.
                raise HTTPException(error.status_code, str(error.detail)) from error
            return FormData(files=form, form=form)

    return LimitedFormAdapter


class FoundryGraphQL(GraphQL[Context, None]):
    def __init__(
        self, schema: strawberry.Schema, container: Container, graphiql: GraphiQLPage
    ) -> None:
        settings = container.settings
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql_enabled else None,
            allow_queries_via_get=True,
            keep_alive=True,
            keep_alive_interval=15,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(
                seconds=settings.ws_connection_init_timeout_seconds
            ),
            multipart_uploads_enabled=True,
            max_subscriptions_per_connection=settings.ws_max_subscriptions_per_connection,
            # Browsers send Origin on the handshake; strawberry refuses a cross-origin one
            # not listed, so the origins CORS lets query may subscribe too.
            allowed_origins=settings.cors_allow_origins,
        )
        self._container = container
        # The session notices this process hears, which a socket's watch listens to.
        self._session_notices = container.revocations
        self.graphql_transport_ws_handler_class = TransportWsHandler
        self.graphql_ws_handler_class = LegacyWsHandler
        self._graphiql = graphiql
        self.request_adapter_class = limited_form_adapter(settings.upload_max_files)

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(self._graphiql.html)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        context = Context(
            services=self._container.services,
            request_id=request_id_of(request),
            client_ip=client_ip(request),
            rate_limiter=self._container.rate_limiter,
            over_websocket=isinstance(request, WebSocket),
        )
        if isinstance(request, Request):
            context.client_gone = getattr(request.state, "client_gone", None)
            token = bearer_token(request.headers.get("authorization"))
            if token is not None:
                await context.authenticate(token)
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate the socket from the connection_init payload, or refuse it with
        its code (SocketRefused: 4403, or 1013 when the check could not run).

        A socket is authenticated once: graphql-transport-ws refuses a second
        connection_init itself (4429); the legacy graphql-ws protocol would run this
        again, swap the socket's principal under running subscriptions and hold another
        connection slot, so it is refused here.
        """
        if context.socket_token is not None:
            raise SocketRefused(ErrorCode.VALIDATION_FAILED)
        params: Mapping[str, object] = context.connection_params or {}
        raw = next((v for k, v in params.items() if k.lower() == "authorization"), None)
        token = bearer_token(raw)
        if token is None:
            raise SocketRefused(Unauthenticated.code)
        await context.authenticate(token)
        if context.principal is None:
            raise SocketRefused(
                context.auth_error.code if context.auth_error else Unauthenticated.code
            )
        context.socket_token = token
        principal = context.principal
        slot = context.rate_limiter.hold(
            Budget.WEBSOCKETS_USER, str(principal.user_id), principal.role
        )
        try:
            await slot.__aenter__()
        except RateLimited as error:
            raise SocketRateLimited(error) from error
        context.socket_slot = slot
        return None

    def watch_session(
        self, context: Context, socket: EndableSocket, work: SocketWork | None
    ) -> SocketSessionWatch | None:
        """The watch that ends an acknowledged socket once its session has ended."""
        if context.principal is None or context.socket_token is None:
            return None
        return SocketSessionWatch(
            context, socket, work, self._session_notices, socket_sessions.RECHECK_SECONDS
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # Our own context, so the socket's connection slot is released however it ends.
            socket = WebSocket(scope, receive=receive, send=send)
            context = await self.get_context(socket, socket)
            try:
                await self.run(socket, context=context)
            finally:
                await context.release_socket_slot()
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        gone: asyncio.Event | None = None
        watcher: asyncio.Task[None] | None = None
        response: Response | None
        try:
            if watches_for_disconnect(request):
                # The whole body first: from then on the next message is the disconnect.
                # Operations that opt in (ask) stop when it comes; the others, mutations
                # with work after their commit, run to their end all the same.
                await request.body()
                gone = request.state.client_gone = asyncio.Event()
                watcher = asyncio.create_task(watch_for_disconnect(receive, gone))
            try:
                response = await self.run(request)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if gone is None or not gone.is_set() or (current and current.cancelling()):
                    raise  # a shutdown, not the client's leaving
                response = None  # an operation stopped because its client left
        except HTTPException as error:
            response = http_error(error)
        except ClientDisconnect:
            response = None  # the client hung up while sending its body (JSON or a form)
        finally:
            if watcher is not None:
                watcher.cancel()
            # The form's spooled files (uploads, up to the request limit) are closed now,
            # not when a refused upload's error, caught in a cycle, is collected.
            await request.close()
        if response is None or (gone is not None and gone.is_set()):
            # Nobody is there to read an answer: logged and counted as a hang-up.
            request.state.client_left = True
            return
        await response(scope, receive, send)

    def parse_json(self, data: str | bytes) -> object:
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):  # strawberry would call .get on it (500)
            raise HTTPException(400, "The request body must be a JSON object.")
        return parsed

    async def parse_multipart(self, request: AsyncHTTPRequestAdapter) -> dict[str, str]:
        try:
            return await super().parse_multipart(request)
        except (AttributeError, TypeError, ValueError, IndexError) as error:
            # A map that is no object of paths into the operations (a list, a path into
            # nothing): strawberry's placeholder replacement fails on it (500).
            raise HTTPException(400, "The multipart map does not match the operations.") from error


def watches_for_disconnect(request: Request) -> bool:
    """Plain POSTs (mutations such as ``ask``, which can run for a minute) learn when their
    client hangs up. Not GETs (queries, the IDE page) nor multipart uploads, whose body
    strawberry reads as it parses the form."""
    if request.method != "POST":
        return False
    content_type = request.headers.get("content-type", "")
    return not content_type.lower().startswith("multipart/")


async def watch_for_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    """Sets ``gone`` when the client hangs up. Start it once the request body has been
    read: what ``receive`` hands out next is then ``http.disconnect``."""
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


def http_error(error: HTTPException) -> Response:
    """strawberry refuses a request that is no GraphQL request (a batch, a body that is
    no object, an unknown operationName, ...) in plain text; answer as GraphQL errors
    with a code instead."""
    if error.status_code == 400 and error.reason == BATCHING_DISABLED_REASON:
        message = "Batched operations are not supported; send one operation per request."
        body = error_body(message, ErrorCode.BATCHING_NOT_SUPPORTED)
    elif error.status_code == 400 and error.reason.startswith(TOO_MANY_FILES_REASON):
        limit = int(error.reason.removeprefix(TOO_MANY_FILES_REASON))
        message = f"Send at most {limit} files per request."
        body = error_body(message, ErrorCode.TOO_MANY_FILES, maxFiles=limit)
    else:
        code = ErrorCode.REQUEST_TOO_LARGE if error.status_code == 413 else ErrorCode.BAD_REQUEST
        body = error_body(error.reason, code)
    return Response(body, status_code=error.status_code, media_type="application/json")
