"""documents.heartbeat_at: the processing worker's last sign of life.

A worker killed outright (SIGKILL, out of memory) used to leave its document in
PROCESSING until the watchdog's 40-minute processing timeout. A worker now records a
heartbeat every few seconds while it works on a document, and the watchdog re-queues
a document whose heartbeat stopped (two minutes by default). Adding a nullable column
rewrites nothing; claims made before it have none and count from their claim time.

Revision ID: 0006_processing_heartbeat
Revises: 0005_inline_embeddings
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_processing_heartbeat"
down_revision: str | None = "0005_inline_embeddings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("heartbeat_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("documents", "heartbeat_at")
