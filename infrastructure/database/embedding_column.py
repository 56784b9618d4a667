"""The dimension of chunks.embedding, and changing it when the embedder changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from infrastructure.database.repositories.documents import SqlMaintenanceRepository

INDEX = "ix_chunks_embedding_hnsw"
# How long the resize waits for searches and workers to let go of chunks. While it
# waits, every new query on chunks queues behind it, so it gives up rather than stall
# the service; nothing has changed then (see resize_and_reset).
LOCK_TIMEOUT_MS = 10_000
# How long the resize's transaction may sit between statements before the server ends it.
IDLE_IN_RESIZE_MS = 60_000
_LOCK_NOT_AVAILABLE = "55P03"


class ColumnBusy(Exception):
    """The resize could not lock the chunks table in time; nothing was changed."""


async def column_dimensions(engine: AsyncEngine) -> int:
    """pgvector keeps the declared dimension in the column's type modifier."""
    async with engine.connect() as conn:
        typmod = await conn.scalar(
            text(
                "SELECT atttypmod FROM pg_attribute "
                "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
            )
        )
    return int(typmod or 0)


async def resize_embedding_column(engine: AsyncEngine, dimensions: int) -> None:
    """Drop all vectors and make the column vector(dimensions), with its HNSW index.

    Vectors of another model are meaningless for the new one; documents are
    re-ingested afterwards (``foundry reembed``, which uses :func:`resize_and_reset`).
    """
    _check(dimensions)
    async with _locking(), engine.begin() as conn:
        await _resize(conn, dimensions)


async def resize_and_reset(engine: AsyncEngine, dimensions: int, at: datetime) -> list[UUID]:
    """Resize the column and put every live document back to PENDING, in one transaction:
    cut short, nothing changed (the documents keep their vectors and stay searchable);
    done, every document waits for ingestion on a column its embedder fits. Returns
    the documents' ids, to queue."""
    _check(dimensions)
    async with _locking(), engine.begin() as conn:
        await _resize(conn, dimensions)
        # The session joins the connection's transaction; leaving it neither commits
        # nor rolls back, so the resize and the reset commit (or not) together.
        async with AsyncSession(bind=conn) as session:
            return await SqlMaintenanceRepository(session).reset_all_to_pending(at)


def _check(dimensions: int) -> None:
    if not 1 <= dimensions <= 16_000:
        raise ValueError("embedding dimensions must be between 1 and 16000")


@asynccontextmanager
async def _locking() -> AsyncIterator[None]:
    """A lock not had in time (chunks, or a document a worker holds) as ColumnBusy."""
    try:
        yield
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        raise ColumnBusy(
            f"Could not lock the chunks and documents tables within {LOCK_TIMEOUT_MS / 1000:g}"
            " s: searches or ingestion kept them busy. Nothing was changed; run it again at "
            "a quieter time, or with the workers stopped."
        ) from error


async def _resize(conn: AsyncConnection, dimensions: int) -> None:
    # The engine's statement timeout (FOUNDRY_DATABASE_STATEMENT_TIMEOUT_MS) suits
    # requests, not rewriting the table: 100,000 chunks take longer than its 15 s.
    # Waiting for the table's lock is what must stay short instead.
    await conn.execute(text("SET LOCAL statement_timeout = 0"))
    await conn.execute(text(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS:d}"))
    # The engine ends a transaction left idle for 4 statement timeouts; between this
    # transaction's statements the command's own pauses (a busy machine) are not a
    # client gone (a test with a 100 ms statement timeout lost its connection so under
    # CI load). A client that does hang still frees the table, which it holds
    # exclusively, within a minute.
    await conn.execute(
        text(f"SET LOCAL idle_in_transaction_session_timeout = {IDLE_IN_RESIZE_MS:d}")
    )
    # Dropped first, so the rewrite below does not rebuild an index of NULLs.
    await conn.execute(text(f"DROP INDEX IF EXISTS {INDEX}"))
    await conn.execute(
        # One rewrite drops every vector (an UPDATE first would write each row twice).
        # A type change resets the storage to pgvector's EXTERNAL: keep vectors in the
        # row (migration 0005_inline_embeddings says why).
        text(
            f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dimensions:d}) "
            f"USING NULL::vector({dimensions:d}), "
            "ALTER COLUMN embedding SET STORAGE MAIN"
        )
    )
    await conn.execute(
        text(f"CREATE INDEX {INDEX} ON chunks USING hnsw (embedding vector_cosine_ops)")
    )
