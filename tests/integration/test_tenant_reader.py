"""The read-only tenant transactions of search (reader.py): one organisation's rows
only, as the application role, read only, nothing left on a pooled connection, and
SERVICE_UNAVAILABLE (never INTERNAL) when the database cannot serve."""

from __future__ import annotations

import asyncio
import random
import time

import asyncpg
import pytest

from domain.errors import ServiceUnavailable
from infrastructure.container import Container
from infrastructure.database.reader import ReaderPool, SqlTenantReader, connect_target
from infrastructure.embedded import EmbeddedPostgres
from tests.helpers import terminate_backend
from tests.integration.test_chunk_search import (
    DIMENSIONS,
    document_with_chunks,
    member,
    near,
    unit,
)

SETTINGS = (
    "SELECT current_user::text, current_setting('app.organization_id', true),"
    " current_setting('transaction_read_only')"
)


def one_connection(container: Container, acquire_timeout: float) -> ReaderPool:
    """A reader pool of a single connection, to the suite's database."""
    return ReaderPool(
        connect_target(container.engine),
        1,
        app_role=container.settings.database_app_role,
        hnsw_ef_search=100,
        fulltext_max_ranked=10,
        acquire_timeout=acquire_timeout,
    )


async def test_a_reader_sees_only_its_organisations_chunks_and_documents(
    container: Container,
) -> None:
    rng = random.Random(5)
    anchor = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    mine, theirs = await member(container), await member(container)
    my_document = await document_with_chunks(container, mine, [near(anchor, rng, 0.1)] * 3)
    # The other organisation's chunks are nearer to the question than mine.
    their_document = await document_with_chunks(container, theirs, [anchor] * 3)

    async with container.uow_factory.reader(mine) as reader:
        nearest = await reader.search.nearest(anchor, 10, None)
        matching = await reader.search.matching("passage", anchor, 10, None)
        chosen = await reader.search.nearest(anchor, 10, [their_document])
        documents = await reader.documents.get_many([my_document, their_document])
    assert {match.document_id for match in nearest} == {my_document}
    assert {match.document_id for match in matching} == {my_document}
    assert chosen == []
    assert [document.id for document in documents] == [my_document]


async def test_a_reader_sends_the_vector_in_binary_and_finds_what_a_unit_of_work_finds(
    container: Container,
) -> None:
    rng = random.Random(6)
    anchor = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    principal = await member(container)
    await document_with_chunks(container, principal, [near(anchor, rng, 0.3) for _ in range(20)])
    async with container.uow_factory.reader(principal) as reader:
        assert isinstance(reader, SqlTenantReader)
        connection = await reader.connection()
        # The pool's codec reads vectors back as floats, not pgvector's text.
        assert await connection.fetchval("SELECT $1::vector", anchor) == pytest.approx(anchor)
        nearest = await reader.search.nearest(anchor, 8, None)
        matching = await reader.search.matching("passage", anchor, 8, None)
    async with container.uow_factory.tenant(principal) as uow:
        # The session's connection has no codec: real[], cast by pgvector.
        expected_nearest = await uow.search.nearest(anchor, 8, None)
        expected_matching = await uow.search.matching("passage", anchor, 8, None)
    for found, expected in ((nearest, expected_nearest), (matching, expected_matching)):
        assert len(found) == 8
        assert [m.chunk_id for m in found] == [m.chunk_id for m in expected]
        assert [m.similarity for m in found] == pytest.approx([m.similarity for m in expected])


async def test_a_reader_runs_read_only_as_the_app_role_and_leaves_nothing_behind(
    container: Container,
) -> None:
    principal = await member(container)
    async with container.uow_factory.reader(principal) as reader:
        assert isinstance(reader, SqlTenantReader)
        connection = await reader.connection()
        role, organization, read_only = await connection.fetchrow(SETTINGS)
        assert role == container.settings.database_app_role
        assert organization == str(principal.organization_id)
        assert read_only == "on"
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await connection.execute("CREATE TEMPORARY TABLE t (x int)")
    # An error inside the block rolled the transaction back; the pooled connection is
    # back to the login role, with no organisation and no transaction.
    pooled = await container.readers.acquire()
    try:
        assert not pooled.is_in_transaction()
        role, organization, _ = await pooled.fetchrow(SETTINGS)
        assert role != container.settings.database_app_role
        assert organization in {"", None}
    finally:
        await container.readers.release(pooled)


