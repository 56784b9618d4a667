"""A per-organisation corpus version, moved by the commit that changes what search sees.

The answer cache keys its entries by the organisation's corpus version. It used to be
derived on every question from the documents (their count and latest ``updated_at``): a
scan of the organisation's documents that grew with the corpus, and wrong under
concurrency, because ``updated_at`` is taken before commit: a worker that commits a
READY document with an earlier timestamp than one already committed moved neither
figure, and the cache went on serving answers that did not know the new document.

Now ``organizations.corpus_version`` is a counter that statement-level triggers on
``documents`` increment whenever a statement inserts, changes or deletes a READY
document (or makes one READY). The increment locks the organisation's row until
commit, so changes are counted in commit order; it runs after the statement, once per
statement, so a transaction holds that lock only from its last document change to its
commit (the worker's final ``mark_ready``), never while waiting for another document's
row. The function runs as the tables' owner: workers change documents in transactions
without a tenant, where row-level security would hide the organisation's row.

Revision ID: 0004_corpus_version
Revises: 0003_chunk_text_search
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_corpus_version"
down_revision: str | None = "0003_chunk_text_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Transition tables cannot be shared by a trigger on several events: one per event.
TRIGGERS = {
    "documents_corpus_version_insert": ("INSERT", "NEW TABLE AS new_rows"),
    "documents_corpus_version_update": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    "documents_corpus_version_delete": ("DELETE", "OLD TABLE AS old_rows"),
}


def upgrade() -> None:
    op.add_column(
        "organizations",
        sa.Column("corpus_version", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.execute(
        """
        CREATE FUNCTION bump_corpus_version() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog, public
        AS $$
        DECLARE
          changed uuid[];
        BEGIN
          IF TG_OP = 'INSERT' THEN
            SELECT array_agg(DISTINCT n.organization_id) INTO changed
            FROM new_rows n WHERE n.status = 'ready';
          ELSIF TG_OP = 'DELETE' THEN
            SELECT array_agg(DISTINCT o.organization_id) INTO changed
            FROM old_rows o WHERE o.status = 'ready';
          ELSE
            SELECT array_agg(DISTINCT n.organization_id) INTO changed
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.status = 'ready' OR o.status = 'ready';
          END IF;
          IF changed IS NOT NULL THEN
            -- Several organisations (a re-embed re-queues them all): lock in id order.
            -- NO KEY UPDATE, what the UPDATE itself takes: it waits for other bumps but
            -- not for the KEY SHARE locks that inserting chunks and documents (their
            -- foreign keys) hold on the row until commit; FOR UPDATE would, and two
            -- workers finishing documents of one organisation would deadlock.
            UPDATE public.organizations org
            SET corpus_version = org.corpus_version + 1
            WHERE org.id IN (
              SELECT id FROM public.organizations
              WHERE id = ANY (changed) ORDER BY id FOR NO KEY UPDATE
            );
          END IF;
          RETURN NULL;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION bump_corpus_version() FROM PUBLIC")
    for name, (event, transition) in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON documents "
            f"REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION bump_corpus_version()"
        )


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON documents")
    op.execute("DROP FUNCTION IF EXISTS bump_corpus_version()")
    op.drop_column("organizations", "corpus_version")
