"""Pure ASGI middleware: request ids + logs + metrics, body size limits, CSRF for multipart."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.entities import Principal, Role
from domain.errors import DomainError, ErrorCode, Forbidden, RateLimited
from domain.ports import Budget, RateLimiter
from domain.services.roles import require_role
from infrastructure.observability.metrics import HTTP_DURATION, HTTP_REQUESTS

log = structlog.get_logger("foundry.http")

KNOWN_ROUTES = frozenset({"/", "/graphql", "/healthz", "/readyz", "/metrics"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
CSRF_HEADERS = ((b"x-requested-with", b"foundry"), (b"apollo-require-preflight", b"true"))


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def route_label(path: str) -> str:
    if path.startswith("/graphiql/static/"):
        return "/graphiql/static"
    if path.startswith("/documents/") and path.endswith("/file"):
        return "/documents/{id}/file"  # one label, whichever document
    return path if path in KNOWN_ROUTES else "other"


def error_body(message: str, code: ErrorCode, **extensions: object) -> bytes:
    """A GraphQL error response's body, ASCII JSON: a message can quote the client (an
    unknown operationName), and JSON lets that hold a lone surrogate UTF-8 cannot."""
    error = {"message": message, "extensions": {"code": code.value, **extensions}}
    return json.dumps({"errors": [error]}).encode()


async def send_error(
    send: Send, status: int, code: ErrorCode, message: str, **extensions: object
) -> None:
    body = error_body(message, code, **extensions)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


CLIENT_CLOSED_REQUEST = 499


class RequestContextMiddleware:
    """Gives every request an id (X-Request-ID), logs it once, and counts it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = (_header(scope, b"x-request-id") or b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500 if scope["type"] == "http" else 101
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
            if not responded and scope["state"].get("client_left"):
                # The client hung up before its answer (graphql_view): nginx's "client
                # closed request", not a 500.
                status = CLIENT_CLOSED_REQUEST
        finally:
            elapsed = time.perf_counter() - started
            route = route_label(scope["path"])
            method = scope.get("method", "WS")
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(route).observe(elapsed)
            if route not in ("/healthz", "/metrics"):
                log.info(
                    "http.request",
                    method=method,
                    path=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    client=scope["client"][0] if scope.get("client") else None,
                )


class GraphQLGuardMiddleware:
    """Refuses oversized bodies and multipart POSTs without a CSRF-safe header."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/graphql" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or b"").lower()
        multipart = content_type.startswith(b"multipart/form-data")
        if multipart and not any(
            (_header(scope, name) or b"").strip().lower() == value for name, value in CSRF_HEADERS
        ):
            await send_error(
                send,
                400,
                ErrorCode.CSRF_CHECK_FAILED,
                "Multipart requests need the header 'X-Requested-With: foundry' "
                "or 'Apollo-Require-Preflight: true'.",
            )
            return
        uploader = None
        if multipart:
            uploader = await _uploader(scope, send)
            if uploader is None:
                return
        limit = self.max_upload_bytes if multipart else self.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(
                send, 413, ErrorCode.REQUEST_TOO_LARGE, f"The request exceeds {limit} bytes."
            )
            return
        if uploader is None:
            await self._forward(scope, receive, send, limit)
            return
        # Each upload is spooled to disk while it is parsed: one of the user's connection
        # slots (ws_connections_user, shared with WebSockets) bounds how many at once.
        limiter: RateLimiter = scope["app"].state.container.rate_limiter
        async with contextlib.AsyncExitStack() as held:
            try:
                await held.enter_async_context(
                    limiter.hold(Budget.WEBSOCKETS_USER, str(uploader.user_id), uploader.role)
                )
            except RateLimited as error:
                await send_error(send, 429, error.code, error.message, **error.details)
                return
            await self._forward(scope, receive, send, limit)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _limited(receive, limit), tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await send_error(
                send, 413, ErrorCode.REQUEST_TOO_LARGE, f"The request exceeds {limit} bytes."
            )


async def _uploader(scope: Scope, send: Send) -> Principal | None:
    """Uploads are parsed (and spooled) only for valid sessions of a role that may upload:
    an anonymous client or a viewer must not make the server buffer files. Answers the
    request itself when refusing (None)."""
    from infrastructure.http.graphql_view import bearer_token

    token = bearer_token((_header(scope, b"authorization") or b"").decode("latin-1"))
    if token is None:
        await send_error(send, 401, ErrorCode.UNAUTHENTICATED, "Uploads need an access token.")
        return None
    try:
        principal: Principal = await scope["app"].state.container.services.authenticate(token)
    except DomainError as error:
        # Sessions cannot be checked while Redis is down: that is no reason to log in again.
        status = 503 if error.code is ErrorCode.SERVICE_UNAVAILABLE else 401
        await send_error(send, status, error.code, error.message)
        return None
    try:
        require_role(principal, Role.EDITOR)  # the refusal uploadDocuments would give
    except Forbidden as error:
        await send_error(send, 403, error.code, error.message)
        return None
    return principal


class BodyTooLarge(Exception):
    pass


def _limited(receive: Receive, limit: int) -> Receive:
    """Count bytes as they arrive, for bodies without (or lying about) Content-Length."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"request body exceeds {limit} bytes")
        return message

    return wrapped
