"""The migration creates exactly the tables the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from infrastructure.container import Container
from infrastructure.database.engine import migrations_at_head
from infrastructure.database.models import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_and_migration_agree(container: Container) -> None:
    async with container.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []


async def test_database_is_at_head_with_vector_extension(container: Container) -> None:
    assert await migrations_at_head(container.engine)
    async with container.engine.connect() as conn:
        version = await conn.scalar(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        )
        columns: dict[str, str] = dict(
            (
                await conn.execute(
                    text(
                        "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = 'public' AND data_type LIKE 'timestamp%'"
                    )
                )
            ).all()
        )
        indexes = set(
            await conn.scalars(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'chunks'"))
        )
    assert version is not None and tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)
    assert set(columns.values()) == {"timestamp with time zone"}
    assert any("USING hnsw (embedding vector_cosine_ops)" in ix for ix in indexes)
    assert any("USING gin (tsv)" in ix for ix in indexes)


async def test_fulltext_index_takes_new_chunks_without_a_pending_list(
    container: Container,
) -> None:
    """Searches would otherwise read every chunk added since the last VACUUM (0009)."""
    async with container.engine.connect() as conn:
        options = await conn.scalar(
            text("SELECT reloptions FROM pg_class WHERE relname = 'ix_chunks_tsv'")
        )
    assert options == ["fastupdate=off"]
