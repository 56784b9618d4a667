"""Changing the embedder: the vector column is resized and every document is re-queued.
Runs on a database of its own, since it changes the chunks table."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import pytest
from sqlalchemy import select, text, update

from infrastructure.cli_errors import CommandFailed
from infrastructure.cli_maintenance import reembed
from infrastructure.container import BackendUrls, Container
from infrastructure.database import embedding_column
from infrastructure.database.embedding_column import (
    column_dimensions,
    resize_embedding_column,
)
from infrastructure.database.models import DocumentRow
from infrastructure.database.repositories.documents import SqlMaintenanceRepository
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings
from tests.helpers import isolated_container
from tests.integration.test_chunk_search import DIMENSIONS, document_with_chunks, member, near, unit
from tests.integration.test_worker_recovery import _editor, _incoming


@pytest.fixture
async def own_database(
    settings: Settings, urls: BackendUrls, embedded_postgres: EmbeddedPostgres
) -> AsyncIterator[Container]:
    container = await isolated_container(settings, urls, embedded_postgres, "reembed")
    yield container
    await container.aclose()


async def test_resize_changes_the_column_and_keeps_the_index(own_database: Container) -> None:
    assert await column_dimensions(own_database.engine) == 384
    await resize_embedding_column(own_database.engine, 768)
    assert await column_dimensions(own_database.engine) == 768
    async with own_database.engine.connect() as conn:
        indexes = list(
            await conn.scalars(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'chunks'"))
        )
    assert any("hnsw (embedding vector_cosine_ops)" in ix for ix in indexes)
    with pytest.raises(ValueError, match="between"):
        await resize_embedding_column(own_database.engine, 0)


async def test_reembed_puts_every_live_document_back_in_the_queue(
    own_database: Container,
) -> None:
    principal = await _editor(own_database)
    results = await own_database.services.documents.upload(
        principal,
        [_incoming(f"{n}.txt", f"{n} {uuid.uuid4()}".encode()) for n in ("a", "b", "c")],
        ip=None,
    )
    ids = [r.document.id for r in results if r.document]
    async with own_database.session_factory() as db:
        await db.execute(update(DocumentRow).where(DocumentRow.id == ids[0]).values(status="ready"))
        await db.execute(
            update(DocumentRow)
            .where(DocumentRow.id == ids[1])
            .values(status="failed", error_code="X")
        )
        await db.execute(
            update(DocumentRow).where(DocumentRow.id == ids[2]).values(status="deleted")
        )
        await db.commit()
    before = await own_database.queue_depth()

    assert await reembed(own_database, 384) == 2  # the same size

    async with own_database.session_factory() as db:
        statuses = dict((await db.execute(select(DocumentRow.id, DocumentRow.status))).all())
    assert statuses == {ids[0]: "pending", ids[1]: "pending", ids[2]: "deleted"}
    assert await own_database.queue_depth() == before + 2


async def _ready_documents(container: Container, count: int) -> list[uuid.UUID]:
    principal = await _editor(container)
    results = await container.services.documents.upload(
        principal,
        [_incoming(f"{n}.txt", f"{n} {uuid.uuid4()}".encode()) for n in range(count)],
        ip=None,
    )
    ids = [r.document.id for r in results if r.document]
    async with container.session_factory() as db:
        await db.execute(update(DocumentRow).where(DocumentRow.id.in_(ids)).values(status="ready"))
        await db.commit()
    return ids


async def _statuses(container: Container, ids: list[uuid.UUID]) -> set[str]:
    async with container.session_factory() as db:
        return set(await db.scalars(select(DocumentRow.status).where(DocumentRow.id.in_(ids))))


async def test_a_reembed_cut_short_changes_nothing_and_a_second_run_does_it_all(
    own_database: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resize and the reset commit together: a failure between them leaves the
    documents READY with their vectors, not pending on a column the worker refuses."""
    ids = await _ready_documents(own_database, 2)
    before = await own_database.queue_depth()

    class CutShort(SqlMaintenanceRepository):
        async def reset_all_to_pending(self, at: datetime) -> list[uuid.UUID]:
            raise ConnectionResetError("the database went away mid-reembed")

    monkeypatch.setattr(embedding_column, "SqlMaintenanceRepository", CutShort)
    with pytest.raises(ConnectionResetError):
        await reembed(own_database, 768)
    assert await _statuses(own_database, ids) == {"ready"}
    assert await column_dimensions(own_database.engine) == 384  # rolled back with it

    monkeypatch.undo()
    assert await reembed(own_database, 768) == 2  # run again: done
    assert await _statuses(own_database, ids) == {"pending"}
    assert await column_dimensions(own_database.engine) == 768
    assert await own_database.queue_depth() == before + 2


