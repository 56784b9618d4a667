"""GET /documents/{id}/file: a document's uploaded original, streamed to its organisation.

Authenticated as /graphql is (``Authorization: Bearer`` with an access token or an API
key), any role; the document is looked up with the same service call as ``document(id)``,
so another organisation's id, an unknown, malformed or deleted one are all the same 404.
Refusals are GraphQL-shaped errors with a registry code.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from urllib.parse import quote

import anyio.to_thread
import structlog
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from domain.entities import Principal
from domain.errors import DomainError, ErrorCode, NotFound, StoredFileMissing, Unauthenticated
from domain.ingestion.ports import BlobStore
from domain.ports import Budget
from domain.services import Services
from infrastructure.container import Container
from infrastructure.http.graphql_view import bearer_token, request_id_of
from infrastructure.http.middleware import error_body
from resolvers.ids import parse_id

log = structlog.get_logger("foundry.downloads")

CHUNK_BYTES = 64 * 1024
NO_STORE = "private, no-store"
# An uploaded HTML file must never run as this origin's page, even opened inline.
SANDBOX = "default-src 'none'; sandbox"
# RFC 5987 attr-char: what filename* may carry unencoded.
ATTR_CHARS = "!#$&+-.^_`|~"
# Never in the quoted fallback filename: quoting breaks on them, and some user agents
# percent-decode it (RFC 6266, appendix D).
FALLBACK_UNSAFE = frozenset('"\\%')

_STATUS = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.STORED_FILE_MISSING: 404,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
}


@dataclass(frozen=True, slots=True)
class OpenedFile:
    descriptor: int
    size: int


class DocumentFiles:
    """The ASGI endpoint; the path parameter ``id`` names the document."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        container: Container = request.app.state.container
        # Holds the user's connection slot and the open file until the last byte is sent.
        async with AsyncExitStack() as held:
            try:
                response = await self._prepare(request, container, held)
            except DomainError as error:
                response = refusal(error)
            except Exception:
                request_id = request_id_of(request)
                log.exception("download.unexpected_error", request_id=request_id)
                body = error_body("Unexpected error.", ErrorCode.INTERNAL, requestId=request_id)
                response = Response(body, 500, _refusal_headers(), "application/json")
            await response(scope, receive, send)

    async def _prepare(
        self, request: Request, container: Container, held: AsyncExitStack
    ) -> Response:
        principal = await authenticate(request, container.services)
        # Every try counts, an unknown id too, like the other per-user budgets.
        await container.rate_limiter.hit(
            Budget.DOWNLOAD_USER, str(principal.user_id), principal.role
        )
        # Each download holds one of the user's connection slots (ws_connections_user,
        # which uploads and WebSockets share) for as long as it streams.
        await held.enter_async_context(
            container.rate_limiter.hold(
                Budget.WEBSOCKETS_USER, str(principal.user_id), principal.role
            )
        )
        document_id = parse_id(request.path_params.get("id", ""), "document")
        document = await container.services.documents.get(principal, document_id)
        if document is None:
            raise NotFound("No such document.")
        try:
            opened = await anyio.to_thread.run_sync(
                open_stored, container.blobs, document.storage_key
            )
        except FileNotFoundError:
            # Deleted since it was looked up (a delete removes the file after its commit):
            # the same NOT_FOUND as any deleted id, not a lost file.
            if await container.services.documents.get(principal, document_id) is None:
                raise NotFound("No such document.") from None
            log.warning("download.stored_file_missing", document_id=str(document.id))
            raise StoredFileMissing() from None
        held.callback(os.close, opened.descriptor)
        log.info("download.started", document_id=str(document.id), bytes=opened.size)
        headers = {
            # Not a media_type: Starlette would add "; charset=utf-8" to text/*, and the
            # stored bytes are in whatever encoding they were uploaded in.
            "content-type": document.mime_type,
            "content-length": str(opened.size),
            "content-disposition": content_disposition(document.filename),
            "x-content-type-options": "nosniff",
            "cache-control": NO_STORE,
            "content-security-policy": SANDBOX,
        }
        if request.method == "HEAD":
            return Response(b"", 200, headers)
        return StreamingResponse(read_chunks(opened), 200, headers)


async def authenticate(request: Request, services: Services) -> Principal:
    """The caller, as /graphql over HTTP finds it (an access token or an API key)."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthenticated(
            "Send 'Authorization: Bearer <access token or API key>' to download files."
        )
    return await services.authenticate(token)


def refusal(error: DomainError) -> Response:
    status = _STATUS.get(error.code, 400)
    headers = _refusal_headers()
    retry_after = error.details.get("retryAfter")
    if isinstance(retry_after, int) and not isinstance(retry_after, bool):
        headers["retry-after"] = str(retry_after)
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    body = error_body(error.message, error.code, **error.details)
    return Response(body, status, headers, "application/json")


def _refusal_headers() -> dict[str, str]:
    return {"cache-control": NO_STORE, "x-content-type-options": "nosniff"}


def open_stored(blobs: BlobStore, key: str) -> OpenedFile:
    """The blob opened for reading, with its size (blocking). FileNotFoundError when it
    is missing or is no regular file (what storage-check reports as missing)."""
    descriptor = os.open(blobs.local_path(key), os.O_RDONLY | os.O_CLOEXEC)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise FileNotFoundError(key)
    except BaseException:
        os.close(descriptor)
        raise
    return OpenedFile(descriptor, status.st_size)


async def read_chunks(opened: OpenedFile) -> AsyncIterator[bytes]:
    """The file's bytes in chunks, at most the size announced in Content-Length.

    Each read runs on a worker thread and is waited for even when the response is
    cancelled (the client left): the descriptor is closed only once no read is using it.
    """
    left = opened.size
    while left > 0:
        chunk = await anyio.to_thread.run_sync(
            os.pread, opened.descriptor, min(CHUNK_BYTES, left), opened.size - left
        )
        if not chunk:  # shorter than it was when opened: the client sees a cut response
            log.warning("download.file_shrank", missing_bytes=left)
            return
        left -= len(chunk)
        yield chunk


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` every client reads and, when the name is
    more than that, the exact name as ``filename*`` in UTF-8 (RFC 6266, RFC 5987)."""
    # Printable only: no CR, LF or other control character reaches the header.
    name = "".join(ch for ch in filename if ch.isprintable()).strip()
    name = name or "download"
    fallback = ascii_fallback(name)
    value = f'attachment; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe=ATTR_CHARS)}"
    return value


def ascii_fallback(name: str) -> str:
    """Accents dropped (é -> e), other non-ASCII and unsafe characters as '_'."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "".join(
        ch if ch.isascii() and ch.isprintable() and ch not in FALLBACK_UNSAFE else "_"
        for ch in plain
    )
