"""Changing the embedder: the vector column is resized and every document is re-queued.
Runs on a database of its own, since it changes the chunks table."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text, update

from infrastructure.cli import reembed
from infrastructure.container import BackendUrls, Container
from infrastructure.database import embedding_column
from infrastructure.database.embedding_column import column_dimensions, resize_embedding_column
from infrastructure.database.models import DocumentRow
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings
from tests.helpers import isolated_container
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


async def test_reset_all_and_enqueue_put_every_live_document_back_in_the_queue(
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

    ingestion = own_database.build_ingestion()
    assert await ingestion.enqueue(await ingestion.reset_all()) == 2

    async with own_database.session_factory() as db:
        statuses = dict((await db.execute(select(DocumentRow.id, DocumentRow.status))).all())
    assert statuses == {ids[0]: "pending", ids[1]: "pending", ids[2]: "deleted"}
    assert await own_database.queue_depth() == before + 2


async def test_a_reembed_cut_short_leaves_documents_pending_not_ready_without_vectors(
    own_database: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    principal = await _editor(own_database)
    results = await own_database.services.documents.upload(
        principal,
        [_incoming(f"{n}.txt", f"{n} {uuid.uuid4()}".encode()) for n in ("a", "b")],
        ip=None,
    )
    ids = [r.document.id for r in results if r.document]
    async with own_database.session_factory() as db:
        await db.execute(update(DocumentRow).where(DocumentRow.id.in_(ids)).values(status="ready"))
        await db.commit()
    before = await own_database.queue_depth()

    async def cut_short(engine: object, dimensions: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the column is resized

    monkeypatch.setattr(embedding_column, "resize_embedding_column", cut_short)
    with pytest.raises(KeyboardInterrupt):
        await reembed(own_database, 768)
    async with own_database.session_factory() as db:
        statuses = set(await db.scalars(select(DocumentRow.status).where(DocumentRow.id.in_(ids))))
    assert statuses == {"pending"}  # out of search, and the watchdog queues them

    monkeypatch.undo()
    assert await reembed(own_database, 768) == 2  # run again: done
    assert await column_dimensions(own_database.engine) == 768
    assert await own_database.queue_depth() == before + 2
