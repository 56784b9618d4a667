"""Strawberry's ASGI view wired to our context, authentication and WebSocket handshake."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta

import strawberry
from cross_web import FormData, StarletteRequestAdapter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from domain.errors import Unauthenticated
from infrastructure.container import Container
from infrastructure.http.graphiql import GraphiQLPage
from schema.context import Context

BEARER_PREFIX = "bearer "


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
            form = await self._request.form(max_files=max_files, max_fields=max_files + 10)
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
        )
        self._container = container
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
            over_websocket=isinstance(request, WebSocket),
        )
        if isinstance(request, Request):
            token = bearer_token(request.headers.get("authorization"))
            if token is not None:
                await context.authenticate(token)
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate the socket from the connection_init payload, or close it (4403)."""
        params: Mapping[str, object] = context.connection_params or {}
        raw = next((v for k, v in params.items() if k.lower() == "authorization"), None)
        token = bearer_token(raw)
        if token is None:
            raise ConnectionRejectionError({"code": Unauthenticated.code.value})
        await context.authenticate(token)
        if context.principal is None:
            code = context.auth_error.code.value if context.auth_error else "UNAUTHENTICATED"
            raise ConnectionRejectionError({"code": code})
        context.socket_token = token
        return None
