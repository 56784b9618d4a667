"""A failed duplicate INSERT must leave the transaction usable (the upload race path)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from domain.entities import Document, DocumentStatus, Principal, Role
from domain.errors import DuplicateDocument, EmailTaken, ServiceUnavailable
from domain.services.accounts import RequestOrigin
from infrastructure.container import BackendUrls, Container
from infrastructure.database.engine import create_session_factory
from infrastructure.database.reader import ReaderPool, connect_target
from infrastructure.database.uow import SqlUnitOfWorkFactory, UnitOfWorkOptions
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


async def _corpus_version(container: Container, principal: Principal) -> str:
    """As an answer reads it: with the chat it is asked in, locked."""
    chat = await container.services.chats.create(principal, None)
    async with container.uow_factory.chat_turn(principal) as turn:
        locked = await turn.lock_chat(chat.id)
    assert locked is not None
    return locked[1]


async def test_the_corpus_version_moves_with_each_commit_that_changes_what_search_sees(
    container: Container,
) -> None:
    principals = []
    for _ in range(2):
        session = await container.services.accounts.sign_up(
            unique_email(), PASSWORD, None, RequestOrigin()
        )
        principals.append(
            Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())
        )
    principal, bystander = principals
    first, second = (_document(principal, uuid.uuid4().hex * 2) for _ in range(2))
    bystanders = await _corpus_version(container, bystander)
    seen = [await _corpus_version(container, principal)]

    async def changed() -> bool:
        now = await _corpus_version(container, principal)
        moved = now != seen[-1]
        seen.append(now)
        return moved

    async with container.uow_factory.tenant(principal) as uow:
        await uow.documents.add(first)
        await uow.documents.add(second)
        await uow.commit()
    assert not await changed()  # pending documents are not searched
    now = datetime.now(UTC)
    async with container.uow_factory.organization(principal.organization_id) as uow:
        assert await uow.documents.claim(first.id, now) is not None
        assert await uow.documents.claim(second.id, now) is not None
        await uow.commit()
    assert not await changed()
    # The second document is READY first, stamped later; the first one commits after it
    # with an earlier stamp (two workers whose transactions overlapped): both count.
    async with container.uow_factory.organization(principal.organization_id) as uow:
        await uow.documents.mark_ready(second.id, 3, 1, now)
        await uow.commit()
    assert await changed()
    async with container.uow_factory.organization(principal.organization_id) as uow:
        await uow.documents.mark_ready(first.id, 2, 1, now - timedelta(minutes=1))
        await uow.commit()
    assert await changed()
    async with container.uow_factory.tenant(principal) as uow:
        assert await uow.documents.mark_deleted(first.id, now) is not None
        await uow.commit()
    assert await changed()
    # A transaction that rolls back moves nothing.
    async with container.uow_factory.tenant(principal) as uow:
        assert await uow.documents.mark_deleted(second.id, now) is not None
    assert not await changed()
    assert len(set(seen)) == 4
    assert await _corpus_version(container, bystander) == bystanders


async def test_finishing_a_document_does_not_wait_for_other_writers_of_the_organisation(
    container: Container,
) -> None:
    """The version bump must not conflict with the key-share locks that inserting rows
    referencing the organisation hold: with FOR UPDATE two workers finishing documents
    of one organisation deadlocked."""
    session = await container.services.accounts.sign_up(
        unique_email(), PASSWORD, None, RequestOrigin()
    )
    principal = Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())
    finishing = _document(principal, uuid.uuid4().hex * 2)
    now = datetime.now(UTC)
    async with container.uow_factory.organization(principal.organization_id) as uow:
        await uow.documents.add(finishing)
        assert await uow.documents.claim(finishing.id, now) is not None
        await uow.commit()
    before = await _corpus_version(container, principal)

    async def finish() -> None:
        async with container.uow_factory.organization(principal.organization_id) as uow:
            await uow.documents.mark_ready(finishing.id, 1, 1, now)
            await uow.commit()

    # An upload still open holds a key-share lock on the organisation's row.
    async with container.uow_factory.tenant(principal) as uploading:
        await uploading.documents.add(_document(principal, uuid.uuid4().hex * 2))
        await asyncio.wait_for(finish(), timeout=10)
        await uploading.commit()
    assert await _corpus_version(container, principal) != before


async def test_an_exhausted_pool_is_service_unavailable(urls: BackendUrls) -> None:
    """Every connection busy for the pool's whole timeout: SERVICE_UNAVAILABLE, not INTERNAL."""
    engine = create_async_engine(urls.database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    readers = ReaderPool(
        connect_target(engine),
        1,
        app_role="foundry_app",
        hnsw_ef_search=100,
        fulltext_max_ranked=500,
    )
    factory = SqlUnitOfWorkFactory(create_session_factory(engine), UnitOfWorkOptions(), readers)
    try:
        async with engine.connect() as held:  # the only connection
            await held.execute(text("SELECT 1"))
            with pytest.raises(ServiceUnavailable):
                async with factory.system() as uow:
                    await uow.session.execute(text("SELECT 1"))
        async with factory.system() as uow:  # free again
            assert (await uow.session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await readers.aclose()
        await engine.dispose()
