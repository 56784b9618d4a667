"""FOUNDRY_ORG_STORAGE_MAX_BYTES / FOUNDRY_ORG_DOCUMENTS_MAX: a file past an organisation's
quota gets QUOTA_EXCEEDED, the others of its request are stored, deleted documents free
their share, and uploads racing for the last bytes cannot both get them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest

from domain.entities import Principal, Role
from domain.errors import QuotaExceeded
from domain.ingestion.ports import IncomingFile, StagedBlob, StorageUsage
from domain.services.documents import DocumentService, UploadLimits, readable_size
from infrastructure.clock import SystemClock
from infrastructure.container import BackendUrls, Container
from infrastructure.settings import Settings
from infrastructure.storage.local_blobs import LocalBlobStore
from tests.conftest import ServerThread
from tests.helpers import (
    JSON,
    GraphQLClient,
    Silent,
    new_admin,
    upload_outcomes,
)

MAX_BYTES = 1_000
MAX_DOCUMENTS = 3
DELETE = "mutation($id: ID!) { deleteDocument(id: $id) }"


@pytest.fixture(scope="module")
def quota_server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    limits = {"org_storage_max_bytes": MAX_BYTES, "org_documents_max": MAX_DOCUMENTS}
    server = ServerThread(settings.model_copy(update=limits), urls)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def quota_api(quota_server: ServerThread) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=quota_server.base_url, timeout=30) as http:
        yield GraphQLClient(http)


def _text(size: int) -> bytes:
    """``size`` bytes of plain text, different from every other call's."""
    head = f"Harbour notes {uuid.uuid4()}. ".encode()
    assert size >= len(head)
    return head + b"a" * (size - len(head))


def _file(name: str, size: int) -> tuple[str, bytes, str]:
    return (name, _text(size), "text/plain")


def _code(outcome: JSON) -> str | None:
    error = cast(JSON | None, outcome["error"])
    return cast(str, error["code"]) if error else None


def _id(outcome: JSON) -> str:
    return cast(str, cast(JSON, outcome["document"])["id"])


async def _usage(container: Container, organization_id: str) -> StorageUsage:
    principal = Principal(uuid.uuid4(), uuid.UUID(organization_id), Role.VIEWER, uuid.uuid4())
    async with container.uow_factory.tenant(principal) as uow:
        return await uow.documents.live_usage()


def test_quotas_are_off_unless_set() -> None:
    defaults = Settings(_env_file=None)
    assert (defaults.org_storage_max_bytes, defaults.org_documents_max) == (0, 0)
    assert not UploadLimits().has_quota
    with pytest.raises(ValueError, match="org_storage_max_bytes"):
        Settings(_env_file=None, org_storage_max_bytes=-1)


def test_sizes_read_as_people_write_them() -> None:
    assert readable_size(1_000) == "1000 bytes"
    assert readable_size(1_536) == "1.5 KiB"
    assert readable_size(50 * 1024 * 1024) == "50.0 MiB"
    assert readable_size(3 * 1024**4) == "3072.0 GiB"


async def test_a_file_past_the_storage_quota_is_refused_alone_and_deletes_free_room(
    quota_api: GraphQLClient, container: Container
) -> None:
    account = await quota_api.sign_up()
    token = account.access_token
    outcomes = await upload_outcomes(
        quota_api.http,
        token,
        [_file("a.txt", 700), _file("b.txt", 400), _file("c.txt", 200)],
    )
    assert [_code(o) for o in outcomes] == [None, "QUOTA_EXCEEDED", None]
    refused = cast(JSON, outcomes[1]["error"])
    assert outcomes[1]["document"] is None
    assert "storage limit of 1000 bytes" in str(refused["message"]), refused
    assert "700 bytes is in use" in str(refused["message"]), refused
    assert await _usage(container, account.organization_id) == StorageUsage(2, 900)

    # A deleted document's bytes are free again; filling the quota exactly is allowed.
    await quota_api.data(DELETE, {"id": _id(outcomes[0])}, token)
    assert await _usage(container, account.organization_id) == StorageUsage(1, 200)
    refill = await upload_outcomes(
        quota_api.http, token, [_file("b.txt", 400), _file("d.txt", 400)]
    )
    assert [_code(o) for o in refill] == [None, None]
    assert await _usage(container, account.organization_id) == StorageUsage(3, MAX_BYTES)


async def test_a_file_past_the_document_quota_is_refused_until_one_is_deleted(
    quota_api: GraphQLClient, container: Container
) -> None:
    account = await quota_api.sign_up()
    token = account.access_token
    outcomes = await upload_outcomes(
        quota_api.http, token, [_file(f"{n}.txt", 100) for n in range(MAX_DOCUMENTS + 1)]
    )
    assert [_code(o) for o in outcomes] == [None] * MAX_DOCUMENTS + ["QUOTA_EXCEEDED"]
    assert f"already has {MAX_DOCUMENTS} documents" in str(
        cast(JSON, outcomes[-1]["error"])["message"]
    )
    await quota_api.data(DELETE, {"id": _id(outcomes[0])}, token)
    [again] = await upload_outcomes(quota_api.http, token, [_file("again.txt", 100)])
    assert _code(again) is None
    assert await _usage(container, account.organization_id) == StorageUsage(MAX_DOCUMENTS, 300)


async def test_concurrent_requests_for_the_last_bytes_store_one_file(
    quota_api: GraphQLClient, container: Container
) -> None:
    account = await quota_api.sign_up()
    token = account.access_token
    rounds = [
        upload_outcomes(quota_api.http, token, [_file(f"race-{n}.txt", 600)]) for n in range(2)
    ]
    results = await asyncio.gather(*rounds)
    assert sorted(_code(outcome) or "stored" for [outcome] in results) == [
        "QUOTA_EXCEEDED",
        "stored",
    ]
    assert await _usage(container, account.organization_id) == StorageUsage(1, 600)


# The race made certain: the first upload holds its transaction open (quota checked,
# row inserted, not committed) while the second checks the quota.


class _SlowFirstCommit(LocalBlobStore):
    """Its first commit (made inside the upload's transaction, after the row is inserted)
    says it started, then takes a second."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.first_started = asyncio.Event()

    async def commit(self, staged: StagedBlob, key: str) -> None:
        if not self.first_started.is_set():
            self.first_started.set()
            await asyncio.sleep(1.0)
        await super().commit(staged, key)


def _incoming(size: int) -> IncomingFile:
    data = _text(size)
    offset = 0

    async def read(count: int) -> bytes:
        nonlocal offset
        chunk = data[offset : offset + count]
        offset += len(chunk)
        return chunk

    return IncomingFile(filename="tides.txt", content_type="text/plain", read=read)


async def test_an_upload_waits_for_one_in_flight_and_sees_its_bytes(
    container: Container, tmp_path: Path
) -> None:
    principal = await new_admin(container, "quota")
    blobs = _SlowFirstCommit(tmp_path)
    quiet = Silent()
    service = DocumentService(
        uow_factory=container.uow_factory,
        blobs=blobs,
        queue=quiet,
        events=quiet,
        clock=SystemClock(),
        limits=UploadLimits(max_file_bytes=10_000, max_files=1, max_organization_bytes=MAX_BYTES),
    )
    first = asyncio.create_task(service.upload(principal, [_incoming(600)], None))
    await asyncio.wait_for(blobs.first_started.wait(), timeout=30)
    [second] = await service.upload(principal, [_incoming(600)], None)
    [won] = await first
    assert won.document is not None and won.error is None
    assert isinstance(second.error, QuotaExceeded), second
    assert await _usage(container, str(principal.organization_id)) == StorageUsage(1, 600)
