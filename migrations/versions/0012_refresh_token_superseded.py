"""A refresh token can be superseded: replaced, unused, by a retried refresh.

``refreshSession`` presented again with a token used moments ago (its answer lost on
the way) trades the token it was traded for instead, if that one is still unused, and
records it here. A superseded token counts as used, so presenting it later is a replay
that ends the session, and it is never taken for a retry itself.

Revision ID: 0012_refresh_token_superseded
Revises: 0011_refresh_token_lineage
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_refresh_token_superseded"
down_revision: str | None = "0011_refresh_token_lineage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "refresh_tokens", sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("refresh_tokens", "superseded_at")
