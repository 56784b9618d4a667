"""The chat writes of an answer (chat_turns.py): the user's own chat only, one
transaction per turn, the chat held against a delete until the question is stored,
what is stored reads back through the unit of work, and SERVICE_UNAVAILABLE (never
INTERNAL) when the database cannot serve."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from domain.answers.ports import Turn
from domain.chats.entities import Chat, Message, MessageRole, Source, Usage
from domain.entities import Principal
from domain.errors import NotFound, ServiceUnavailable
from infrastructure.container import Container
from infrastructure.database.chat_turns import SqlChatTurn
from infrastructure.embedded import EmbeddedPostgres
from tests.helpers import terminate_backend
from tests.integration.test_chunk_search import member


def message(chat: Chat, role: MessageRole, content: str, **extra: object) -> Message:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "chat_id": chat.id,
        "organization_id": chat.organization_id,
        "role": role,
        "content": content,
        "sources": [],
        "created_at": datetime.now(UTC),
        **extra,
    }
    return Message(**fields)  # type: ignore[arg-type]


async def stored(container: Container, principal: Principal, chat: Chat) -> list[Message]:
    pages = await container.services.chats.messages(principal, [chat.id], 50, None)
    return pages[chat.id].items


async def test_a_turn_reaches_only_its_users_own_chat(container: Container) -> None:
    owner = await member(container)
    colleague = await member(container, owner.organization_id)
    stranger = await member(container)
    chat = await container.services.chats.create(owner, "mine")
    async with container.uow_factory.chat_turn(owner) as turn:
        assert await turn.append(message(chat, MessageRole.USER, "first")) is not None
        await turn.commit()

    for other in (colleague, stranger):
        async with container.uow_factory.chat_turn(other) as turn:
            assert await turn.lock_chat(chat.id) is None
            assert await turn.history(chat.id, 10) == []
            # The owner's chat id in a message of the caller's own organisation.
            intruding = replace(
                message(chat, MessageRole.USER, "intruder"), organization_id=other.organization_id
            )
            assert await turn.append(intruding) is None
            if other.organization_id != owner.organization_id:  # and one of the owner's
                with pytest.raises(ValueError, match="another organisation"):
                    await turn.append(message(chat, MessageRole.USER, "intruder"))
            await turn.commit()
    assert [m.content for m in await stored(container, owner, chat)] == ["first"]
    assert (await container.services.chats.get(owner, chat.id)) is not None


async def test_a_turn_keeps_nothing_unless_committed_and_reads_back_what_it_wrote(
    container: Container,
) -> None:
    principal = await member(container)
    chat = await container.services.chats.create(principal, None)
    later = chat.updated_at + timedelta(minutes=5)
    question = message(chat, MessageRole.USER, "Wie geht's? ✓", created_at=later)
    async with container.uow_factory.chat_turn(principal) as turn:
        assert await turn.append(question, title="Wie geht's?") is not None
    assert await stored(container, principal, chat) == []  # left without a commit

    async with container.uow_factory.chat_turn(principal) as turn:
        locked = await turn.lock_chat(chat.id)
        assert locked is not None and locked[0] == chat
        assert await turn.history(chat.id, 10) == []
        touched = await turn.append(question, title="Wie geht's?")
        await turn.commit()
    assert touched is not None
    assert (touched.title, touched.updated_at) == ("Wie geht's?", later)

    source = Source(1, uuid.uuid4(), uuid.uuid4(), 3, "a snippet «quoted»", 0.5)
    usage = Usage("extractive", 120, 30, 42, True)
    answer = message(
        chat, MessageRole.ASSISTANT, "An answer [1].", sources=[source], usage=usage,
        created_at=later + timedelta(seconds=1),
    )  # fmt: skip
    async with container.uow_factory.chat_turn(principal) as turn:
        touched = await turn.append(answer)  # no title: the chat keeps its own
        await turn.commit()
    assert touched is not None and touched.title == "Wie geht's?"

    assert await stored(container, principal, chat) == [question, answer]
    async with container.uow_factory.chat_turn(principal) as turn:
        assert await turn.history(chat.id, 10) == [
            Turn(MessageRole.USER, "Wie geht's? ✓"),
            Turn(MessageRole.ASSISTANT, "An answer [1]."),
        ]
        assert await turn.history(chat.id, 1) == [Turn(MessageRole.ASSISTANT, "An answer [1].")]
        assert await turn.history(chat.id, 0) == []


async def test_a_locked_chat_is_deleted_only_after_the_turn_commits(
    container: Container,
) -> None:
    principal = await member(container)
    chat = await container.services.chats.create(principal, None)
    async with container.uow_factory.chat_turn(principal) as turn:
        assert await turn.lock_chat(chat.id) is not None
        deleting = asyncio.create_task(container.services.chats.delete(principal, chat.id))
        done, _ = await asyncio.wait([deleting], timeout=0.5)
        assert not done  # waiting for the lock
        await turn.append(message(chat, MessageRole.USER, "a question"))
        await turn.commit()
    assert await deleting
    assert await container.services.chats.get(principal, chat.id) is None
    # An answer written after the delete finds no chat and stores nothing.
    async with container.uow_factory.chat_turn(principal) as turn:
        assert await turn.append(message(chat, MessageRole.ASSISTANT, "late")) is None
    with pytest.raises(NotFound):
        await container.services.answers.ask(principal, chat.id, "Anyone there?")


async def test_a_connection_lost_in_a_turn_is_service_unavailable_and_replaced(
    container: Container, embedded_postgres: EmbeddedPostgres
) -> None:
    principal = await member(container)
    chat = await container.services.chats.create(principal, None)
    with pytest.raises(ServiceUnavailable):
        async with container.uow_factory.chat_turn(principal) as turn:
            assert isinstance(turn, SqlChatTurn)
            await terminate_backend(turn.connection(), embedded_postgres.admin_dsn)
            await turn.append(message(chat, MessageRole.USER, "lost"))
            await turn.commit()
    async with container.uow_factory.chat_turn(principal) as turn:
        assert await turn.append(message(chat, MessageRole.USER, "kept")) is not None
        await turn.commit()
    assert [m.content for m in await stored(container, principal, chat)] == ["kept"]


async def test_a_turn_whose_transaction_failed_does_not_report_a_commit(
    container: Container,
) -> None:
    principal = await member(container)
    chat = await container.services.chats.create(principal, None)
    with pytest.raises(RuntimeError, match="rolled back"):
        async with container.uow_factory.chat_turn(principal) as turn:
            assert isinstance(turn, SqlChatTurn)
            await turn.append(message(chat, MessageRole.USER, "lost"))
            with pytest.raises(asyncpg.PostgresError):
                await turn.connection().execute("SELECT 1 / 0")
            await turn.commit()
    assert await stored(container, principal, chat) == []


async def test_a_turn_timed_before_the_last_is_stored_after_it(
    container: Container,
) -> None:
    """Two turns of one chat read the clock, then commit in the other order (or two
    replicas' clocks disagree): the later-stored message still sorts after the first,
    and the chat never moves back."""
    principal = await member(container)
    chat = await container.services.chats.create(principal, None)
    later = chat.updated_at + timedelta(minutes=5)
    first = message(chat, MessageRole.USER, "first", created_at=later)
    second = message(chat, MessageRole.ASSISTANT, "second", created_at=later - timedelta(minutes=1))
    for turn_message in (first, second):
        async with container.uow_factory.chat_turn(principal) as turn:
            touched = await turn.append(turn_message)
            await turn.commit()
    # Stored a microsecond after the first; the chat's updated_at is that time.
    assert touched is not None and touched.updated_at == later + timedelta(microseconds=1)
    current = await container.services.chats.get(principal, chat.id)
    assert current is not None and current.updated_at == later + timedelta(microseconds=1)
    assert await stored(container, principal, chat) == [
        first,
        replace(second, created_at=later + timedelta(microseconds=1)),
    ]


async def test_a_turn_is_stored_after_the_last_message_even_if_a_rename_moved_the_chat_back(
    container: Container,
) -> None:
    principal = await member(container)
    chat = await container.services.chats.create(principal, None)
    later = chat.updated_at + timedelta(minutes=5)
    async with container.uow_factory.chat_turn(principal) as turn:
        await turn.append(message(chat, MessageRole.USER, "first", created_at=later))
        await turn.commit()
    # A rename on a replica whose clock is an hour behind.
    async with container.uow_factory.tenant(principal) as uow:
        assert await uow.chats.update(chat.id, later - timedelta(hours=1), "Renamed")
        await uow.commit()
    async with container.uow_factory.chat_turn(principal) as turn:
        behind = message(chat, MessageRole.ASSISTANT, "second", created_at=later)
        touched = await turn.append(behind)
        await turn.commit()
    assert touched is not None and touched.updated_at == later + timedelta(microseconds=1)
    assert [m.content for m in await stored(container, principal, chat)] == ["first", "second"]
