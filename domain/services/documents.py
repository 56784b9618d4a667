"""Uploads and the document lifecycle as users see it (list, get, delete, reprocess)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from uuid import UUID, uuid4

from domain.entities import (
    AuditEntry,
    Document,
    DocumentEvent,
    DocumentPage,
    DocumentStatus,
    Principal,
    Role,
)
from domain.errors import (
    DomainError,
    DuplicateDocument,
    EmptyDocument,
    NotFound,
    QuotaExceeded,
    StorageUnavailable,
    StoredFileMissing,
    TooManyFiles,
    ValidationFailed,
)
from domain.ingestion.filetypes import SNIFF_BYTES, detect_kind, safe_filename
from domain.ingestion.ports import BlobStore, EventBus, IncomingFile, JobQueue
from domain.ingestion.storage_keys import storage_key
from domain.ports import Clock, UnitOfWork, UnitOfWorkFactory
from domain.services.cursors import decode_cursor
from domain.services.roles import confirm_role, require_role

MAX_PAGE_SIZE = 100
MAX_FILENAME_FILTER = 255

log = logging.getLogger("foundry.documents")


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_file_bytes: int = 50 * 1024 * 1024
    max_files: int = 20
    # Quotas of one organisation's live (not deleted) documents; 0: none.
    max_organization_bytes: int = 0
    max_organization_documents: int = 0

    @property
    def has_quota(self) -> bool:
        return self.max_organization_bytes > 0 or self.max_organization_documents > 0


@dataclass(frozen=True, slots=True)
class UploadResult:
    filename: str
    document: Document | None = None
    error: DomainError | None = None


def document_audit(
    action: str, principal: Principal, document: Document, ip: str | None
) -> AuditEntry:
    details = {"filename": document.filename, "sha256": document.sha256}
    if principal.api_key_id is not None:
        details["api_key_id"] = str(principal.api_key_id)
    return AuditEntry(
        action,
        principal.organization_id,
        principal.actor_user_id,
        target=f"document:{document.id}",
        ip=ip,
        details=details,
    )


def readable_size(size: int) -> str:
    """Bytes as people read them: ``900 bytes``, ``1.5 KiB``, ``50.0 MiB``, ``2.0 GiB``."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def filename_filter(raw: str | None) -> str | None:
    """The text listed filenames must contain: None (no filter) when blank, trimmed,
    at most 255 characters (the longest filename) else ValidationFailed."""
    if raw is None:
        return None
    trimmed = raw.strip()
    if len(trimmed) > MAX_FILENAME_FILTER:
        raise ValidationFailed(
            f"filename can have at most {MAX_FILENAME_FILTER} characters.", field="filename"
        )
    return trimmed or None


