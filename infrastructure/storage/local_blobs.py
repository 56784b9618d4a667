"""Blobs on the local filesystem under the state directory: 0700 folders, 0600 files,
named by organisation and document ids, never by anything a user typed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from domain.errors import FileTooLarge
from domain.ingestion.ports import IncomingFile, StagedBlob, StoredFile

READ_SIZE = 256 * 1024
HEAD_BYTES = 4_096
_KEY = re.compile(r"^[0-9a-f-]{36}/[0-9a-f-]{36}$")
_TOKEN = re.compile(r"^[0-9a-f]{32}$")


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self._blobs = root / "blobs"
        self._staging = root / "staging"
        for directory in (root, self._blobs, self._staging):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700)

    async def stage(self, source: IncomingFile, max_bytes: int) -> StagedBlob:
        token = uuid.uuid4().hex
        path = self._staging / token
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        digest = hashlib.sha256()
        head = b""
        size = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := await source.read(READ_SIZE):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FileTooLarge(f"Files can be at most {max_bytes} bytes.")
                    if len(head) < HEAD_BYTES:
                        head += chunk[: HEAD_BYTES - len(head)]
                    digest.update(chunk)
                    await asyncio.to_thread(handle.write, chunk)
                # Its bytes on the disk now, before any transaction: the commit, which
                # runs inside the upload's (under the organisation's quota lock, when a
                # quota is set), then only renames and syncs folders.
                await asyncio.to_thread(handle.flush)
                await asyncio.to_thread(os.fsync, handle.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedBlob(token=token, size=size, sha256=digest.hexdigest(), head=head)

    async def commit(self, staged: StagedBlob, key: str) -> None:
        """Durable before it returns: the database row that names the blob commits next,
        and a crash must not leave that row pointing at an empty or missing file. (The
        staged bytes were synced by :meth:`stage`; this syncs the new name.) All or
        nothing: when it raises, no blob is left under ``key``."""
        await asyncio.to_thread(self._commit, self._staging / staged.token, self._path(key))

    def _commit(self, source: Path, target: Path) -> None:
        created = not target.parent.exists()
        target.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(source, target)  # its bytes were synced when staged
        try:
            _fsync(target.parent)  # the new name
            if created:
                _fsync(self._blobs)  # the organisation's new folder
        except BaseException:
            # The folder could not be synced (EIO, ENOSPC): the upload fails and no row
            # will name this file, so it goes now rather than stay an orphan. (The key
            # names a new document: nothing else was ever stored under it.)
            with contextlib.suppress(OSError):
                target.unlink(missing_ok=True)
            raise

    async def discard(self, staged: StagedBlob) -> None:
        (self._staging / staged.token).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path:
        return self._path(key)

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def scan(self, batch_size: int) -> Iterator[list[StoredFile]]:
        batch: list[StoredFile] = []
        for found in self._walk():
            batch.append(found)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def exists(self, key: str) -> bool:
        # Anything but a folder under the key is the stored file (for the parser to judge).
        path = self._path(key)
        return path.exists() and not path.is_dir()

    async def remove(self, stored: StoredFile) -> None:
        if stored.staging:
            if not _TOKEN.match(stored.key):
                raise ValueError(f"invalid staging token {stored.key!r}")
            (self._staging / stored.key).unlink(missing_ok=True)
        else:
            await self.delete(stored.key)

    def _walk(self) -> Iterator[StoredFile]:
        """Blob keys are ``organisation/document``; anything else is reported as found
        (a key that is not a valid blob key), never guessed at."""
        with os.scandir(self._blobs) as folders:
            for folder in folders:
                if not folder.is_dir(follow_symlinks=False):
                    yield _stored(folder, folder.name, staging=False)
                    continue
                with os.scandir(folder.path) as files:
                    for entry in files:
                        yield _stored(entry, f"{folder.name}/{entry.name}", staging=False)
        with os.scandir(self._staging) as staged:
            for entry in staged:
                yield _stored(entry, entry.name, staging=True)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"invalid blob key {key!r}")
        return self._blobs / key


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk (a folder opens read-only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stored(entry: os.DirEntry[str], key: str, *, staging: bool) -> StoredFile:
    stat = entry.stat(follow_symlinks=False)
    return StoredFile(
        key=key,
        modified_at=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
        size=stat.st_size,
        staging=staging,
    )
