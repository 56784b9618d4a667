"""Chunk vectors live in the table row, not in the TOAST table (migration 0005)."""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import AsyncIterator

import pytest
from alembic import command
from sqlalchemy import text

from infrastructure.container import BackendUrls, Container
from infrastructure.database.embedding_column import resize_embedding_column
from infrastructure.database.migrate import alembic_config, upgrade_to_head
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings
from tests.helpers import new_database
from tests.integration.test_chunk_search import DIMENSIONS, document_with_chunks, member, unit

BEFORE = "0004_corpus_version"
# Added by migration 0006 (documents.heartbeat_at), after BEFORE.
LATER_COLUMN = "heartbeat_at"
# How many chunks have their vector stored out of line.
VECTORS_OUT_OF_LINE = text(
    "SELECT count(*) FROM chunks WHERE pg_column_toast_chunk_id(embedding) IS NOT NULL"
)


@pytest.fixture
async def database_before(
    settings: Settings, urls: BackendUrls, embedded_postgres: EmbeddedPostgres
) -> AsyncIterator[tuple[Container, str]]:
    """A database of its own, migrated up to the revision before inline vectors."""
    url = await new_database(embedded_postgres, urls, "storage")
    config = alembic_config(url, settings.database_app_role)
    await asyncio.to_thread(command.upgrade, config, BEFORE)
    container = Container(settings, BackendUrls(url, urls.redis_url))
    yield container, url
    await container.aclose()


async def storage(container: Container, column: str) -> str:
    async with container.engine.connect() as conn:
        mode = await conn.scalar(
            text(
                "SELECT attstorage::text FROM pg_attribute "
                "WHERE attrelid = 'chunks'::regclass AND attname = :column"
            ),
            {"column": column},
        )
    return str(mode)


async def vectors_out_of_line(container: Container) -> int:
    async with container.engine.connect() as conn:
        return int(await conn.scalar(VECTORS_OUT_OF_LINE) or 0)


async def test_the_migration_moves_stored_vectors_into_their_rows(
    database_before: tuple[Container, str], settings: Settings
) -> None:
    container, url = database_before
    rng = random.Random(5)
    principal = await member(container)
    vectors = [unit([rng.gauss(0, 1) for _ in range(DIMENSIONS)]) for _ in range(6)]
    # Today's code writes the columns later migrations add: lend them for the seeding.
    async with container.engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE documents ADD COLUMN {LATER_COLUMN} timestamptz"))
    document_id = await document_with_chunks(container, principal, vectors)
    async with container.engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE documents DROP COLUMN {LATER_COLUMN}"))
    # Passages long enough that a row passes PostgreSQL's 2 KB TOAST threshold.
    words = [
        " ".join("".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(150))
        for _ in vectors
    ]
    async with container.engine.begin() as conn:
        for ordinal, passage in enumerate(words):
            await conn.execute(
                text("UPDATE chunks SET text = :text WHERE document_id = :d AND ordinal = :o"),
                {"text": passage, "d": document_id, "o": ordinal},
            )
    assert await storage(container, "embedding") == "e"  # pgvector's default: EXTERNAL
    assert await vectors_out_of_line(container) == 6

    await asyncio.to_thread(upgrade_to_head, url, settings.database_app_role)

    assert await storage(container, "embedding") == "m"
    assert await vectors_out_of_line(container) == 0
    async with container.uow_factory.tenant(principal) as uow:
        found = await uow.search.nearest(vectors[3], 1, None)
    assert found[0].text == words[3]
    assert found[0].similarity == pytest.approx(1.0, abs=1e-5)


async def test_a_resized_column_keeps_vectors_in_the_row(
    database_before: tuple[Container, str], settings: Settings
) -> None:
    container, url = database_before
    await asyncio.to_thread(upgrade_to_head, url, settings.database_app_role)
    await resize_embedding_column(container.engine, 768)
    assert await storage(container, "embedding") == "m"