class DocumentService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        blobs: BlobStore,
        queue: JobQueue,
        events: EventBus,
        clock: Clock,
        limits: UploadLimits,
    ) -> None:
        self._uow_factory = uow_factory
        self._blobs = blobs
        self._queue = queue
        self._events = events
        self._clock = clock
        self._limits = limits

    def check_batch(self, count: int) -> None:
        """Refuse an upload of ``count`` files that :meth:`upload` would refuse anyway:
        none, or more than the limit. For callers that charge a budget per file first."""
        if count == 0:
            raise ValidationFailed("Send at least one file.", field="files")
        if count > self._limits.max_files:
            limit = self._limits.max_files
            raise TooManyFiles(f"Send at most {limit} files per request.", maxFiles=limit)

    async def upload(
        self, principal: Principal, files: list[IncomingFile], ip: str | None
    ) -> list[UploadResult]:
        """One result per file; a bad file never sinks the good ones."""
        require_role(principal, Role.EDITOR)
        self.check_batch(len(files))
        if principal.api_key_id is None:  # a key's role is current (confirm_role)
            async with self._uow_factory.tenant(principal) as uow:
                await confirm_role(uow, principal, Role.EDITOR)
        results: list[UploadResult] = []
        for incoming in files:
            filename = safe_filename(incoming.filename)
            try:
                document = await self._upload_one(principal, incoming, filename, ip)
                results.append(UploadResult(filename=filename, document=document))
            except DomainError as error:
                results.append(UploadResult(filename=filename, error=error))
            except OSError:
                # The disk (full, unwritable): this file is not stored, and the files
                # already stored keep their results instead of vanishing in an error.
                log.exception("upload.storage_failed filename=%s", filename)
                results.append(UploadResult(filename=filename, error=StorageUnavailable()))
        return results

    async def _upload_one(
        self, principal: Principal, incoming: IncomingFile, filename: str, ip: str | None
    ) -> Document:
        staged = await self._blobs.stage(incoming, self._limits.max_file_bytes)
        try:
            if staged.size == 0:
                raise EmptyDocument("The file is empty.")
            kind = detect_kind(filename, incoming.content_type, staged.head[:SNIFF_BYTES])
            now = self._clock.now()
            document_id = uuid4()
            document = Document(
                id=document_id,
                organization_id=principal.organization_id,
                uploaded_by=principal.actor_user_id,
                filename=filename,
                mime_type=kind.mime_type,
                size_bytes=staged.size,
                sha256=staged.sha256,
                storage_key=storage_key(principal.organization_id, document_id),
                status=DocumentStatus.PENDING,
                error_code=None,
                page_count=None,
                chunk_count=0,
                attempts=0,
                created_at=now,
                updated_at=now,
                processed_at=None,
            )
            uow = self._uow_factory.tenant(principal)
            stored = False
            try:
                async with uow:
                    await self._refuse_duplicate(uow, staged.sha256)
                    await self._refuse_over_quota(uow, staged.size)
                    try:
                        await uow.documents.add(document)
                    except DuplicateDocument:
                        # Lost a race with an identical upload: name the winner.
                        await self._refuse_duplicate(uow, staged.sha256)
                        raise
                    await uow.audit.record(
                        document_audit("document.uploaded", principal, document, ip), now
                    )
                    # PENDING reaches listeners before a worker can report PROCESSING.
                    uow.on_commit(lambda: self._events.publish(DocumentEvent(document, 0.0)))
                    uow.on_commit(
                        lambda: self._queue.enqueue_ingest(document.id, document.organization_id)
                    )
                    await self._blobs.commit(staged, document.storage_key)
                    stored = True
                    await uow.commit()
            except BaseException as failure:
                if stored and not uow.committed:
                    await self._forget_blob(principal, document, failure)
                raise
            return document
        finally:
            await self._blobs.discard(staged)

    async def _forget_blob(
        self, principal: Principal, document: Document, failure: BaseException
    ) -> None:
        """Delete the blob of a row whose commit failed, once it is sure there is no row.

        A commit that raised may have committed all the same: the connection dropped
        after the server committed, before its reply arrived. Deleting the blob of such
        a row would leave a PENDING document whose file is missing, and every upload of
        the same file a duplicate of it. So a fresh transaction looks for the row first;
        when that cannot be told (the check fails too, or the upload was cancelled), the
        blob stays: an orphan is harmless, and `foundry storage-check` removes it.
        """
        if not isinstance(failure, Exception):  # cancelled: no waiting for the database now
            return
        try:
            async with self._uow_factory.tenant(principal) as check:
                row = await check.documents.get(document.id)
        except Exception:
            log.warning("upload.commit_unknown_blob_kept key=%s", document.storage_key)
            return
        if row is None:  # nothing half-written: no row, so no blob either
            await self._blobs.delete(document.storage_key)
        else:
            log.warning("upload.committed_despite_error document_id=%s", document.id)

    async def _refuse_over_quota(self, uow: UnitOfWork, size: int) -> None:
        """QuotaExceeded when a file of ``size`` bytes would take the organisation past a
        quota. The usage is read under the organisation's upload lock, held until this
        transaction (which adds the document) ends: two uploads racing for the last bytes
        take turns, and the second sees the first's document."""
        limits = self._limits
        if not limits.has_quota:
            return
        usage = await uow.documents.live_usage(lock=True)
        most = limits.max_organization_documents
        if most and usage.documents >= most:
            raise QuotaExceeded(
                f"Your organisation already has {usage.documents} documents, the most it "
                "may have. Delete documents it no longer needs, or ask whoever runs this "
                "server to raise the limit.",
                maxDocuments=most,
            )
        limit = limits.max_organization_bytes
        if limit and usage.bytes + size > limit:
            raise QuotaExceeded(
                f"This file ({readable_size(size)}) does not fit in your organisation's "
                f"storage limit of {readable_size(limit)}, of which "
                f"{readable_size(usage.bytes)} is in use. Delete documents it no longer "
                "needs, or ask whoever runs this server to raise the limit.",
                limitBytes=limit,
                usedBytes=usage.bytes,
            )

    async def _refuse_duplicate(self, uow: UnitOfWork, sha256: str) -> None:
        existing = await uow.documents.find_live_by_sha256(sha256)
        if existing is not None:
            raise DuplicateDocument(
                f"This file was already uploaded as '{existing.filename}' "
                f"(document {existing.id}).",
                documentId=str(existing.id),
            )

    async def get_many(self, principal: Principal, document_ids: Sequence[UUID]) -> list[Document]:
        """Documents by id, deleted ones included (chat history still cites them)."""
        async with self._uow_factory.tenant(principal) as uow:
            return await uow.documents.get_many(document_ids)

    async def list(
        self,
        principal: Principal,
        first: int,
        after: str | None,
        status: DocumentStatus | None,
        filename: str | None = None,
    ) -> DocumentPage:
        """A page of the organisation's live documents, newest first, of one ``status``
        and with ``filename`` in their name (ignoring case) when given. A cursor is a
        position in that order, so one made under another filter still works."""
        if not 0 <= first <= MAX_PAGE_SIZE:
            raise ValidationFailed(f"first must be between 0 and {MAX_PAGE_SIZE}.", field="first")
        name_contains = filename_filter(filename)
        cursor = decode_cursor(after) if after else None
        async with self._uow_factory.tenant(principal) as uow:
            return await uow.documents.list(first, cursor, status, name_contains)

    async def get(self, principal: Principal, document_id: UUID) -> Document | None:
        async with self._uow_factory.tenant(principal) as uow:
            document = await uow.documents.get(document_id)
        if document is None or document.status is DocumentStatus.DELETED:
            return None
        return document

    async def delete(self, principal: Principal, document_id: UUID, ip: str | None) -> bool:
        """Remove the document's chunks, vectors and blob; the row stays as 'deleted'."""
        require_role(principal, Role.EDITOR)
        now = self._clock.now()
        async with self._uow_factory.tenant(principal) as uow:
            await confirm_role(uow, principal, Role.EDITOR)
            document = await uow.documents.mark_deleted(document_id, now)
            if document is None:
                raise NotFound("No such document.")
            await uow.chunks.delete_for_document(document_id)
            await uow.audit.record(document_audit("document.deleted", principal, document, ip), now)
            uow.on_commit(lambda: self._blobs.delete(document.storage_key))
            uow.on_commit(lambda: self._events.publish(DocumentEvent(document, None)))
            await uow.commit()
        return True

    def watch(self, principal: Principal) -> AsyncIterator[DocumentEvent]:
        """Live events of the principal's organisation's documents."""
        return self._events.subscribe(principal.organization_id)

    async def reprocess(self, principal: Principal, document_id: UUID, ip: str | None) -> Document:
        """Back to pending (out of search until it is READY again) and queued, with a fresh
        count of attempts. StoredFileMissing, changing nothing, when its stored file is
        gone: the run could only fail, and a failed run deletes the chunks that answer."""
        require_role(principal, Role.EDITOR)
        now = self._clock.now()
        async with self._uow_factory.tenant(principal) as uow:
            await confirm_role(uow, principal, Role.EDITOR)
            document = await uow.documents.reset_to_pending(document_id, now, fresh=True)
            if document is None:
                raise NotFound("No such document.")
            # Looked for under the row's lock, which the reset holds (a delete waits), and
            # before anything else is recorded: refusing rolls the reset back.
            if not await asyncio.to_thread(self._blobs.exists, document.storage_key):
                log.warning("reprocess.stored_file_missing document_id=%s", document_id)
                raise StoredFileMissing()
            await uow.audit.record(
                document_audit("document.reprocessed", principal, document, ip), now
            )
            uow.on_commit(lambda: self._events.publish(DocumentEvent(document, 0.0)))
            uow.on_commit(lambda: self._queue.enqueue_ingest(document.id, document.organization_id))
            await uow.commit()
        return document
