"""Search excludes the few documents that are not ready instead of joining the ready ones.

Both search paths kept a chunk only if its document was READY, checked against the
organisation's READY documents: for a question whose words match a few hundred chunks
that was a documents lookup per match, or a hash of every READY document of the
organisation (~10,000 at 100,000 chunks), and it cost more than the full-text match
itself. Documents that are not ready are few, so both paths now drop the chunks of
those instead, found through a small partial index and hashed once per statement.

Which documents that are not ready can hold chunks:

- pending, processing and failed ones: a reprocessed document keeps its chunks until
  new ones replace them (and keeps them if reprocessing fails);
- never a deleted one: deleting a document removes its chunks in the same transaction,
  and the trigger added here makes that a property of the database, so a deleted
  document (a row kept forever, and so many of them in time) never needs checking.

Revision ID: 0007_unready_documents
Revises: 0006_processing_heartbeat
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007_unready_documents"
down_revision: str | None = "0006_processing_heartbeat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNREADY = "status IN ('pending', 'processing', 'failed')"

_MATCHES_BODY = """
          SELECT m.id, m.document_id, ts_rank_cd(m.tsv, $1, 1)
          FROM (
            SELECT c.id, c.document_id, c.tsv
            FROM public.chunks c
            WHERE c.organization_id = public.app_current_organization()
              AND c.embedding IS NOT NULL
              AND c.tsv @@ $1
              AND ($3 IS NULL OR c.document_id = ANY ($3))
              AND c.document_id {ready}
            LIMIT $2
          ) m
"""
_READY_BEFORE = """IN (
                SELECT d.id FROM public.documents d
                WHERE d.organization_id = public.app_current_organization()
                  AND d.status = 'ready'
              )"""
_READY_NOW = f"""NOT IN (
                SELECT d.id FROM public.documents d
                WHERE d.organization_id = public.app_current_organization()
                  AND d.{UNREADY}
              )"""


def _replace_matches(ready: str) -> None:
    # CREATE OR REPLACE keeps the function's owner and grants (migration 0003).
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION chunk_text_matches(tsquery, integer, uuid[])
        RETURNS TABLE (id uuid, document_id uuid, rank real)
        LANGUAGE sql STABLE SECURITY DEFINER
        SET search_path = pg_catalog, public
        AS $${_MATCHES_BODY.format(ready=ready)}$$
        """
    )


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_documents_organization_id_unready "
        f"ON documents (organization_id, id) WHERE {UNREADY}"
    )
    # Runs as the tables' owner: the rows it removes are the updated document's own.
    op.execute(
        """
        CREATE FUNCTION documents_drop_deleted_chunks() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog, public
        AS $$
        BEGIN
          DELETE FROM public.chunks
          WHERE organization_id = NEW.organization_id AND document_id = NEW.id;
          RETURN NULL;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION documents_drop_deleted_chunks() FROM PUBLIC")
    op.execute(
        """
        CREATE TRIGGER documents_drop_deleted_chunks
        AFTER UPDATE OF status ON documents
        FOR EACH ROW WHEN (NEW.status = 'deleted')
        EXECUTE FUNCTION documents_drop_deleted_chunks()
        """
    )
    # Documents already deleted lost their chunks when they were deleted.
    op.execute(
        "DELETE FROM chunks c USING documents d WHERE d.id = c.document_id AND d.status = 'deleted'"
    )
    _replace_matches(_READY_NOW)


def downgrade() -> None:
    _replace_matches(_READY_BEFORE)
    op.execute("DROP TRIGGER documents_drop_deleted_chunks ON documents")
    op.execute("DROP FUNCTION documents_drop_deleted_chunks()")
    op.execute("DROP INDEX ix_documents_organization_id_unready")
