"""PostgreSQL row-level security: a query that forgets the organisation filter still
sees only the current organisation's rows, and cannot write into another's."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from domain.entities import Membership, Organization, Principal, Role, User
from infrastructure.container import Container
from infrastructure.database.models import (
    ApiKeyRow,
    AuditLogRow,
    Base,
    ChatRow,
    ChunkRow,
    DocumentRow,
    MessageRow,
    RefreshTokenRow,
    UserRow,
)
from infrastructure.database.uow import SqlUnitOfWork


async def _organization_with_data(container: Container, name: str) -> Principal:
    now = datetime.now(UTC)
    user = User(uuid.uuid4(), f"{uuid.uuid4().hex[:10]}@example.com", now)
    org = Organization(uuid.uuid4(), name, now)
    document_id = uuid.uuid4()
    uow = container_uow(container, None)
    async with uow:
        await uow.users.add(user, "not-a-real-hash")
        await uow.organizations.add(org)
        await uow.memberships.add(Membership(user.id, org.id, Role.ADMIN, now))
        uow.session.add(
            DocumentRow(
                id=document_id,
                organization_id=org.id,
                uploaded_by=user.id,
                filename=f"{name}.txt",
                mime_type="text/plain",
                size_bytes=5,
                sha256=hashlib.sha256(name.encode()).hexdigest(),
                storage_key=str(document_id),
                status="ready",
            )
        )
        await uow.session.flush()
        uow.session.add(
            ChunkRow(
                id=uuid.uuid4(),
                organization_id=org.id,
                document_id=document_id,
                ordinal=0,
                text=f"secret plans of {name}",
                char_start=0,
                char_end=20,
                token_count=5,
                embedding=[0.1] * 384,
            )
        )
        uow.session.add(AuditLogRow(id=uuid.uuid4(), organization_id=org.id, action="test.seed"))
        uow.session.add(
            RefreshTokenRow(
                id=uuid.uuid4(),
                organization_id=org.id,
                user_id=user.id,
                family_id=uuid.uuid4(),
                session_started_at=now,
                token_hash=uuid.uuid4().hex,
                expires_at=now + timedelta(days=1),
            )
        )
        uow.session.add(
            ApiKeyRow(
                id=uuid.uuid4(),
                organization_id=org.id,
                created_by=user.id,
                name=f"{name} key",
                key_prefix="kf_test",
                key_hash=uuid.uuid4().hex,
                role="viewer",
            )
        )
        chat_id = uuid.uuid4()
        uow.session.add(ChatRow(id=chat_id, organization_id=org.id, user_id=user.id, title=name))
        await uow.session.flush()
        uow.session.add(
            MessageRow(
                id=uuid.uuid4(), organization_id=org.id, chat_id=chat_id, role="user", content=name
            )
        )
        await uow.commit()
    return Principal(user.id, org.id, Role.ADMIN, uuid.uuid4())


def container_uow(container: Container, principal: Principal | None) -> SqlUnitOfWork:
    factory = container.services.organizations._uow_factory  # the same factory the services use
    uow = factory.tenant(principal) if principal else factory.system()
    assert isinstance(uow, SqlUnitOfWork)
    return uow


# Every table whose rows belong to an organisation, and the column saying which.
TENANT_TABLES = {
    "organizations": "id",
    "memberships": "organization_id",
    "refresh_tokens": "organization_id",
    "api_keys": "organization_id",
    "documents": "organization_id",
    "chunks": "organization_id",
    "chats": "organization_id",
    "messages": "organization_id",
    "audit_log": "organization_id",
}


@pytest.fixture(scope="module")
async def two_organizations(container: Container) -> tuple[Principal, Principal]:
    """Two organisations with a row of their own in every tenant table."""
    return (
        await _organization_with_data(container, "alpha"),
        await _organization_with_data(container, "beta"),
    )


async def test_every_table_with_an_organization_is_checked(container: Container) -> None:
    async with container_uow(container, None) as uow:
        tables = await uow.session.scalars(
            text(
                "SELECT table_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND column_name = 'organization_id'"
            )
        )
        found = set(tables.all())
    assert found | {"organizations"} == set(TENANT_TABLES)


@pytest.mark.parametrize("table", sorted(TENANT_TABLES))
async def test_a_forgotten_filter_still_returns_only_the_current_organizations_rows(
    container: Container, two_organizations: tuple[Principal, Principal], table: str
) -> None:
    alpha, beta = two_organizations
    owner = Base.metadata.tables[table].c[TENANT_TABLES[table]]
    async with container_uow(container, alpha) as uow:
        # Deliberately no WHERE organization_id = ...: RLS must do it.
        seen = set((await uow.session.scalars(select(owner).distinct())).all())
    assert seen == {alpha.organization_id}
    # The system connection (the table owner) does see the other organisation's row.
    async with container_uow(container, None) as uow:
        theirs = await uow.session.scalar(
            select(func.count()).select_from(owner.table).where(owner == beta.organization_id)
        )
    assert theirs == 1


async def test_a_forgotten_filter_shows_only_the_organizations_members_and_chunks(
    container: Container, two_organizations: tuple[Principal, Principal]
) -> None:
    alpha, _ = two_organizations
    async with container_uow(container, alpha) as uow:
        chunks = (await uow.session.scalars(select(ChunkRow.text))).all()
        users = (await uow.session.scalars(select(UserRow.id))).all()
    assert chunks == ["secret plans of alpha"]
    assert users == [alpha.user_id]


async def test_explicit_filter_for_another_organization_finds_nothing(container: Container) -> None:
    alpha = await _organization_with_data(container, "alpha2")
    beta = await _organization_with_data(container, "beta2")
    async with container_uow(container, alpha) as uow:
        stolen = await uow.session.scalars(
            select(DocumentRow).where(DocumentRow.organization_id == beta.organization_id)
        )
        assert stolen.all() == []
        updated = await uow.session.execute(
            text("UPDATE documents SET filename = 'pwned' WHERE organization_id = :org"),
            {"org": beta.organization_id},
        )
        assert updated.rowcount == 0  # type: ignore[attr-defined]


async def test_cannot_write_rows_into_another_organization(container: Container) -> None:
    alpha = await _organization_with_data(container, "alpha3")
    beta = await _organization_with_data(container, "beta3")
    with pytest.raises(DBAPIError, match="row-level security"):
        async with container_uow(container, alpha) as uow:
            uow.session.add(
                AuditLogRow(id=uuid.uuid4(), organization_id=beta.organization_id, action="x")
            )
            await uow.session.flush()


async def test_rows_cannot_point_into_another_organization(container: Container) -> None:
    """Foreign keys bypass RLS; composite keys keep children in their parent's organisation."""
    alpha = await _organization_with_data(container, "alpha6")
    beta = await _organization_with_data(container, "beta6")
    async with container_uow(container, None) as uow:
        beta_document = await uow.session.scalar(
            select(DocumentRow.id).where(DocumentRow.organization_id == beta.organization_id)
        )
    with pytest.raises(DBAPIError, match="foreign key"):
        async with container_uow(container, alpha) as uow:
            uow.session.add(
                ChunkRow(
                    id=uuid.uuid4(),
                    organization_id=alpha.organization_id,
                    document_id=beta_document,
                    ordinal=99,
                    text="planted",
                    char_start=0,
                    char_end=7,
                    token_count=1,
                )
            )
            await uow.session.flush()


