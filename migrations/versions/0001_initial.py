"""The whole data model with row-level security for the application role.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMBEDDING_DIMENSIONS = 384
# Tables whose every row belongs to exactly one organisation.
ORG_TABLES = ("refresh_tokens", "api_keys", "documents", "chunks", "chats", "messages", "audit_log")


def _ts(name: str, *, nullable: bool = False, default: bool = True) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.text("now()") if default else None,
    )


def _org_fk(nullable: bool = False, ondelete: str = "CASCADE") -> sa.Column[object]:
    return sa.Column(
        "organization_id",
        sa.Uuid(),
        sa.ForeignKey("organizations.id", ondelete=ondelete),
        nullable=nullable,
    )


def _app_role() -> str:
    role = context.config.attributes.get("app_role", "foundry_app")
    if not isinstance(role, str) or not role.replace("_", "").isalnum():
        raise ValueError(f"invalid application role name: {role!r}")
    return role


def _create_tables() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_table(
        "memberships",
        _org_fk(),
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("organization_id", "user_id"),
        sa.CheckConstraint("role IN ('viewer', 'editor', 'admin')", name="role"),
    )
    op.create_index(None, "memberships", ["user_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _org_fk(),
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        _ts("session_started_at", default=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        _ts("created_at"),
        _ts("expires_at", default=False),
        _ts("used_at", nullable=True, default=False),
        _ts("revoked_at", nullable=True, default=False),
    )
    op.create_index(None, "refresh_tokens", ["family_id"])
    op.create_index(None, "refresh_tokens", ["user_id", "organization_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _org_fk(),
        sa.Column("created_by", sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("created_at"),
        _ts("last_used_at", nullable=True, default=False),
        _ts("expires_at", nullable=True, default=False),
        _ts("revoked_at", nullable=True, default=False),
        sa.CheckConstraint("role IN ('viewer', 'editor', 'admin')", name="role"),
    )
    op.create_index(None, "api_keys", ["organization_id"])
    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _org_fk(),
        sa.Column("uploaded_by", sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("mime_type", sa.String(127), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("error_code", sa.String(64)),
        sa.Column("page_count", sa.Integer()),
        sa.Column("chunk_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("processing_started_at", nullable=True, default=False),
        _ts("processed_at", nullable=True, default=False),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'ready', 'failed', 'deleted')", name="status"
        ),
        sa.UniqueConstraint("organization_id", "id"),
    )
    op.create_index(
        "ix_documents_organization_id_created_at_id",
        "documents",
        ["organization_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "uq_documents_organization_id_sha256_live",
        "documents",
        ["organization_id", "sha256"],
        unique=True,
        postgresql_where=sa.text("status <> 'deleted'"),
    )
    op.create_table(
        "chunks",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _org_fk(),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("page", sa.Integer()),
        sa.Column("char_start", sa.Integer(), nullable=False),
        sa.Column("char_end", sa.Integer(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("embedding", Vector(EMBEDDING_DIMENSIONS)),
        sa.Column(
            "tsv",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('english'::regconfig, text)", persisted=True),
        ),
        _ts("created_at"),
        sa.UniqueConstraint("document_id", "ordinal"),
        # Foreign keys bypass row-level security; the composite key keeps a chunk
        # inside its document's organisation.
        sa.ForeignKeyConstraint(
            ["organization_id", "document_id"],
            ["documents.organization_id", "documents.id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index(None, "chunks", ["organization_id", "document_id"])
    op.create_index(
        "ix_chunks_embedding_hnsw",
        "chunks",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.create_index("ix_chunks_tsv", "chunks", ["tsv"], postgresql_using="gin")
    op.create_table(
        "chats",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _org_fk(),
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("title", sa.String(200), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("organization_id", "id"),
    )
    op.create_index(
        "ix_chats_organization_id_user_id_updated_at",
        "chats",
        ["organization_id", "user_id", sa.text("updated_at DESC")],
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _org_fk(),
        sa.Column("chat_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(
            "sources", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")
        ),
        sa.Column("model", sa.String(100)),
        sa.Column("prompt_tokens", sa.Integer()),
        sa.Column("completion_tokens", sa.Integer()),
        sa.Column("latency_ms", sa.Integer()),
        sa.Column("degraded", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        _ts("created_at"),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="role"),
        sa.ForeignKeyConstraint(
            ["organization_id", "chat_id"],
            ["chats.organization_id", "chats.id"],
            ondelete="CASCADE",
        ),
    )
    op.create_index(None, "messages", ["chat_id", "created_at"])
    op.create_index(None, "messages", ["organization_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _org_fk(nullable=True, ondelete="SET NULL"),
        sa.Column("actor_user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(320)),
        sa.Column("ip", sa.String(64)),
        sa.Column("details", postgresql.JSONB()),
        _ts("created_at"),
    )
    op.create_index(
        "ix_audit_log_organization_id_created_at",
        "audit_log",
        ["organization_id", sa.text("created_at DESC")],
    )
    op.create_index(None, "audit_log", ["action", "created_at"])


def _enable_row_level_security(role: str) -> None:
    # Roles are the server's, while the migration lock is the database's: another
    # database on the same server may be creating this role (or granting it) right now,
    # and then ours waits for its commit and finds a duplicate; the role is there either way.
    # The connecting (owner) role switches to the app role for every tenant transaction.
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
            BEGIN
              CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
          END IF;
          BEGIN
            GRANT {role} TO CURRENT_USER;
          EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
          END;
        END $$;
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    op.execute(
        """
        CREATE FUNCTION app_current_organization() RETURNS uuid LANGUAGE sql STABLE AS
        $$ SELECT nullif(current_setting('app.organization_id', true), '')::uuid $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION app_current_user() RETURNS uuid LANGUAGE sql STABLE AS
        $$ SELECT nullif(current_setting('app.user_id', true), '')::uuid $$
        """
    )
    op.execute(
        f"GRANT EXECUTE ON FUNCTION app_current_organization(), app_current_user() TO {role}"
    )

    for table in ORG_TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_tenant ON {table} "
            "USING (organization_id = app_current_organization()) "
            "WITH CHECK (organization_id = app_current_organization())"
        )

    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON memberships TO {role}")
    op.execute("ALTER TABLE memberships ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY memberships_tenant ON memberships "
        "USING (organization_id = app_current_organization()) "
        "WITH CHECK (organization_id = app_current_organization())"
    )
    op.execute(
        "CREATE POLICY memberships_own ON memberships FOR SELECT "
        "USING (user_id = app_current_user())"
    )

    op.execute(f"GRANT SELECT, UPDATE ON organizations TO {role}")
    op.execute("ALTER TABLE organizations ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY organizations_tenant ON organizations "
        "USING (id = app_current_organization()) WITH CHECK (id = app_current_organization())"
    )
    op.execute(
        "CREATE POLICY organizations_own ON organizations FOR SELECT USING (EXISTS ("
        "SELECT 1 FROM memberships m WHERE m.organization_id = organizations.id "
        "AND m.user_id = app_current_user()))"
    )

    op.execute(f"GRANT SELECT, UPDATE ON users TO {role}")
    op.execute("ALTER TABLE users ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY users_visible ON users FOR SELECT USING ("
        "id = app_current_user() OR EXISTS (SELECT 1 FROM memberships m "
        "WHERE m.user_id = users.id AND m.organization_id = app_current_organization()))"
    )
    op.execute(
        "CREATE POLICY users_self_update ON users FOR UPDATE "
        "USING (id = app_current_user()) WITH CHECK (id = app_current_user())"
    )


def upgrade() -> None:
    _create_tables()
    _enable_row_level_security(_app_role())


def downgrade() -> None:
    role = _app_role()
    for table in (
        "audit_log",
        "messages",
        "chats",
        "chunks",
        "documents",
        "api_keys",
        "refresh_tokens",
        "memberships",
        "users",
        "organizations",
    ):
        op.drop_table(table)
    op.execute("DROP FUNCTION IF EXISTS app_current_organization()")
    op.execute("DROP FUNCTION IF EXISTS app_current_user()")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}")
