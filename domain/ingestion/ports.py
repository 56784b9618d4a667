"""Ports of the document pipeline: storage, queue, events, parsing, embeddings, repositories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from uuid import UUID

from domain.entities import (
    ChunkDraft,
    Document,
    DocumentEvent,
    DocumentPage,
    DocumentStatus,
    ParsedDocument,
)
from domain.ingestion.chunking import Tokenizer
from domain.ingestion.filetypes import FileKind


@dataclass(frozen=True, slots=True)
class IncomingFile:
    """One uploaded file as the API layer hands it over: read(n) returns b"" at the end."""

    filename: str
    content_type: str | None
    read: Callable[[int], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """A file streamed to private temporary storage, measured and hashed on the way."""

    token: str
    size: int
    sha256: str
    head: bytes


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file the blob store holds: a blob under its key, or a staging file (a token)."""

    key: str
    modified_at: datetime
    size: int
    staging: bool = False


class BlobStore(Protocol):
    async def stage(self, source: IncomingFile, max_bytes: int) -> StagedBlob:
        """Stream into a 0600 temporary file; FileTooLarge as soon as max_bytes is passed."""
        ...

    async def commit(self, staged: StagedBlob, key: str) -> None:
        """Make a staged file the blob stored under ``key``."""
        ...

    async def discard(self, staged: StagedBlob) -> None: ...

    def local_path(self, key: str) -> Path:
        """A local file with the blob's bytes, for parsers."""
        ...

    async def delete(self, key: str) -> None: ...

    def scan(self, batch_size: int) -> Iterator[list[StoredFile]]:
        """Every stored blob, then every staging file, in batches (blocking: it walks
        the folders, so call it from a thread)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the blob is stored (blocking)."""
        ...

    async def remove(self, stored: StoredFile) -> None:
        """Remove a file found by ``scan`` (a blob or a staging file)."""
        ...


class JobQueue(Protocol):
    async def enqueue_ingest(self, document_id: UUID, organization_id: UUID) -> None:
        """Queue the document's ingestion; the organisation picks its lane, so one
        organisation's backlog does not hold up the others' uploads."""
        ...

    async def waiting(self, document_ids: Collection[UUID]) -> set[UUID]:
        """Which of these documents have an ingestion job in the queue that no worker has
        taken yet (waiting, or delayed for a retry). Raises ServiceUnavailable."""
        ...


class EventBus(Protocol):
    async def publish(self, event: DocumentEvent) -> None: ...

    def subscribe(self, organization_id: UUID) -> AsyncIterator[DocumentEvent]:
        """Events of one organisation's documents from now on, from any process."""
        ...


class ParseAbandoned(Exception):
    """A parse given up because its run no longer needs it (the document was deleted or
    reprocessed meanwhile): nothing is known about the file, so it never fails one."""


class DocumentParser(Protocol):
    def parse(
        self, path: Path, kind: FileKind, abandoned: Callable[[], bool] | None = None
    ) -> ParsedDocument:
        """Text per page; raises an IngestionFailed subclass for bad files (blocking).

        ``abandoned`` (called from the parsing thread, so thread-safe) tells a parser that
        can stop a parse in progress when its result is no longer wanted: it then stops
        soon and raises ParseAbandoned. A parser that cannot stop may ignore it."""
        ...