@asynccontextmanager
async def _tight(container: Container, urls: BackendUrls) -> AsyncIterator[Container]:
    """The container's database with a 100 ms statement timeout (so 400 ms idle in a
    transaction), as a command run with such settings would have."""
    own = container.settings
    assert own.database_url is not None
    tight = Container(
        own.model_copy(update={"database_statement_timeout_ms": 100}),
        BackendUrls(own.database_url.get_secret_value(), urls.redis_url),
    )
    try:
        yield tight
    finally:
        await tight.aclose()


async def test_the_resize_is_not_cut_by_the_statement_timeout_of_requests(
    urls: BackendUrls, own_database: Container
) -> None:
    """Rewriting a large chunks table takes longer than FOUNDRY_DATABASE_STATEMENT_TIMEOUT_MS,
    which bounds requests: the resize lifts it for its own transaction."""
    ids = await _ready_documents(own_database, 1)
    async with own_database.engine.begin() as conn:
        await conn.execute(text("SET LOCAL statement_timeout = 0"))
        await conn.execute(
            text(
                "INSERT INTO chunks (id, organization_id, document_id, ordinal, text, "
                "char_start, char_end, token_count, created_at) "
                "SELECT gen_random_uuid(), organization_id, id, n, "
                "repeat('words to rewrite and index again ', 20) || n, 0, 600, 120, now() "
                "FROM documents, generate_series(1, 30000) AS n WHERE id = :id"
            ),
            {"id": ids[0]},
        )
    async with _tight(own_database, urls) as tight:
        assert await reembed(tight, 768) == 1
        assert await column_dimensions(tight.engine) == 768
    assert await _statuses(own_database, ids) == {"pending"}


async def test_a_pause_between_the_resize_statements_does_not_end_its_transaction(
    urls: BackendUrls, own_database: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine ends transactions idle for 4 statement timeouts (400 ms here); the
    resize's own pauses on a busy machine are not a client gone (a CI run lost its
    connection so). Here the pause comes before the documents are reset."""
    ids = await _ready_documents(own_database, 1)
    reset_all = SqlMaintenanceRepository.reset_all_to_pending

    async def after_a_pause(self: SqlMaintenanceRepository, at: datetime) -> list[uuid.UUID]:
        await asyncio.sleep(0.6)
        return await reset_all(self, at)

    monkeypatch.setattr(SqlMaintenanceRepository, "reset_all_to_pending", after_a_pause)
    async with _tight(own_database, urls) as tight:
        assert await reembed(tight, 768) == 1
    assert await _statuses(own_database, ids) == {"pending"}


async def test_a_resize_that_cannot_lock_the_table_says_so_and_changes_nothing(
    own_database: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resize that fails (here: a long search holds the table) must not leave every
    document pending on a column the worker refuses to start on."""
    ids = await _ready_documents(own_database, 1)
    monkeypatch.setattr(embedding_column, "LOCK_TIMEOUT_MS", 200)
    async with own_database.engine.connect() as holder, holder.begin():
        await holder.execute(text("LOCK TABLE chunks IN ACCESS SHARE MODE"))
        with pytest.raises(CommandFailed, match="Nothing was changed"):
            await reembed(own_database, 768)
    assert await column_dimensions(own_database.engine) == 384
    assert await _statuses(own_database, ids) == {"ready"}
    assert await reembed(own_database, 768) == 1  # once the table is free


async def test_a_reembed_of_the_same_size_drops_the_old_vectors_from_search(
    own_database: Container,
) -> None:
    """Left in the HNSW graph while every document is pending, the old vectors made each
    search walk the graph to pgvector's scan limit (100,000 tuples, about a second of
    CPU) and then scan exactly, for the whole re-ingestion."""
    principal = await member(own_database)
    rng = random.Random(7)
    anchor = unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)])
    document_id = await document_with_chunks(
        own_database, principal, [near(anchor, rng, 0.05) for _ in range(30)]
    )
    assert await reembed(own_database, DIMENSIONS) == 1
    async with own_database.engine.connect() as conn:
        kept = await conn.scalar(
            text("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL AND document_id = :d"),
            {"d": document_id},
        )
        indexed = list(
            await conn.scalars(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'chunks'"))
        )
    assert kept == 0
    assert any("hnsw (embedding vector_cosine_ops)" in ix for ix in indexed)
    assert await column_dimensions(own_database.engine) == DIMENSIONS
    assert await _statuses(own_database, [document_id]) == {"pending"}
