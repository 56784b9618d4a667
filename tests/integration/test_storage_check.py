"""`foundry storage-check` against a database and a storage directory of its own: files
nobody refers to are found (and removed only when old enough), documents whose file is
gone are reported, and the files of live documents are never touched."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import update

from domain.entities import Principal
from domain.ingestion.ports import BlobStore
from domain.services.storage_check import StorageCheck
from infrastructure.container import BackendUrls, Container
from infrastructure.database.models import DocumentRow
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings
from tests.conftest import worker_env
from tests.helpers import isolated_container
from tests.integration.test_worker_recovery import _editor, _incoming

HOURS_AGO = 3


@dataclass
class Setup:
    container: Container
    settings: Settings
    blobs: Path
    kept: Path  # a live document's file
    lost: uuid.UUID  # a live document whose file was removed behind our back
    orphans: list[Path]  # old files nobody refers to
    recent: Path  # a file nobody refers to yet, as during an upload
    unknown: Path  # not a blob key
    principal: Principal  # the editor who uploaded them
    kept_id: uuid.UUID


def _age(path: Path, hours: float) -> None:
    moment = (datetime.now(UTC) - timedelta(hours=hours)).timestamp()
    os.utime(path, (moment, moment))


@pytest.fixture
async def setup(
    settings: Settings,
    urls: BackendUrls,
    embedded_postgres: EmbeddedPostgres,
    tmp_path: Path,
) -> AsyncIterator[Setup]:
    container = await isolated_container(
        settings, urls, embedded_postgres, "storage", tmp_path / "state"
    )
    own = container.settings
    principal = await _editor(container)
    results = await container.services.documents.upload(
        principal,
        [_incoming(f"{n}.txt", f"{n} {uuid.uuid4()}".encode()) for n in ("kept", "lost", "gone")],
        ip=None,
    )
    kept, lost, gone = (result.document for result in results)
    assert kept is not None and lost is not None and gone is not None
    blobs = own.storage_dir / "blobs"
    (blobs / lost.storage_key).unlink()
    # Deleted in the database, but its file's removal failed (as after a crash).
    gone_file = blobs / gone.storage_key
    saved = gone_file.read_bytes()
    await container.services.documents.delete(principal, gone.id, None)
    gone_file.write_bytes(saved)
    org = blobs / str(principal.organization_id)
    never_committed = org / str(uuid.uuid4())  # stored, then the row's commit was lost
    never_committed.write_bytes(b"orphan")
    elsewhere = blobs / str(uuid.uuid4()) / str(kept.id)  # a live id under a wrong folder
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"copy")
    staging = own.storage_dir / "staging" / uuid.uuid4().hex  # an upload that crashed
    staging.write_bytes(b"partial")
    recent = org / str(uuid.uuid4())
    recent.write_bytes(b"in flight")
    unknown = blobs / "notes.txt"
    unknown.write_bytes(b"an operator's file")
    orphans = [gone_file, never_committed, elsewhere, staging]
    for path in [*orphans, blobs / kept.storage_key, unknown]:
        _age(path, HOURS_AGO)
    # Rows are judged by when they were made: these are older than the check.
    async with container.session_factory() as db:
        await db.execute(
            update(DocumentRow).values(created_at=datetime.now(UTC) - timedelta(hours=HOURS_AGO))
        )
        await db.commit()
    yield Setup(
        container,
        own,
        blobs,
        blobs / kept.storage_key,
        lost.id,
        orphans,
        recent,
        unknown,
        principal,
        kept.id,
    )
    await container.aclose()


def _check(setup: Setup) -> StorageCheck:
    container = setup.container
    return StorageCheck(container.uow_factory, container.blobs, container.clock)


async def test_a_check_reports_and_changes_nothing(setup: Setup) -> None:
    report = await _check(setup).run(timedelta(hours=1), remove=False)
    assert report.files == 7
    found = {orphan.key for orphan in report.orphans}
    assert found == {
        str(path.relative_to(setup.blobs)) if path.parent.parent == setup.blobs else path.name
        for path in setup.orphans
    }
    assert [orphan.staging for orphan in report.orphans].count(True) == 1
    assert report.recent == 1
    assert [missing.document_id for missing in report.missing] == [setup.lost]
    assert [unknown.key for unknown in report.unknown] == ["notes.txt"]
    assert report.removed == 0 and not report.clean
    assert all(path.exists() for path in [*setup.orphans, setup.recent, setup.kept, setup.unknown])


async def test_remove_deletes_only_old_orphans(setup: Setup) -> None:
    report = await _check(setup).run(timedelta(hours=1), remove=True)
    assert report.removed == len(setup.orphans) == 4
    assert not any(path.exists() for path in setup.orphans)
    assert setup.recent.exists() and setup.kept.exists() and setup.unknown.exists()
    # A longer grace period spares files of that age.
    setup.unknown.unlink()
    again = await _check(setup).run(timedelta(hours=HOURS_AGO + 1), remove=True)
    assert again.orphans == [] and again.recent == 1
    assert [missing.document_id for missing in again.missing] == [setup.lost]


class DeletedWhileLookedFor:
    """The blob store, except that looking for ``key`` first deletes its document (as a
    user's deleteDocument landing between the check's read of the rows and its look at
    the files)."""

    def __init__(self, setup: Setup, key: str, loop: asyncio.AbstractEventLoop) -> None:
        self._setup = setup
        self._key = key
        self._loop = loop
        self.deleted = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._setup.container.blobs, name)

    def exists(self, key: str) -> bool:  # called on a worker thread
        if key == self._key and not self.deleted:
            documents = self._setup.container.services.documents
            delete = documents.delete(self._setup.principal, self._setup.kept_id, None)
            asyncio.run_coroutine_threadsafe(delete, self._loop).result(timeout=30)
            self.deleted = True
        return self._setup.container.blobs.exists(key)


async def test_a_document_deleted_during_the_check_is_not_reported_missing(
    setup: Setup,
) -> None:
    key = str(setup.kept.relative_to(setup.blobs))
    blobs = DeletedWhileLookedFor(setup, key, asyncio.get_running_loop())
    container = setup.container
    check = StorageCheck(container.uow_factory, cast(BlobStore, blobs), container.clock)
    report = await check.run(timedelta(hours=1), remove=False)
    assert blobs.deleted and not setup.kept.exists()
    assert [missing.document_id for missing in report.missing] == [setup.lost]


async def test_the_command_prints_the_report_and_says_by_its_exit_code(setup: Setup) -> None:
    env = worker_env(setup.settings)
    command = [sys.executable, "-m", "infrastructure.cli", "storage-check"]
    checked = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 1, checked.stderr
    assert "Orphaned files older than 60 min: 4 (to remove with --remove)" in checked.stdout
    assert f"document {setup.lost}" in checked.stdout
    assert all(path.exists() for path in setup.orphans)

    removed = await asyncio.to_thread(
        subprocess.run, [*command, "--remove"], env=env, capture_output=True, text=True, timeout=120
    )
    assert "Orphaned files older than 60 min: 4 (removed)" in removed.stdout
    assert not any(path.exists() for path in setup.orphans)
    assert removed.returncode == 1  # the missing file is still there to act on
    refused = await asyncio.to_thread(
        subprocess.run, [*command, "--grace-minutes", "0"], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "--grace-minutes" in refused.stderr