class Embedder(Protocol):
    name: str
    dimensions: int

    @property
    def tokenizer(self) -> Tokenizer: ...

    def warm_up(self, queries: bool = False) -> None:
        """Load models now (start-up) so the first document is not slow, and the first
        question either when ``queries`` (blocking)."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors; raises TransientFailure when the provider is unavailable."""
        ...

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        """Several questions in one call (search batches concurrent questions)."""
        ...

    async def embed_query(self, text: str) -> list[float]: ...

    async def embed_sentences(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors of short passages that are compared with a question's and dropped (the
        extractive answerer's candidate sentences): never stored, so the provider may use
        the encoder it uses for questions."""
        ...


@dataclass(frozen=True, slots=True)
class StorageUsage:
    """What an organisation's live (not deleted) documents take: their number and the
    bytes of their original files."""

    documents: int
    bytes: int


class DocumentRepository(Protocol):
    async def add(self, document: Document) -> None:
        """Raises DuplicateDocument when the organisation already has this content."""
        ...

    async def get(self, document_id: UUID) -> Document | None: ...

    async def get_many(self, document_ids: Sequence[UUID]) -> list[Document]:
        """The organisation's documents among these ids, in any status (deleted too)."""
        ...

    async def find_live_by_sha256(self, sha256: str) -> Document | None: ...

    async def live_usage(self, *, lock: bool = False) -> StorageUsage:
        """The organisation's live documents' count and total size. ``lock``: first take
        the organisation's upload lock, held until the transaction ends, so uploads that
        check a quota take turns and each sees the documents of those before it."""
        ...

    async def list(
        self,
        first: int,
        after: tuple[datetime, UUID] | None,
        status: DocumentStatus | None,
        filename_contains: str | None = None,
    ) -> DocumentPage:
        """Live documents newest first, after the ``after`` position (created_at, id), of
        one ``status`` (any live one when None) and whose filename contains
        ``filename_contains`` ignoring case, its characters all literal (no wildcards).
        ``total_count`` counts every document the filters match, on any page."""
        ...

    async def mark_deleted(self, document_id: UUID, at: datetime) -> Document | None: ...

    async def reset_to_pending(
        self, document_id: UUID, at: datetime, *, fresh: bool = False
    ) -> Document | None:
        """Back to pending; ``fresh`` (a user's reprocess) also resets the attempt count."""
        ...

    async def requeue_if_unchanged(self, seen: Document, at: datetime) -> Document | None:
        """Back to pending only if the row is exactly as ``seen`` (same status and update time)."""
        ...

    async def hand_back_if_unchanged(self, seen: Document, at: datetime) -> Document | None:
        """What :meth:`requeue_if_unchanged` does, also giving back the attempt the claim
        ``seen`` counted (never below 0): a stopping worker hands the document back, which
        is no fault of the document's."""
        ...

    async def fail_if_unchanged(
        self, seen: Document, error_code: str, at: datetime
    ) -> Document | None: ...

    async def claim(self, document_id: UUID, at: datetime) -> Document | None:
        """pending -> processing (one attempt more); None when it is not pending."""
        ...

    async def lock_claimed(self, claimed: Document) -> Document | None:
        """The document, locked, if it is still being processed by the run that claimed
        it (``claimed`` is what :meth:`claim` returned)."""
        ...

    async def is_claimed(self, claimed: Document) -> bool:
        """Whether the run that claimed the document still holds the claim (the test of
        :meth:`lock_claimed`, without locking anything)."""
        ...

    async def heartbeat(self, claimed: Document, at: datetime) -> bool:
        """Record that the run that claimed the document is alive (its row's ``updated_at``
        is left alone); False when that run's claim is no longer current."""
        ...

    async def mark_ready(
        self, document_id: UUID, chunk_count: int, page_count: int | None, at: datetime
    ) -> Document: ...


class ChunkRepository(Protocol):
    async def replace(
        self,
        document: Document,
        drafts: Sequence[ChunkDraft],
        embeddings: Sequence[Sequence[float]],
    ) -> None:
        """The document's chunks become exactly these (deterministic ids)."""
        ...

    async def delete_for_document(self, document_id: UUID) -> None: ...


class MaintenanceRepository(Protocol):
    """Cross-organisation reads for the watchdog (system transactions only)."""

    async def organization_of(self, document_id: UUID) -> UUID | None: ...

    async def stuck(
        self,
        processing_before: datetime,
        silent_before: datetime,
        pending_before: datetime,
        limit: int,
    ) -> list[Document]:
        """Processing since before ``processing_before`` or with no heartbeat since
        ``silent_before`` (its worker died), or pending since before ``pending_before``."""
        ...

    async def storage_keys(
        self, document_ids: Sequence[UUID]
    ) -> dict[UUID, tuple[str, DocumentStatus]]:
        """The storage key and status of each of these documents that has a row."""
        ...

    async def live_documents(
        self, created_before: datetime, after: UUID | None, limit: int
    ) -> list[tuple[UUID, UUID, str, DocumentStatus]]:
        """Documents not deleted, created before ``created_before``, by id after
        ``after``: (id, organisation, storage key, status)."""
        ...