async def test_every_connection_busy_is_service_unavailable(container: Container) -> None:
    readers = one_connection(container, acquire_timeout=0.2)
    principal = await member(container)
    try:
        async with SqlTenantReader(readers, principal):  # the only connection
            with pytest.raises(ServiceUnavailable):
                async with SqlTenantReader(readers, principal):
                    pass
        async with SqlTenantReader(readers, principal) as reader:  # free again
            assert await reader.documents.get_many([principal.user_id]) == []
    finally:
        await readers.aclose()


async def test_a_connection_lost_in_a_reader_is_service_unavailable_and_replaced(
    container: Container, embedded_postgres: EmbeddedPostgres
) -> None:
    principal = await member(container)
    with pytest.raises(ServiceUnavailable):
        async with container.uow_factory.reader(principal) as reader:
            assert isinstance(reader, SqlTenantReader)
            await terminate_backend(await reader.connection(), embedded_postgres.admin_dsn)
            await reader.search.nearest(unit([1.0] * DIMENSIONS), 5, None)
    async with container.uow_factory.reader(principal) as reader:
        assert await reader.search.nearest(unit([1.0] * DIMENSIONS), 5, None) == []


RUNNING_PG_SLEEP = """
SELECT EXISTS (
    SELECT FROM pg_stat_activity
    WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'
)"""


async def running_pg_sleep(admin_dsn: str, backend: int) -> None:
    """Until ``backend`` is running its pg_sleep; fails if it never starts to."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        deadline = time.monotonic() + 30
        while not await admin.fetchval(RUNNING_PG_SLEEP, backend):
            assert time.monotonic() < deadline, f"backend {backend} never ran pg_sleep"
            await asyncio.sleep(0.02)
    finally:
        await admin.close()


async def test_a_reader_cancelled_mid_statement_gives_its_connection_back(
    container: Container, embedded_postgres: EmbeddedPostgres
) -> None:
    readers = one_connection(container, acquire_timeout=5)
    principal = await member(container)
    backend: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def slow_read() -> None:
        async with SqlTenantReader(readers, principal) as reader:
            connection = await reader.connection()
            backend.set_result(connection.get_server_pid())
            await connection.execute("SELECT pg_sleep(30)")

    try:
        task = asyncio.create_task(slow_read())
        pid = await asyncio.wait_for(backend, 30)
        # Cancelled only once the statement runs on the server: a cancellation before it
        # was sent would not test the mid-statement path.
        await running_pg_sleep(embedded_postgres.admin_dsn, pid)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The only connection came back, out of its transaction, and serves again.
        async with SqlTenantReader(readers, principal) as reader:
            connection = await reader.connection()
            assert await connection.fetchval("SELECT current_setting('app.organization_id')") == (
                str(principal.organization_id)
            )
        pooled = await readers.acquire()
        try:
            assert not pooled.is_in_transaction()
        finally:
            await readers.release(pooled)
    finally:
        await readers.aclose()


async def test_a_reader_that_ends_cleanly_rolls_back_before_its_connection_serves_again(
    container: Container,
) -> None:
    """After a clean block the rollback runs in the background; the only connection is
    handed out again only once it has ended, and the next organisation sees only its own."""
    rng = random.Random(9)
    anchor = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    alpha, beta = await member(container), await member(container)
    alpha_document = await document_with_chunks(container, alpha, [anchor] * 2)
    beta_document = await document_with_chunks(container, beta, [near(anchor, rng, 0.1)] * 2)
    readers = one_connection(container, acquire_timeout=5)
    try:
        for _ in range(3):
            async with SqlTenantReader(readers, alpha) as reader:
                found = await reader.search.nearest(anchor, 10, None)
            assert {match.document_id for match in found} == {alpha_document}
            async with SqlTenantReader(readers, beta) as reader:
                found = await reader.search.nearest(anchor, 10, None)
                documents = await reader.documents.get_many([alpha_document, beta_document])
            assert {match.document_id for match in found} == {beta_document}
            assert [document.id for document in documents] == [beta_document]
        pooled = await readers.acquire()
        try:
            assert not pooled.is_in_transaction()
            role, organization, _ = await pooled.fetchrow(SETTINGS)
            assert role != container.settings.database_app_role
            assert organization in {"", None}
        finally:
            await readers.release(pooled)
        # Closing waits for a rollback still under way.
        async with SqlTenantReader(readers, alpha) as reader:
            await reader.search.nearest(anchor, 1, None)
    finally:
        await readers.aclose()
