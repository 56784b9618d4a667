from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from domain.entities import Document as DomainDocument
from domain.entities import DocumentStatus as DomainStatus
from domain.services.cursors import encode_cursor
from domain.services.documents import UploadResult
from schema.types.page_info import PageInfo

DOWNLOAD_PATH = "/documents/{id}/file"
"""Where a document's original file is served (a route template: ``{id}`` is its id)."""


def document_file_path(document_id: str) -> str:
    return DOWNLOAD_PATH.format(id=document_id)


@strawberry.enum(description="Where a document is in the ingestion pipeline.")
class DocumentStatus(Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"

    def to_domain(self) -> DomainStatus:
        return DomainStatus(self.value)


@strawberry.type(description="An uploaded file and its ingestion state.")
class Document:
    id: strawberry.ID
    filename: str
    mime_type: str
    size_bytes: int
    sha256: str
    status: DocumentStatus
    error_code: str | None
    page_count: int | None
    chunk_count: int
    created_at: datetime
    processed_at: datetime | None

    @strawberry.field(
        description="Where to GET the uploaded original file, relative to the server "
        "(send the same Authorization header as for /graphql)."
    )
    def download_path(self) -> str:
        return document_file_path(self.id)

    @classmethod
    def from_domain(cls, document: DomainDocument) -> Document:
        status = (
            DocumentStatus(document.status.value)
            if document.status is not DomainStatus.DELETED
            else DocumentStatus.FAILED
        )
        return cls(
            id=strawberry.ID(str(document.id)),
            filename=document.filename,
            mime_type=document.mime_type,
            size_bytes=document.size_bytes,
            sha256=document.sha256,
            status=status,
            error_code=document.error_code
            if document.status is not DomainStatus.DELETED
            else "DELETED",
            page_count=document.page_count,
            chunk_count=document.chunk_count,
            created_at=document.created_at,
            processed_at=document.processed_at,
        )


@strawberry.type
class DocumentEdge:
    cursor: str
    node: Document

    @classmethod
    def from_domain(cls, document: DomainDocument) -> DocumentEdge:
        return cls(
            cursor=encode_cursor(document.created_at, document.id),
            node=Document.from_domain(document),
        )


@strawberry.type
class DocumentConnection:
    edges: list[DocumentEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="An expected, per-item failure with a stable code.")
class UserError:
    code: str
    message: str
    document_id: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "The document the failure is about, when there is one: for DUPLICATE_DOCUMENT, "
            "the document that already holds this content."
        ),
    )


@strawberry.type(description="What happened to one uploaded file.")
class UploadOutcome:
    filename: str
    document: Document | None
    error: UserError | None

    @classmethod
    def from_domain(cls, result: UploadResult) -> UploadOutcome:
        error = None
        if result.error:
            about = result.error.details.get("documentId")
            error = UserError(
                code=result.error.code.value,
                message=result.error.message,
                document_id=strawberry.ID(about) if isinstance(about, str) else None,
            )
        document = Document.from_domain(result.document) if result.document else None
        return cls(filename=result.filename, document=document, error=error)


@strawberry.type(description="A status or progress change of one of your organisation's documents.")
class DocumentEvent:
    document: Document
    progress: float | None = strawberry.field(description="0..1 while processing; 1 when ready.")
    deleted: bool = strawberry.field(
        default=False,
        description=(
            "True when the document was deleted: it is then reported with status FAILED "
            'and errorCode "DELETED", and is gone from documents and document(id).'
        ),
    )
