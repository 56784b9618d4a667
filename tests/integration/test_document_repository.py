"""A failed duplicate INSERT must leave the transaction usable (the upload race path)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from domain.entities import Document, DocumentStatus, Principal, Role
from domain.errors import DuplicateDocument, EmailTaken
from domain.services.accounts import RequestOrigin
from infrastructure.container import Container
from tests.helpers import PASSWORD, unique_email


def _document(principal: Principal, sha256: str) -> Document:
    now = datetime.now(UTC)
    document_id = uuid.uuid4()
    return Document(
        id=document_id,
        organization_id=principal.organization_id,
        uploaded_by=principal.user_id,
        filename="a.txt",
        mime_type="text/plain",
        size_bytes=1,
        sha256=sha256,
        storage_key=f"{principal.organization_id}/{document_id}",
        status=DocumentStatus.PENDING,
        error_code=None,
        page_count=None,
        chunk_count=0,
        attempts=0,
        created_at=now,
        updated_at=now,
        processed_at=None,
    )


async def test_duplicate_insert_keeps_the_transaction_usable(container: Container) -> None:
    session = await container.services.accounts.sign_up(
        unique_email(), PASSWORD, None, RequestOrigin()
    )
    principal = Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())
    sha = uuid.uuid4().hex * 2
    first = _document(principal, sha)
    async with container.uow_factory.tenant(principal) as uow:
        await uow.documents.add(first)
        await uow.commit()
    async with container.uow_factory.tenant(principal) as uow:
        with pytest.raises(DuplicateDocument):
            await uow.documents.add(replace(_document(principal, sha)))
        existing = await uow.documents.find_live_by_sha256(sha)
    assert existing is not None and existing.id == first.id


async def test_duplicate_email_insert_is_email_taken(container: Container) -> None:
    email = unique_email()
    await container.services.accounts.sign_up(email, PASSWORD, None, RequestOrigin())
    async with container.uow_factory.system() as uow:
        user = await uow.users.find_by_email(email)
        assert user is not None
        with pytest.raises(EmailTaken):
            await uow.users.add(replace(user, id=uuid.uuid4()), "hash")
        assert await uow.users.find_by_email(email) == user
