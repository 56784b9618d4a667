"""Full-text matching of chunks through a function that can use the GIN index.

Under row-level security PostgreSQL evaluates a policy's condition before any
condition that is not leakproof, and ``tsvector @@ tsquery`` is not: as the app
role, a full-text search cannot use ``ix_chunks_tsv`` and reads every chunk of
every organisation (a quarter of a second at 100,000 chunks). This function runs
as the tables' owner, outside row-level security, and applies the same tenant
condition itself: the organisation comes from the transaction's
``app.organization_id`` setting (as in every policy), never from an argument, so
a caller can only ever match its own organisation's chunks of READY documents.

Revision ID: 0003_chunk_text_search
Revises: 0002_chat_owner_policies
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op

revision: str = "0003_chunk_text_search"
down_revision: str | None = "0002_chat_owner_policies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "chunk_text_matches(tsquery, integer, uuid[])"


def _app_role() -> str:
    role = context.config.attributes.get("app_role", "foundry_app")
    if not isinstance(role, str) or not role.replace("_", "").isalnum():
        raise ValueError(f"invalid application role name: {role!r}")
    return role


def upgrade() -> None:
    # $1 the query, $2 how many matches to rank at most, $3 chosen documents (NULL: all).
    op.execute(
        """
        CREATE FUNCTION chunk_text_matches(tsquery, integer, uuid[])
        RETURNS TABLE (id uuid, document_id uuid, rank real)
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, public
        AS $$
          SELECT m.id, m.document_id, ts_rank_cd(m.tsv, $1, 1)
          FROM (
            SELECT c.id, c.document_id, c.tsv
            FROM public.chunks c
            WHERE c.organization_id = public.app_current_organization()
              AND c.embedding IS NOT NULL
              AND c.tsv @@ $1
              AND ($3 IS NULL OR c.document_id = ANY ($3))
              AND c.document_id IN (
                SELECT d.id FROM public.documents d
                WHERE d.organization_id = public.app_current_organization()
                  AND d.status = 'ready'
              )
            LIMIT $2
          ) m
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {_app_role()}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
