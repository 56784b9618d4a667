"""Storing a blob: the whole file under its key, private, in a private folder of its
organisation, and nothing left in staging (staging syncs the file and the commit its folder to
the disk before the database row that names it commits); a commit that cannot sync its
folder leaves no blob; and when the row's commit fails, the blob goes only once it is
sure the row did not commit after all."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import uuid
from pathlib import Path

import pytest

from domain.entities import Document, Principal
from domain.errors import ServiceUnavailable
from domain.ingestion.ports import IncomingFile
from domain.services.documents import DocumentService, UploadLimits, UploadResult
from infrastructure.clock import SystemClock
from infrastructure.container import Container
from infrastructure.database.uow import SqlUnitOfWork, SqlUnitOfWorkFactory, UnitOfWorkOptions
from infrastructure.storage import local_blobs
from infrastructure.storage.local_blobs import READ_SIZE, LocalBlobStore
from tests.helpers import Silent, new_admin


def _incoming(data: bytes) -> IncomingFile:
    view = memoryview(data)
    offset = 0

    async def read(size: int) -> bytes:
        nonlocal offset
        chunk = bytes(view[offset : offset + size])
        offset += len(chunk)
        return chunk

    return IncomingFile(filename="tides.txt", content_type="text/plain", read=read)


async def test_a_committed_blob_is_complete_private_and_leaves_no_staging_file(
    tmp_path: Path,
) -> None:
    blobs = LocalBlobStore(tmp_path)
    data = os.urandom(3 * READ_SIZE + 17)  # several reads, the last one short
    organization_id, document_id = uuid.uuid4(), uuid.uuid4()
    key = f"{organization_id}/{document_id}"
    staged = await blobs.stage(_incoming(data), max_bytes=len(data))
    assert staged.sha256 == hashlib.sha256(data).hexdigest()
    await blobs.commit(staged, key)
    await blobs.discard(staged)  # what the upload does after the commit: nothing left

    stored = blobs.local_path(key)
    assert stored.read_bytes() == data
    assert blobs.exists(key)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert list((tmp_path / "staging").iterdir()) == []
    # A second document of the organisation goes into the folder made for the first.
    other = f"{organization_id}/{uuid.uuid4()}"
    await blobs.commit(await blobs.stage(_incoming(b"second"), max_bytes=100), other)
    assert blobs.local_path(other).read_bytes() == b"second"
    assert sorted(p.name for p in stored.parent.iterdir()) == sorted(
        [str(document_id), other.split("/")[1]]
    )
    assert list((tmp_path / "staging").iterdir()) == []


@pytest.mark.parametrize("failing", ["its folder", "the organisation's new folder"])
async def test_an_upload_whose_folder_cannot_be_synced_leaves_neither_row_nor_blob(
    container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """The file is renamed into place before its folder is synced: when that sync fails
    (EIO, ENOSPC), the upload fails with a code and no row, and the commit takes the file
    back out, or it would stay on the disk with no row that names it."""
    blobs_folder = tmp_path / "blobs"
    real_fsync = local_blobs._fsync

    def failing_fsync(path: Path) -> None:
        if (path == blobs_folder) == (failing == "the organisation's new folder"):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(path)

    monkeypatch.setattr(local_blobs, "_fsync", failing_fsync)
    principal = await new_admin(container, "blob")
    recorded = Silent()
    service = DocumentService(
        uow_factory=container.uow_factory,
        blobs=LocalBlobStore(tmp_path),
        queue=recorded,
        events=recorded,
        clock=SystemClock(),
        limits=UploadLimits(max_file_bytes=1_000, max_files=1),
    )
    data = f"Tide tables for the harbour, {uuid.uuid4()}.".encode()
    [result] = await service.upload(principal, [_incoming(data)], None)
    assert isinstance(result.error, ServiceUnavailable)
    assert result.error.code == "SERVICE_UNAVAILABLE" and result.document is None
    async with container.uow_factory.tenant(principal) as uow:
        assert await uow.documents.find_live_by_sha256(hashlib.sha256(data).hexdigest()) is None
    assert _stored_blobs(tmp_path) == []
    assert list((tmp_path / "staging").iterdir()) == []


# When the upload's commit fails, its blob goes only once it is sure the row did not commit.


class _CommitFails(SqlUnitOfWorkFactory):
    """Tenant transactions whose commit loses the connection: after the server committed
    (``server_commits``: the reply was lost) or before the COMMIT reached it; with
    ``then_down``, no transaction can begin after that any more."""

    def __init__(self, container: Container, *, server_commits: bool, then_down: bool) -> None:
        options = UnitOfWorkOptions(app_role=container.settings.database_app_role)
        super().__init__(container.session_factory, options, container.readers)
        self.server_commits = server_commits
        self._then_down = then_down
        self.commit_attempted = False

    def tenant(self, principal: Principal) -> SqlUnitOfWork:
        if self.commit_attempted and self._then_down:
            raise ServiceUnavailable("The database is unavailable; try again shortly.")
        return _FailingCommit(self, principal)


class _FailingCommit(SqlUnitOfWork):
    def __init__(self, factory: _CommitFails, principal: Principal) -> None:
        super().__init__(
            factory._sessions, principal.organization_id, principal.user_id, factory._options
        )
        self._factory = factory

    async def commit(self) -> None:
        self._factory.commit_attempted = True
        if self._factory.server_commits:
            await self.session.commit()  # what the real commit does first
        raise ConnectionResetError("connection lost before the commit's reply")


async def _upload_with(
    container: Container, factory: _CommitFails, storage: Path
) -> tuple[UploadResult, Document | None, LocalBlobStore]:
    """Upload one file through ``factory``; the result, the row (if any) and the store."""
    principal = await new_admin(container, "blob")
    blobs = LocalBlobStore(storage)
    recorded = Silent()
    service = DocumentService(
        uow_factory=factory,
        blobs=blobs,
        queue=recorded,
        events=recorded,
        clock=SystemClock(),
        limits=UploadLimits(max_file_bytes=1_000, max_files=1),
    )
    data = f"Tide tables for the harbour, {uuid.uuid4()}.".encode()  # text, and unique
    [result] = await service.upload(principal, [_incoming(data)], None)
    async with container.uow_factory.tenant(principal) as uow:
        row = await uow.documents.find_live_by_sha256(hashlib.sha256(data).hexdigest())
    return result, row, blobs


def _stored_blobs(storage: Path) -> list[Path]:
    return [path for path in (storage / "blobs").rglob("*") if path.is_file()]


async def test_a_commit_whose_reply_was_lost_keeps_the_blob_of_the_committed_row(
    container: Container, tmp_path: Path
) -> None:
    factory = _CommitFails(container, server_commits=True, then_down=False)
    result, row, blobs = await _upload_with(container, factory, tmp_path)
    assert isinstance(result.error, ServiceUnavailable)
    assert row is not None  # committed after all: a worker will ingest it (watchdog)
    assert blobs.exists(row.storage_key)


async def test_a_commit_that_never_reached_the_server_leaves_no_blob(
    container: Container, tmp_path: Path
) -> None:
    factory = _CommitFails(container, server_commits=False, then_down=False)
    result, row, _ = await _upload_with(container, factory, tmp_path)
    assert isinstance(result.error, ServiceUnavailable)
    assert row is None
    assert _stored_blobs(tmp_path) == []


async def test_a_blob_whose_row_cannot_be_looked_for_is_kept(
    container: Container, tmp_path: Path
) -> None:
    """Not knowing, keep it: an orphan is harmless, and storage-check removes it."""
    factory = _CommitFails(container, server_commits=False, then_down=True)
    result, row, _ = await _upload_with(container, factory, tmp_path)
    assert isinstance(result.error, ServiceUnavailable)
    assert row is None
    assert len(_stored_blobs(tmp_path)) == 1


async def test_a_files_bytes_are_synced_when_staged_so_the_commit_only_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit runs inside the upload's transaction, under the organisation's quota
    lock when a quota is set: syncing a 50 MB file there would hold every other upload of
    the organisation. So the bytes are synced while staging, and the commit syncs only
    folders."""
    blobs = LocalBlobStore(tmp_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def recording(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("folder" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    staged = await blobs.stage(_incoming(os.urandom(READ_SIZE + 1)), max_bytes=READ_SIZE + 1)
    assert synced == ["file"]
    synced.clear()
    await blobs.commit(staged, f"{uuid.uuid4()}/{uuid.uuid4()}")
    assert synced and set(synced) == {"folder"}
