from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import Select, func, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import Document, DocumentPage, DocumentStatus
from domain.errors import DuplicateDocument
from domain.ingestion.ports import StorageUsage
from infrastructure.database.driver import driver_connection
from infrastructure.database.models import DocumentRow, OrganizationRow

LIVE = (
    DocumentStatus.PENDING,
    DocumentStatus.PROCESSING,
    DocumentStatus.READY,
    DocumentStatus.FAILED,
)


# The columns are named as Document's fields, so one list serves both readers.
_FIELDS = tuple(field.name for field in dataclasses.fields(Document))


def _document(fields: dict[str, Any]) -> Document:
    fields["status"] = DocumentStatus(fields["status"])
    return Document(**fields)


def to_document(row: DocumentRow) -> Document:
    return _document({name: getattr(row, name) for name in _FIELDS})


class WatchedDocument(Document):
    """A document as the watchdog found it, with the heartbeat its row had then: the
    watchdog's "only if unchanged" updates compare it too, so a worker that beat for the
    document since (alive after all, only slow to beat) keeps it. The heartbeat is no
    field of Document (events, equality and the domain never see it): it is the row's
    version, a persistence detail."""

    __slots__ = ("heartbeat_at",)
    heartbeat_at: datetime | None

    @classmethod
    def of(cls, row: DocumentRow) -> WatchedDocument:
        fields: dict[str, Any] = {name: getattr(row, name) for name in _FIELDS}
        fields["status"] = DocumentStatus(fields["status"])
        watched = cls(**fields)
        object.__setattr__(watched, "heartbeat_at", row.heartbeat_at)  # frozen, like Document
        return watched


# get_many runs with every search and answer (the hits' documents): sent straight
# through the driver (see driver.py), rows read as tuples, no ORM instances. The
# column list is Document's own field names, not input.
_GET_MANY = (
    f"SELECT {', '.join(_FIELDS)} FROM documents "  # noqa: S608
    "WHERE organization_id = $1::uuid AND id = ANY ($2::uuid[])"
)


async def fetch_documents(
    connection: asyncpg.Connection, organization_id: UUID, document_ids: Sequence[UUID]
) -> list[Document]:
    """The organisation's documents with these ids (deleted ones too), in no order."""
    if not document_ids:
        return []
    rows = await connection.fetch(_GET_MANY, organization_id, list(document_ids))
    return [_document(dict(zip(_FIELDS, row, strict=True))) for row in rows]


