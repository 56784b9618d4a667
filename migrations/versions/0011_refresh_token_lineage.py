"""A session that switches organisation remembers the session it came from.

``switchOrganization`` ends the caller's session and starts one in another organisation,
under a family of its own (a family belongs to one organisation: removing a member from
one must not end their session in another). The new family's rows name the old one in
``previous_family_id``, so a replay of the old session's last refresh token, which is a
stolen copy as surely as a replay within one family, revokes the sessions it led to.

Revision ID: 0011_refresh_token_lineage
Revises: 0010_fulltext_generic_plan
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_refresh_token_lineage"
down_revision: str | None = "0010_fulltext_generic_plan"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("refresh_tokens", sa.Column("previous_family_id", sa.Uuid(), nullable=True))
    op.create_index(None, "refresh_tokens", ["previous_family_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_refresh_tokens_previous_family_id"), table_name="refresh_tokens")
    op.drop_column("refresh_tokens", "previous_family_id")
