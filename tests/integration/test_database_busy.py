"""A statement the server gives up on (a statement timeout, a lock wait timeout, a
deadlock) is SERVICE_UNAVAILABLE, retryable, not an unexpected INTERNAL error: e.g.
deleteDocument while a worker holds the document's row FOR UPDATE for longer than the
statement timeout. The client's own cancellation stays a cancellation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
from sqlalchemy import text

from domain.entities import Document, DocumentStatus, Principal, Role
from domain.errors import ServiceUnavailable
from domain.services.accounts import RequestOrigin
from infrastructure.container import BackendUrls, Container
from infrastructure.database.driver import driver_connection
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings
from tests.helpers import PASSWORD, admin_dsn_for, isolated_container, unique_email
from tests.integration.test_document_repository import _document as stored_document

STATEMENT_TIMEOUT_MS = 200


async def _document(container: Container) -> tuple[Principal, Document]:
    session = await container.services.accounts.sign_up(
        unique_email(), PASSWORD, None, RequestOrigin()
    )
    principal = Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())
    document = replace(
        stored_document(principal, uuid.uuid4().hex * 2),
        filename="busy.txt",
        status=DocumentStatus.PROCESSING,
        attempts=1,
    )
    async with container.uow_factory.tenant(principal) as uow:
        await uow.documents.add(document)
        await uow.commit()
    return principal, document


def _url(container: Container) -> str:
    url = container.settings.database_url
    assert url is not None
    return url.get_secret_value()


async def _lock_row(database_url: str, document_id: uuid.UUID) -> asyncpg.Connection:
    """A connection holding the document's row FOR UPDATE (as the worker's store step)."""
    holder = await asyncpg.connect(admin_dsn_for(database_url))
    await holder.execute("BEGIN")
    await holder.execute("SELECT 1 FROM documents WHERE id = $1 FOR UPDATE", document_id)
    return holder


@pytest.fixture
async def short_timeouts(
    settings: Settings, urls: BackendUrls, embedded_postgres: EmbeddedPostgres
) -> AsyncIterator[Container]:
    container = await isolated_container(
        settings,
        urls,
        embedded_postgres,
        "foundry_busy",
        database_statement_timeout_ms=STATEMENT_TIMEOUT_MS,
    )
    yield container
    await container.aclose()


async def test_deleting_or_reprocessing_a_locked_document_past_the_timeout_is_unavailable(
    short_timeouts: Container,
) -> None:
    container = short_timeouts
    principal, document = await _document(container)
    documents = container.services.documents
    holder = await _lock_row(_url(container), document.id)
    try:
        with pytest.raises(ServiceUnavailable) as deleting:
            await documents.delete(principal, document.id, None)
        with pytest.raises(ServiceUnavailable):
            await documents.reprocess(principal, document.id, None)
    finally:
        await holder.close()
    cause = deleting.value.__cause__
    assert getattr(getattr(cause, "orig", None), "sqlstate", None) == "57014"
    # Nothing was lost meanwhile: once the lock is gone, the same request succeeds.
    assert await documents.delete(principal, document.id, None)


async def test_a_read_past_the_statement_timeout_is_unavailable(short_timeouts: Container) -> None:
    principal, _ = await _document(short_timeouts)
    with pytest.raises(ServiceUnavailable) as reading:
        async with short_timeouts.uow_factory.reader(principal) as reader:
            connection = await reader.connection()
            await connection.execute("SELECT pg_sleep(5)")
    assert isinstance(reading.value.__cause__, asyncpg.QueryCanceledError)


async def test_a_lock_wait_timeout_is_unavailable_through_the_session_and_the_driver(
    short_timeouts: Container,
) -> None:
    principal, document = await _document(short_timeouts)
    lock = text("SELECT 1 FROM documents WHERE id = :id FOR UPDATE")
    holder = await _lock_row(_url(short_timeouts), document.id)
    try:
        with pytest.raises(ServiceUnavailable) as through_session:
            async with short_timeouts.uow_factory.tenant(principal) as uow:
                await uow.session.execute(text("SET LOCAL lock_timeout = 50"))
                await uow.session.execute(lock, {"id": document.id})
        with pytest.raises(ServiceUnavailable) as through_driver:
            async with short_timeouts.uow_factory.tenant(principal) as uow:
                driver = await driver_connection(uow.session)
                await driver.execute("SET LOCAL lock_timeout = 50")
                await driver.execute(
                    "SELECT 1 FROM documents WHERE id = $1 FOR UPDATE", document.id
                )
    finally:
        await holder.close()
    assert getattr(getattr(through_session.value.__cause__, "orig", None), "sqlstate", None) == (
        "55P03"
    )
    assert isinstance(through_driver.value.__cause__, asyncpg.LockNotAvailableError)


async def test_cancelling_a_request_that_waits_for_a_lock_stays_a_cancellation(
    container: Container, urls: BackendUrls
) -> None:
    """The driver cancels the server's statement too (57014 on the server's side); the
    caller must see its own CancelledError, not SERVICE_UNAVAILABLE."""
    principal, document = await _document(container)
    holder = await _lock_row(urls.database_url, document.id)
    try:
        holder_pid = await holder.fetchval("SELECT pg_backend_pid()")
        deleting = asyncio.create_task(
            container.services.documents.delete(principal, document.id, None)
        )
        for _ in range(1_000):  # until the delete waits for the row's lock
            if await holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                holder_pid,
            ):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the delete never waited for the row's lock")
        assert not deleting.done()
        deleting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await deleting
    finally:
        await holder.close()
