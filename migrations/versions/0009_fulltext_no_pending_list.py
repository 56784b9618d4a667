"""New chunks go straight into the full-text index, not into its pending list.

A GIN index, by PostgreSQL's default (``fastupdate = on``), collects new entries in an
unsorted pending list and merges them in bulk: at the next VACUUM, or when the list
passes ``gin_pending_list_limit`` (4 MB). Every full-text search reads the whole list
meanwhile. The list is the index's, shared by every organisation, and ingestion adds
chunks steadily between vacuums, so it was rarely empty. At 100,000 chunks, while
another organisation stored 10,220 chunks in steps, the full-text statement went from
1.2 ms to 4.1 ms on average (p95 3.3 to 5.8 ms) as the list grew, fell back to 1.9 ms
when it passed the limit (at about 5,100 chunks) and climbed again. Without the list it
stayed at 1.18-1.33 ms (p95 3.1-3.5 ms), and storing cost 1.81 against 1.69 ms per chunk
through the pipeline's store code, next to the 15-50 ms a chunk takes to embed. Measured
by ``bench/fulltext_pending_bench.py`` (bench/README.md, run 35).

Turning the option off does not empty a list that is already there, so the upgrade
merges it first.

Revision ID: 0009_fulltext_no_pending_list
Revises: 0008_fulltext_ts_rank
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009_fulltext_no_pending_list"
down_revision: str | None = "0008_fulltext_ts_rank"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER INDEX ix_chunks_tsv SET (fastupdate = off)")
    op.execute("SELECT gin_clean_pending_list('ix_chunks_tsv'::regclass)")


def downgrade() -> None:
    op.execute("ALTER INDEX ix_chunks_tsv RESET (fastupdate)")
