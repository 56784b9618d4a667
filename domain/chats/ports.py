"""Repositories of chats and messages; both see only the transaction's user's chats."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.chats.entities import Chat, ChatPage, Message, MessagePage


class ChatRepository(Protocol):
    async def add(self, chat: Chat) -> None: ...

    async def get(self, chat_id: UUID, *, lock: bool = False) -> Chat | None:
        """The chat if it belongs to the transaction's user (None otherwise); ``lock``
        holds it until the transaction ends (no delete or rename in between)."""
        ...

    async def list(self, first: int, after: tuple[datetime, UUID] | None) -> ChatPage:
        """The user's chats, most recently active first."""
        ...

    async def update(self, chat_id: UUID, at: datetime, title: str | None = None) -> Chat | None:
        """Set ``updated_at`` (and the title when given); None for someone else's chat."""
        ...

    async def delete(self, chat_id: UUID) -> bool: ...


class MessageRepository(Protocol):
    async def add(self, message: Message) -> None: ...

    async def pages(
        self, chat_ids: Sequence[UUID], first: int, after: tuple[datetime, UUID] | None
    ) -> dict[UUID, MessagePage]:
        """One page of messages (oldest first) for each chat, in one query."""
        ...

    async def recent(self, chat_id: UUID, limit: int) -> list[Message]:
        """The chat's last ``limit`` messages, oldest first."""
        ...
