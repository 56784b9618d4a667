"""Chats and their messages are visible only to the user who owns the chat.

Organisation policies already separate tenants; these restrictive policies add
that, inside an organisation, one member never sees another's chats, even
through a query that forgets the user filter.

Revision ID: 0002_chat_owner_policies
Revises: 0001_initial
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_chat_owner_policies"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWNS_CHAT = (
    "EXISTS (SELECT 1 FROM chats c WHERE c.id = messages.chat_id "
    "AND c.organization_id = messages.organization_id AND c.user_id = app_current_user())"
)


def upgrade() -> None:
    op.execute(
        "CREATE POLICY chats_owner ON chats AS RESTRICTIVE "
        "USING (user_id = app_current_user()) WITH CHECK (user_id = app_current_user())"
    )
    op.execute(
        f"CREATE POLICY messages_owner ON messages AS RESTRICTIVE "
        f"USING ({_OWNS_CHAT}) WITH CHECK ({_OWNS_CHAT})"
    )


def downgrade() -> None:
    op.execute("DROP POLICY IF EXISTS messages_owner ON messages")
    op.execute("DROP POLICY IF EXISTS chats_owner ON chats")
