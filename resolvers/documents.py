"""Documents: upload, list, read, delete, reprocess, and live events."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Sequence
from contextlib import aclosing
from typing import Annotated, Protocol, runtime_checkable

import strawberry
from strawberry.file_uploads import Upload

from domain.entities import DocumentStatus as DomainStatus
from domain.entities import Principal, Role
from domain.errors import NotFound, ValidationFailed
from domain.ingestion.ports import IncomingFile
from domain.ports import Budget
from domain.services.roles import require_role
from resolvers.ids import parse_id
from schema.context import Info
from schema.types.document import (
    Document,
    DocumentConnection,
    DocumentEdge,
    DocumentEvent,
    DocumentStatus,
    UploadOutcome,
)
from schema.types.page_info import DOCUMENTS_PAGE, PageInfo, page_size


@runtime_checkable
class UploadedFile(Protocol):
    """What the multipart integration hands over for each file (Starlette's UploadFile)."""

    filename: str | None
    content_type: str | None

    def read(self, size: int = -1) -> Awaitable[bytes]: ...


def uploaded_files(files: Sequence[object]) -> list[UploadedFile]:
    """The files of a multipart request. The Upload scalar takes any value (a string or
    an object in the JSON, a multipart map entry naming a plain form field): those are
    refused here, not met as a missing attribute in the middle of the upload. So is one
    file part mapped to several positions: the multipart parser counts parts, not
    positions, and each position would be charged and read as a file of its own."""
    uploads: list[UploadedFile] = []
    seen: set[int] = set()
    for position, value in enumerate(files):
        if not isinstance(value, UploadedFile):
            raise ValidationFailed(
                f"files[{position}] is not a file: send each file as a part of a GraphQL"
                " multipart request, mapped to its variable.",
                field="files",
            )
        if id(value) in seen:  # the same object, held by ``files``: ids stay distinct
            raise ValidationFailed(
                f"files[{position}] is a file part already mapped to another position: map"
                " each file part to one variable.",
                field="files",
            )
        seen.add(id(value))
        uploads.append(value)
    return uploads


async def upload_documents(info: Info, files: list[Upload]) -> list[UploadOutcome]:
    ctx = info.context
    principal = ctx.require_principal()
    # The service checks the role again; checked here too because the organisation's
    # budget is charged first, and a viewer's refused uploads must not spend it.
    require_role(principal, Role.EDITOR)
    # One file part can fill any number of positions (the map): counted and checked
    # before the budget is charged for them.
    ctx.services.documents.check_batch(len(files))
    incoming = [
        IncomingFile(
            filename=upload.filename or "untitled",
            content_type=upload.content_type,
            read=upload.read,
        )
        for upload in uploaded_files(files)
    ]
    await ctx.rate_limiter.hit(
        Budget.UPLOAD_ORGANIZATION, str(principal.organization_id), principal.role, len(incoming)
    )
    results = await ctx.services.documents.upload(principal, incoming, ctx.client_ip)
    return [UploadOutcome.from_domain(result) for result in results]


async def documents(
    info: Info,
    first: int | None = DOCUMENTS_PAGE,
    after: str | None = None,
    status: DocumentStatus | None = None,
    filename: Annotated[
        str | None,
        strawberry.argument(
            description="Only documents whose filename contains this text, ignoring case "
            "and surrounding spaces (% and _ match themselves; at most 255 characters; "
            "blank means no filter)."
        ),
    ] = None,
) -> DocumentConnection:
    ctx = info.context
    page = await ctx.services.documents.list(
        ctx.require_principal(),
        page_size(first, DOCUMENTS_PAGE),
        after,
        status.to_domain() if status else None,
        filename,
    )
    edges = [DocumentEdge.from_domain(item) for item in page.items]
    return DocumentConnection(
        edges=edges,
        page_info=PageInfo.forward(edges, has_next_page=page.has_next_page),
        total_count=page.total_count,
    )


async def document(info: Info, id: strawberry.ID) -> Document | None:
    """The document, or null with NOT_FOUND (unknown, malformed, deleted or another
    organisation's id alike)."""
    ctx = info.context
    found = await ctx.services.documents.get(ctx.require_principal(), parse_id(id, "document"))
    if found is None:
        raise NotFound("No such document.")
    return Document.from_domain(found)


async def delete_document(info: Info, id: strawberry.ID) -> bool:
    ctx = info.context
    return await ctx.services.documents.delete(
        ctx.require_principal(), parse_id(id, "document"), ctx.client_ip
    )


async def reprocess_document(info: Info, id: strawberry.ID) -> Document:
    ctx = info.context
    principal = ctx.require_principal()
    # As for uploads: a viewer is refused before the organisation's budget is charged.
    require_role(principal, Role.EDITOR)
    # Every call queues a whole ingestion again, even for a document that is mid-way.
    await ctx.rate_limiter.hit(
        Budget.REPROCESS_ORGANIZATION, str(principal.organization_id), principal.role
    )
    reset = await ctx.services.documents.reprocess(
        principal, parse_id(id, "document"), ctx.client_ip
    )
    return Document.from_domain(reset)


SESSION_RECHECK_SECONDS = 5.0


async def document_events(info: Info) -> AsyncGenerator[DocumentEvent, None]:
    ctx = info.context
    principal = ctx.require_principal()
    # The subscription holds one of the user's slots while it stays open.
    async with (
        ctx.rate_limiter.hold(Budget.SUBSCRIPTIONS_USER, str(principal.user_id), principal.role),
        aclosing(_document_events(info, principal)) as events,
    ):
        async for event in events:
            yield event


async def _document_events(info: Info, principal: Principal) -> AsyncGenerator[DocumentEvent, None]:
    ctx = info.context
    async for event in ctx.services.documents.watch(principal):
        # Re-checked every few seconds, and at once when this process heard the session
        # was revoked or must refresh: the stream then ends with the auth error.
        await ctx.keep_session(principal, SESSION_RECHECK_SECONDS)
        yield DocumentEvent(
            document=Document.from_domain(event.document),
            progress=event.progress,
            deleted=event.document.status is DomainStatus.DELETED,
        )
