"""Reconcile stored files with the documents table (`foundry storage-check`).

Uploads store the file before committing its row and remove it again if the commit
fails; deletes remove the file after committing. A crash in between, or a failed
removal, leaves a file nobody refers to, and a lost disk leaves rows without files.
This finds both:

- **orphans**: blobs of no document or of a deleted one, and staging files left by an
  upload that never finished; removed on request, but only once older than a grace
  period, so an upload in flight (file stored, row not yet committed) is never touched;
- **missing**: documents (not deleted) whose file is gone: reported, never changed
  (their chunks still answer; reprocessing them would fail);
- **unknown**: files whose names are not blob keys: reported, never removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from domain.entities import DocumentStatus
from domain.ingestion.ports import BlobStore, StoredFile
from domain.ingestion.storage_keys import parse_storage_key
from domain.ports import Clock, UnitOfWorkFactory

log = logging.getLogger("foundry.storage")

BATCH = 1_000


@dataclass(frozen=True, slots=True)
class MissingFile:
    document_id: UUID
    organization_id: UUID
    status: DocumentStatus
    storage_key: str


@dataclass
class StorageReport:
    files: int = 0
    orphans: list[StoredFile] = field(default_factory=list)  # old enough to remove
    recent: int = 0  # orphans younger than the grace period: perhaps an upload in flight
    removed: int = 0
    missing: list[MissingFile] = field(default_factory=list)
    unknown: list[StoredFile] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Nothing left to act on (recent files are judged on a later run)."""
        return len(self.orphans) == self.removed and not self.missing and not self.unknown


class StorageCheck:
    def __init__(self, uow_factory: UnitOfWorkFactory, blobs: BlobStore, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._blobs = blobs
        self._clock = clock

    async def run(self, grace: timedelta, *, remove: bool) -> StorageReport:
        started = self._clock.now()
        report = StorageReport()
        batches = self._blobs.scan(BATCH)
        while (batch := await asyncio.to_thread(_next_batch, batches)) is not None:
            report.files += len(batch)
            await self._judge(batch, started - grace, report)
        if remove:
            for orphan in report.orphans:
                await self._blobs.remove(orphan)
                report.removed += 1
                log.info("storage.orphan_removed key=%s staging=%s", orphan.key, orphan.staging)
        # Rows made after the scan began may have files it did not list: not checked.
        await self._find_missing(started, report)
        return report

    async def _judge(
        self, batch: list[StoredFile], old_before: datetime, report: StorageReport
    ) -> None:
        named: list[tuple[UUID, StoredFile]] = []  # one document id can name several files
        for stored in batch:
            parsed = None if stored.staging else parse_storage_key(stored.key)
            if stored.staging:
                _orphan(stored, old_before, report)
            elif parsed is None:
                report.unknown.append(stored)
            else:
                named.append((parsed[1], stored))
        async with self._uow_factory.system() as uow:
            rows = await uow.maintenance.storage_keys(list({id_ for id_, _ in named}))
        for document_id, stored in named:
            row = rows.get(document_id)
            # The row's own key must name this file: a copy under another
            # organisation's folder is nobody's.
            if row is None or row[1] is DocumentStatus.DELETED or row[0] != stored.key:
                _orphan(stored, old_before, report)

    async def _find_missing(self, started: datetime, report: StorageReport) -> None:
        after: UUID | None = None
        while True:
            async with self._uow_factory.system() as uow:
                page = await uow.maintenance.live_documents(started, after, BATCH)
            if not page:
                return
            present = await asyncio.to_thread(self._present, [key for _, _, key, _ in page])
            absent = [
                MissingFile(document_id, organization, status, key)
                for (document_id, organization, key, status), found in zip(
                    page, present, strict=True
                )
                if not found
            ]
            report.missing.extend(await self._still_live(absent))
            after = page[-1][0]

    async def _still_live(self, absent: list[MissingFile]) -> list[MissingFile]:
        """Those of ``absent`` whose row is still live with the same key, read again after
        their files were looked for: a document deleted meanwhile (its row commits
        DELETED before its file is removed) lost its file on purpose."""
        if not absent:
            return []
        async with self._uow_factory.system() as uow:
            rows = await uow.maintenance.storage_keys([entry.document_id for entry in absent])
        return [
            entry
            for entry in absent
            if (row := rows.get(entry.document_id)) is not None
            and row[1] is not DocumentStatus.DELETED
            and row[0] == entry.storage_key
        ]

    def _present(self, keys: list[str]) -> list[bool]:
        return [self._exists(key) for key in keys]

    def _exists(self, key: str) -> bool:
        try:
            return self._blobs.exists(key)
        except ValueError:  # a row whose key is not a valid blob key has no file
            return False


def _orphan(stored: StoredFile, old_before: datetime, report: StorageReport) -> None:
    if stored.modified_at < old_before:
        report.orphans.append(stored)
    else:
        report.recent += 1


def _next_batch(batches: Iterator[list[StoredFile]]) -> list[StoredFile] | None:
    return next(batches, None)
