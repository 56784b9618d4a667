"""The read-only transactions' pool (reader.py) at the edges of its life: closed, it
refuses new readers instead of opening a pool nobody closes; and a statement gone stale
with a schema change is SERVICE_UNAVAILABLE (try again), never INTERNAL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text

from domain.errors import ServiceUnavailable
from infrastructure.container import BackendUrls, Container
from infrastructure.database.reader import SqlTenantReader
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings
from tests.helpers import isolated_container
from tests.integration.test_chunk_search import DIMENSIONS, document_with_chunks, member, unit
from tests.integration.test_tenant_reader import one_connection


@pytest.fixture
async def own_database(
    settings: Settings, urls: BackendUrls, embedded_postgres: EmbeddedPostgres
) -> AsyncIterator[Container]:
    """A database of its own: a test changes its schema."""
    container = await isolated_container(settings, urls, embedded_postgres, "readers")
    yield container
    await container.aclose()


async def test_a_closed_pool_refuses_new_readers(container: Container) -> None:
    principal = await member(container)
    readers = one_connection(container, acquire_timeout=5)
    async with SqlTenantReader(readers, principal) as reader:
        assert await reader.documents.get_many([uuid.uuid4()]) == []
    await readers.aclose()
    # A search (or an answer's chat write) arriving after shutdown: refused, where it
    # used to open a new pool whose connections nothing would close.
    with pytest.raises(ServiceUnavailable):
        async with SqlTenantReader(readers, principal):
            pass
    with pytest.raises(ServiceUnavailable):
        await readers.acquire()


async def test_a_statement_prepared_before_a_schema_change_is_unavailable_once(
    own_database: Container,
) -> None:
    principal = await member(own_database)
    document = await document_with_chunks(own_database, principal, [unit([1.0] * DIMENSIONS)])
    readers = one_connection(own_database, acquire_timeout=5)  # the same connection each time
    try:
        async with SqlTenantReader(readers, principal) as reader:  # prepares get_many
            assert [found.id for found in await reader.documents.get_many([document])] == [document]
        # A migration widens a column the prepared statement returns (a rolling upgrade:
        # this replica keeps serving on the new schema).
        async with own_database.engine.begin() as conn:
            await conn.execute(
                text("ALTER TABLE documents ALTER COLUMN filename TYPE varchar(512)")
            )

        with pytest.raises(ServiceUnavailable) as raised:
            async with SqlTenantReader(readers, principal) as reader:
                await reader.documents.get_many([document])
        assert isinstance(raised.value.__cause__, asyncpg.InvalidCachedStatementError)
        # The driver prepares the statement again: the request tried again succeeds.
        async with SqlTenantReader(readers, principal) as reader:
            assert [found.id for found in await reader.documents.get_many([document])] == [document]
    finally:
        await readers.aclose()