async def test_app_role_does_not_bypass_row_level_security(container: Container) -> None:
    alpha = await _organization_with_data(container, "alpha4")
    async with container_uow(container, alpha) as uow:
        who = await uow.session.scalar(text("SELECT current_user"))
        flags = (
            await uow.session.execute(
                text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            )
        ).one()
        enabled = await uow.session.scalars(
            text("SELECT relname FROM pg_class WHERE relrowsecurity AND relname = ANY(:names)"),
            {
                "names": [
                    "documents",
                    "chunks",
                    "chats",
                    "messages",
                    "audit_log",
                    "memberships",
                    "organizations",
                    "refresh_tokens",
                    "api_keys",
                    "users",
                ]
            },
        )
        assert len(enabled.all()) == 10
    assert who == "foundry_app"
    assert tuple(flags) == (False, False)


async def test_tenant_setting_does_not_leak_past_the_transaction(container: Container) -> None:
    alpha = await _organization_with_data(container, "alpha5")
    async with container_uow(container, alpha) as uow:
        await uow.session.scalar(text("SELECT 1"))
    async with container_uow(container, None) as uow:
        current_org = await uow.session.scalar(
            text("SELECT current_setting('app.organization_id', true)")
        )
        role = await uow.session.scalar(text("SELECT current_user"))
    assert current_org in (None, "")
    assert role != "foundry_app"
