"""Document writes check the membership as it is now, not only the token's role.

A removal or a lowered role reaches access tokens through Redis (session revocations).
Should Redis lose those (a restart without persistence, a failover), an old token still
carries its old role for up to its lifetime; the database must still refuse the write.
Here the membership is changed in the database directly, as if Redis never heard."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, update

from domain.entities import Principal, Role
from domain.errors import Forbidden
from domain.services.accounts import RequestOrigin
from infrastructure.container import Container
from infrastructure.database.models import MembershipRow
from tests.helpers import PASSWORD, unique_email
from tests.integration.test_worker_recovery import _incoming


async def _team(container: Container) -> tuple[Principal, Principal, uuid.UUID]:
    """An admin, an editor's principal as their token states it, and a READY-or-not
    document the admin uploaded."""
    origin = RequestOrigin()
    accounts = container.services.accounts
    owner = await accounts.sign_up(unique_email(), PASSWORD, None, origin)
    member = await accounts.sign_up(unique_email(), PASSWORD, None, origin)
    admin = Principal(owner.user.id, owner.organization.id, Role.ADMIN, uuid.uuid4())
    await container.services.organizations.add_member(
        admin, member.user.email, Role.EDITOR, ip=None
    )
    editor = Principal(member.user.id, owner.organization.id, Role.EDITOR, uuid.uuid4())
    [result] = await container.services.documents.upload(
        admin, [_incoming("kept.txt", f"kept {uuid.uuid4()}".encode())], ip=None
    )
    assert result.document is not None
    return admin, editor, result.document.id


async def _writes(container: Container, editor: Principal, document_id: uuid.UUID) -> None:
    documents = container.services.documents
    with pytest.raises(Forbidden):
        await documents.upload(editor, [_incoming("new.txt", b"new text")], ip=None)
    with pytest.raises(Forbidden):
        await documents.reprocess(editor, document_id, ip=None)
    with pytest.raises(Forbidden):
        await documents.delete(editor, document_id, ip=None)


async def test_an_editor_lowered_to_viewer_behind_redis_back_cannot_write(
    container: Container,
) -> None:
    admin, editor, document_id = await _team(container)
    # The old token still works while the membership says editor.
    assert (await container.services.documents.reprocess(editor, document_id, ip=None)).id == (
        document_id
    )
    async with container.session_factory() as session:
        await session.execute(
            update(MembershipRow)
            .where(
                MembershipRow.user_id == editor.user_id,
                MembershipRow.organization_id == editor.organization_id,
            )
            .values(role=Role.VIEWER.value)
        )
        await session.commit()

    await _writes(container, editor, document_id)
    assert (await container.services.documents.get(admin, document_id)) is not None


async def test_a_member_removed_behind_redis_back_cannot_write(container: Container) -> None:
    admin, editor, document_id = await _team(container)
    async with container.session_factory() as session:
        await session.execute(
            delete(MembershipRow).where(
                MembershipRow.user_id == editor.user_id,
                MembershipRow.organization_id == editor.organization_id,
            )
        )
        await session.commit()

    await _writes(container, editor, document_id)
    assert (await container.services.documents.get(admin, document_id)) is not None
