"""The dimension of chunks.embedding, and changing it when the embedder changes."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

INDEX = "ix_chunks_embedding_hnsw"


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
    re-ingested afterwards (``foundry reembed``).
    """
    if not 1 <= dimensions <= 16_000:
        raise ValueError("embedding dimensions must be between 1 and 16000")
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP INDEX IF EXISTS {INDEX}"))
        await conn.execute(text("UPDATE chunks SET embedding = NULL"))
        await conn.execute(
            # A type change resets the storage to pgvector's EXTERNAL: keep vectors in
            # the row (migration 0005_inline_embeddings says why).
            text(
                f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dimensions:d}), "
                "ALTER COLUMN embedding SET STORAGE MAIN"
            )
        )
        await conn.execute(
            text(f"CREATE INDEX {INDEX} ON chunks USING hnsw (embedding vector_cosine_ops)")
        )
