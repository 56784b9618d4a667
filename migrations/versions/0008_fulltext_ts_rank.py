"""Full-text matches are ranked with ts_rank instead of ts_rank_cd.

Ranking is most of what a full-text match costs PostgreSQL. Over 400 of the query
bench's questions at 100,000 chunks (at most 500 matches ranked), the questions whose
words matched cost 2.5-2.7 ms each with ts_rank_cd (cover density: it looks for the
shortest spans holding the query's words), 1.8 ms with ts_rank (how often the words
occur) and 1.4-1.5 ms with no ranking at all; over all questions 1.1 against 0.85 ms.
Ranking quality did not change (retrieval_eval.py: hybrid Recall@5 0.7245 with ts_rank against
0.7274 with ts_rank_cd, one question of 344; MRR@10 0.6355 against 0.6356; full text alone slightly
better with ts_rank). Both use normalisation 1 (divide by 1 + log(length)), so long
chunks don't win on bulk (bench/README.md, run 25).

Revision ID: 0008_fulltext_ts_rank
Revises: 0007_unready_documents
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_fulltext_ts_rank"
down_revision: str | None = "0007_unready_documents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BODY = """
          SELECT m.id, m.document_id, {rank}(m.tsv, $1, 1)
          FROM (
            SELECT c.id, c.document_id, c.tsv
            FROM public.chunks c
            WHERE c.organization_id = public.app_current_organization()
              AND c.embedding IS NOT NULL
              AND c.tsv @@ $1
              AND ($3 IS NULL OR c.document_id = ANY ($3))
              AND c.document_id NOT IN (
                SELECT d.id FROM public.documents d
                WHERE d.organization_id = public.app_current_organization()
                  AND d.status IN ('pending', 'processing', 'failed')
              )
            LIMIT $2
          ) m
"""


def _replace_matches(rank: str) -> None:
    # CREATE OR REPLACE keeps the function's owner and grants (migration 0003).
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION chunk_text_matches(tsquery, integer, uuid[])
        RETURNS TABLE (id uuid, document_id uuid, rank real)
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, public
        AS $${_BODY.format(rank=rank)}$$
        """
    )


def upgrade() -> None:
    _replace_matches("ts_rank")


def downgrade() -> None:
    _replace_matches("ts_rank_cd")