def contains_pattern(text: str) -> str:
    """A LIKE pattern (escape character backslash) matching ``text`` anywhere, with the
    pattern characters it holds (% _ and the backslash) matching only themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SqlDocumentRepository:
    """Documents of the transaction's organisation (row-level security backs the filter)."""

    def __init__(self, session: AsyncSession, organization_id: UUID | None) -> None:
        self._session = session
        self._organization_id = organization_id

    def _organization(self) -> UUID:
        if self._organization_id is None:
            raise RuntimeError("document repository used outside a tenant transaction")
        return self._organization_id

    def _base(self) -> Select[DocumentRow]:
        return select(DocumentRow).where(DocumentRow.organization_id == self._organization())

    async def add(self, document: Document) -> None:
        row = DocumentRow(
            id=document.id,
            organization_id=document.organization_id,
            uploaded_by=document.uploaded_by,
            filename=document.filename,
            mime_type=document.mime_type,
            size_bytes=document.size_bytes,
            sha256=document.sha256,
            storage_key=document.storage_key,
            status=document.status.value,
            created_at=document.created_at,
            updated_at=document.updated_at,
        )
        try:
            # The savepoint must exist before the INSERT: begin_nested() flushes
            # pending objects first, and a failure there would end the transaction.
            async with self._session.begin_nested():
                self._session.add(row)
                await self._session.flush()
        except IntegrityError as exc:
            if "uq_documents_organization_id_sha256_live" in str(exc.orig):
                raise DuplicateDocument() from exc
            raise

    async def get(self, document_id: UUID) -> Document | None:
        row = await self._session.scalar(self._base().where(DocumentRow.id == document_id))
        return to_document(row) if row else None

    async def get_many(self, document_ids: Sequence[UUID]) -> list[Document]:
        if not document_ids:
            return []
        return await fetch_documents(
            await driver_connection(self._session), self._organization(), document_ids
        )

    async def find_live_by_sha256(self, sha256: str) -> Document | None:
        row = await self._session.scalar(
            self._base().where(
                DocumentRow.sha256 == sha256, DocumentRow.status != DocumentStatus.DELETED.value
            )
        )
        return to_document(row) if row else None

    async def live_usage(self, *, lock: bool = False) -> StorageUsage:
        organization_id = self._organization()
        if lock:
            # The organisation's row, FOR NO KEY UPDATE (what the corpus version's trigger
            # takes, migration 0004): uploads that check a quota wait for each other, and
            # after the wait (read committed) the sum below sees the row of the one before.
            # Log-ins' holds and the KEY SHARE locks of inserted documents' and chunks'
            # foreign keys do not conflict with it, so those never wait for an upload.
            await self._session.execute(
                select(OrganizationRow.id)
                .where(OrganizationRow.id == organization_id)
                .with_for_update(key_share=True)
            )
        # Read through an index on organization_id (uq_documents_organization_id_id),
        # so it costs what the organisation's own documents do, not the table: at 10,000
        # of them (8,000 live) beside 100,000 of 40 other organisations, the lock and this
        # took 1.4 ms together, warm (EXPLAIN ANALYZE: 3.5 ms, a bitmap scan of 386 pages).
        row = (
            await self._session.execute(
                select(func.count(), func.coalesce(func.sum(DocumentRow.size_bytes), 0)).where(
                    DocumentRow.organization_id == organization_id,
                    DocumentRow.status.in_([s.value for s in LIVE]),
                )
            )
        ).one()
        return StorageUsage(documents=int(row[0]), bytes=int(row[1]))

    async def list(
        self,
        first: int,
        after: tuple[datetime, UUID] | None,
        status: DocumentStatus | None,
        filename_contains: str | None = None,
    ) -> DocumentPage:
        statuses = [status.value] if status else [s.value for s in LIVE]
        query = self._base().where(DocumentRow.status.in_(statuses))
        if filename_contains:
            query = query.where(
                DocumentRow.filename.ilike(contains_pattern(filename_contains), escape="\\")
            )
        total = await self._session.scalar(select(func.count()).select_from(query.subquery()))
        if after is not None:
            query = query.where(
                tuple_(DocumentRow.created_at, DocumentRow.id) < tuple_(after[0], after[1])
            )
        rows = list(
            await self._session.scalars(
                query.order_by(DocumentRow.created_at.desc(), DocumentRow.id.desc()).limit(
                    first + 1
                )
            )
        )
        return DocumentPage(
            items=[to_document(row) for row in rows[:first]],
            has_next_page=len(rows) > first,
            total_count=int(total or 0),
        )

    async def _update(
        self, document_id: UUID, allowed: tuple[DocumentStatus, ...], **values: object
    ) -> Document | None:
        statement = (
            update(DocumentRow)
            .where(
                DocumentRow.organization_id == self._organization_id,
                DocumentRow.id == document_id,
                DocumentRow.status.in_([s.value for s in allowed]),
            )
            .values(**values)
            .returning(DocumentRow)
        )
        row = await self._session.scalar(statement, execution_options={"populate_existing": True})
        return to_document(row) if row else None

    async def mark_deleted(self, document_id: UUID, at: datetime) -> Document | None:
        return await self._update(
            document_id, LIVE, status=DocumentStatus.DELETED.value, updated_at=at, chunk_count=0
        )

    async def reset_to_pending(
        self, document_id: UUID, at: datetime, *, fresh: bool = False
    ) -> Document | None:
        extra: dict[str, object] = {"attempts": 0} if fresh else {}
        return await self._update(
            document_id,
            LIVE,
            status=DocumentStatus.PENDING.value,
            error_code=None,
            updated_at=at,
            processing_started_at=None,
            heartbeat_at=None,
            **extra,
        )

    async def requeue_if_unchanged(self, seen: Document, at: datetime) -> Document | None:
        return await self._update_if_unchanged(
            seen,
            status=DocumentStatus.PENDING.value,
            updated_at=at,
            processing_started_at=None,
            heartbeat_at=None,
        )

    async def hand_back_if_unchanged(self, seen: Document, at: datetime) -> Document | None:
        # The attempt given back in the same conditional UPDATE: only the claim that
        # counted it gives it back, and only once.
        return await self._update_if_unchanged(
            seen,
            status=DocumentStatus.PENDING.value,
            attempts=func.greatest(DocumentRow.attempts - 1, 0),
            updated_at=at,
            processing_started_at=None,
            heartbeat_at=None,
        )

    async def fail_if_unchanged(
        self, seen: Document, error_code: str, at: datetime
    ) -> Document | None:
        return await self._update_if_unchanged(
            seen,
            status=DocumentStatus.FAILED.value,
            error_code=error_code,
            chunk_count=0,
            processed_at=at,
            updated_at=at,
        )

    async def _update_if_unchanged(self, seen: Document, **values: object) -> Document | None:
        unchanged = [
            DocumentRow.organization_id == self._organization_id,
            DocumentRow.id == seen.id,
            DocumentRow.status == seen.status.value,
            DocumentRow.updated_at == seen.updated_at,
        ]
        if isinstance(seen, WatchedDocument) and seen.status is DocumentStatus.PROCESSING:
            # A heartbeat leaves updated_at alone (the run's claim stays current).
            unchanged.append(DocumentRow.heartbeat_at.is_not_distinct_from(seen.heartbeat_at))
        row = await self._session.scalar(
            update(DocumentRow).where(*unchanged).values(**values).returning(DocumentRow),
            execution_options={"populate_existing": True},
        )
        return to_document(row) if row else None

    async def claim(self, document_id: UUID, at: datetime) -> Document | None:
        # First wait for any transaction changing the row: the watchdog sets a stuck
        # document back to pending and queues its job before it commits, and the UPDATE
        # below alone would pass over a row its snapshot still shows processing, leaving
        # the document pending with its job spent. (Read committed: the UPDATE, a new
        # statement, then sees what that transaction committed.)
        await self._session.execute(
            select(DocumentRow.id)
            .where(
                DocumentRow.organization_id == self._organization(), DocumentRow.id == document_id
            )
            .with_for_update()
        )
        return await self._update(
            document_id,
            (DocumentStatus.PENDING,),
            status=DocumentStatus.PROCESSING.value,
            attempts=DocumentRow.attempts + 1,
            processing_started_at=at,
            heartbeat_at=at,
            updated_at=at,
        )

    async def heartbeat(self, claimed: Document, at: datetime) -> bool:
        # claimed is PROCESSING; updated_at is left alone, so the claim stays current.
        return await self._update_if_unchanged(claimed, heartbeat_at=at) is not None

    async def lock_claimed(self, claimed: Document) -> Document | None:
        row = await self._session.scalar(self._claimed(claimed).with_for_update())
        return to_document(row) if row else None

    async def is_claimed(self, claimed: Document) -> bool:
        return await self._session.scalar(self._claimed(claimed)) is not None

    def _claimed(self, claimed: Document) -> Select[DocumentRow]:
        """The document while the run that claimed it still holds the claim."""
        return self._base().where(
            DocumentRow.id == claimed.id,
            DocumentRow.status == DocumentStatus.PROCESSING.value,
            DocumentRow.updated_at == claimed.updated_at,
        )

    async def mark_ready(
        self, document_id: UUID, chunk_count: int, page_count: int | None, at: datetime
    ) -> Document:
        document = await self._update(
            document_id,
            (DocumentStatus.PROCESSING,),
            status=DocumentStatus.READY.value,
            chunk_count=chunk_count,
            page_count=page_count,
            error_code=None,
            processed_at=at,
            updated_at=at,
        )
        if document is None:
            raise RuntimeError(f"document {document_id} left processing while locked")
        return document


