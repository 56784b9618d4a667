"""Storing a blob: the whole file under its key, private, in a private folder of its
organisation, and nothing left in staging (the commit syncs the file and its folder to
the disk before the database row that names it commits)."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from pathlib import Path

from domain.ingestion.ports import IncomingFile
from infrastructure.storage.local_blobs import READ_SIZE, LocalBlobStore


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
