"""Chats: create, rename, delete, list, and their messages. A chat is its owner's alone."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID, uuid4

from domain.chats.entities import Chat, ChatPage, MessagePage
from domain.entities import Principal
from domain.errors import NotFound, ValidationFailed
from domain.ports import Clock, UnitOfWorkFactory
from domain.services.cursors import decode_cursor

DEFAULT_TITLE = "New chat"
MAX_TITLE_CHARS = 200
MAX_CHATS_PAGE = 100
MAX_MESSAGES_PAGE = 200


def clean_title(title: str) -> str:
    cleaned = " ".join(title.split())
    if not cleaned:
        raise ValidationFailed("The title is empty.", field="title")
    if len(cleaned) > MAX_TITLE_CHARS:
        raise ValidationFailed(
            f"The title is longer than {MAX_TITLE_CHARS} characters.", field="title"
        )
    return cleaned


def title_from_question(question: str) -> str:
    """A chat named after its first question, cut at a word near 80 characters."""
    words = " ".join(question.split())
    if len(words) <= 80:
        return words
    cut = words[:80].rsplit(" ", 1)[0] or words[:80]
    return cut + "…"


class ChatService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    async def create(self, principal: Principal, title: str | None) -> Chat:
        now = self._clock.now()
        chat = Chat(
            id=uuid4(),
            organization_id=principal.organization_id,
            user_id=principal.user_id,
            title=clean_title(title) if title is not None else DEFAULT_TITLE,
            created_at=now,
            updated_at=now,
        )
        async with self._uow_factory.tenant(principal) as uow:
            await uow.chats.add(chat)
            await uow.commit()
        return chat

    async def rename(self, principal: Principal, chat_id: UUID, title: str) -> Chat:
        cleaned = clean_title(title)
        async with self._uow_factory.tenant(principal) as uow:
            chat = await uow.chats.update(chat_id, self._clock.now(), title=cleaned)
            if chat is None:
                raise NotFound("No such chat.")
            await uow.commit()
        return chat

    async def delete(self, principal: Principal, chat_id: UUID) -> bool:
        """Delete the chat and all its messages."""
        async with self._uow_factory.tenant(principal) as uow:
            if not await uow.chats.delete(chat_id):
                raise NotFound("No such chat.")
            await uow.commit()
        return True

    async def get(self, principal: Principal, chat_id: UUID) -> Chat | None:
        async with self._uow_factory.tenant(principal) as uow:
            return await uow.chats.get(chat_id)

    async def list(self, principal: Principal, first: int, after: str | None) -> ChatPage:
        if not 0 <= first <= MAX_CHATS_PAGE:
            raise ValidationFailed(f"first must be between 0 and {MAX_CHATS_PAGE}.", field="first")
        cursor = decode_cursor(after) if after else None
        async with self._uow_factory.tenant(principal) as uow:
            return await uow.chats.list(first, cursor)

    async def messages(
        self, principal: Principal, chat_ids: Sequence[UUID], first: int, after: str | None
    ) -> dict[UUID, MessagePage]:
        """A page of each chat's messages, oldest first (chats not the caller's get none)."""
        if not 0 <= first <= MAX_MESSAGES_PAGE:
            raise ValidationFailed(
                f"first must be between 0 and {MAX_MESSAGES_PAGE}.", field="first"
            )
        cursor = decode_cursor(after) if after else None
        async with self._uow_factory.tenant(principal) as uow:
            return await uow.messages.pages(chat_ids, first, cursor)
