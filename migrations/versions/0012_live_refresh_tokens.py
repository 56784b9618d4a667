"""Partial indexes over the refresh tokens that can still be redeemed.

Every refresh leaves its used token behind until the session reaches its maximum age,
so a session that refreshes often owns many rows, and the user who owns it as many.
What ends sessions only ever needs the few that can still be redeemed (unused and
unrevoked: each live session's newest token): log-out and replay detection revoke
those of a lineage by family, member removal, role changes and password changes find
those of a user (in one organisation or all). Through the indexes on ``family_id`` and
``(user_id, organization_id)`` each of them read every row the session (or the user)
ever left, so their cost grew with its history; these two hold one entry per live
session and nothing else.

Revision ID: 0012_live_refresh_tokens
Revises: 0011_refresh_token_lineage
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_live_refresh_tokens"
down_revision: str | None = "0011_refresh_token_lineage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "used_at IS NULL AND revoked_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_refresh_tokens_family_id_live",
        "refresh_tokens",
        ["family_id"],
        postgresql_where=sa.text(LIVE),
    )
    op.create_index(
        "ix_refresh_tokens_user_id_organization_id_live",
        "refresh_tokens",
        ["user_id", "organization_id"],
        postgresql_where=sa.text(LIVE),
    )


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_user_id_organization_id_live", table_name="refresh_tokens")
    op.drop_index("ix_refresh_tokens_family_id_live", table_name="refresh_tokens")