class SqlMaintenanceRepository:
    """Cross-organisation reads; only meaningful in system transactions."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def organization_of(self, document_id: UUID) -> UUID | None:
        return await self._session.scalar(
            select(DocumentRow.organization_id).where(DocumentRow.id == document_id)
        )

    async def reset_all_to_pending(self, at: datetime) -> list[UUID]:
        rows = await self._session.scalars(
            update(DocumentRow)
            .where(DocumentRow.status.in_([s.value for s in LIVE]))
            .values(
                status=DocumentStatus.PENDING.value,
                error_code=None,
                processing_started_at=None,
                heartbeat_at=None,
                attempts=0,
                updated_at=at,
            )
            .returning(DocumentRow.id)
        )
        return list(rows)

    async def storage_keys(
        self, document_ids: Sequence[UUID]
    ) -> dict[UUID, tuple[str, DocumentStatus]]:
        if not document_ids:
            return {}
        rows = await self._session.execute(
            select(DocumentRow.id, DocumentRow.storage_key, DocumentRow.status).where(
                DocumentRow.id.in_(document_ids)
            )
        )
        return {id_: (key, DocumentStatus(status)) for id_, key, status in rows}

    async def live_documents(
        self, created_before: datetime, after: UUID | None, limit: int
    ) -> list[tuple[UUID, UUID, str, DocumentStatus]]:
        query = select(
            DocumentRow.id, DocumentRow.organization_id, DocumentRow.storage_key, DocumentRow.status
        ).where(
            DocumentRow.status.in_([s.value for s in LIVE]),
            DocumentRow.created_at < created_before,
        )
        if after is not None:
            query = query.where(DocumentRow.id > after)
        rows = await self._session.execute(query.order_by(DocumentRow.id).limit(limit))
        return [(id_, org, key, DocumentStatus(status)) for id_, org, key, status in rows]

    async def stuck(
        self,
        processing_before: datetime,
        silent_before: datetime,
        pending_before: datetime,
        limit: int,
    ) -> list[Document]:
        # Claims made before migration 0006 have no heartbeat: their claim time stands in.
        last_sign_of_life = func.coalesce(
            DocumentRow.heartbeat_at, DocumentRow.processing_started_at
        )
        rows = await self._session.scalars(
            select(DocumentRow)
            .where(
                or_(
                    (DocumentRow.status == DocumentStatus.PROCESSING.value)
                    & (
                        (DocumentRow.processing_started_at < processing_before)
                        | (last_sign_of_life < silent_before)
                    ),
                    (DocumentRow.status == DocumentStatus.PENDING.value)
                    & (DocumentRow.updated_at < pending_before),
                )
            )
            .order_by(DocumentRow.updated_at)
            .limit(limit)
        )
        return [WatchedDocument.of(row) for row in rows]
