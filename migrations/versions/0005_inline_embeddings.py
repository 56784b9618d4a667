"""Keep chunk vectors inside the table row, not in the TOAST table.

A chunk's row passes PostgreSQL's 2 KB TOAST threshold (a 384-dimension vector is
1.5 KB; the text and its tsvector come on top), and pgvector's type asks for EXTERNAL
storage, so the vector was the value moved out of line: every distance computed on a
stored row fetched it from the TOAST table first. An exact scan (what the planner
picks for a small organisation, and thinks cheap because it does not cost that
fetch) took ~5 microseconds per chunk: 12 ms per search at 2,000 chunks, against
~1 ms with the vector in the row (bench/README.md, run 12).

Now the vector's storage is MAIN (out of line only if the row would not fit in a page
otherwise) and rows may reach 4 KB before anything is compressed or moved: text and
tsvector are compressed in the row, where full-text ranking reads the tsvector, as
before. Storing only the vector in the row at the default 2 KB target pushed the
tsvector out instead, and full-text search at 100,000 chunks took twice as long.

The table is rewritten (and its indexes rebuilt) so that rows stored before the
change move too: ALTER TYPE to the same type with an expression forces the rewrite,
and SET STORAGE in the same statement makes it store the new way. The table is
locked while it runs: 20 s for 110,000 chunks on the 2-core test machine.

Revision ID: 0005_inline_embeddings
Revises: 0004_corpus_version
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_inline_embeddings"
down_revision: str | None = "0004_corpus_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The HNSW rebuild is much faster when the graph fits in memory (pgvector's advice).
BUILD_MEMORY = "256MB"
# Rows up to this size stay whole (PostgreSQL's default is 2,032 bytes).
ROW_TARGET = 4_080


def _dimensions() -> int:
    """The column's current size: ``foundry reembed --dimensions`` may have changed it."""
    typmod = op.get_bind().scalar(
        sa.text(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        )
    )
    if not isinstance(typmod, int) or typmod < 1:
        raise RuntimeError(f"chunks.embedding has no fixed dimension (typmod {typmod!r})")
    return typmod


def upgrade() -> None:
    dimensions = _dimensions()
    op.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
    op.execute(f"ALTER TABLE chunks SET (toast_tuple_target = {ROW_TARGET:d})")
    op.execute(
        f"ALTER TABLE chunks "
        f"ALTER COLUMN embedding TYPE vector({dimensions:d}) "
        f"USING CAST(CAST(embedding AS real[]) AS vector({dimensions:d})), "
        f"ALTER COLUMN embedding SET STORAGE MAIN"
    )


def downgrade() -> None:
    # pgvector's default and PostgreSQL's target again; rows change when next written.
    op.execute(
        "ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE EXTERNAL, RESET (toast_tuple_target)"
    )
