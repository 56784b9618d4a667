"""Repositories of chats and messages; both see only the transaction's user's chats."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

from domain.answers.ports import Turn
from domain.chats.entities import Chat, ChatPage, Message, MessagePage


class ChatRepository(Protocol):
    async def add(self, chat: Chat) -> None: ...

    async def get(self, chat_id: UUID) -> Chat | None:
        """The chat if it belongs to the transaction's user (None otherwise)."""
        ...

    async def list(self, first: int, after: tuple[datetime, UUID] | None) -> ChatPage:
        """The user's chats, most recently active first."""
        ...

    async def update(self, chat_id: UUID, at: datetime, title: str | None = None) -> Chat | None:
        """Set ``updated_at`` (and the title when given); None for someone else's chat."""
        ...

    async def delete(self, chat_id: UUID) -> bool: ...


class MessageRepository(Protocol):
    """Reads only: an answer writes its messages through a :class:`ChatTurnWriter`."""

    async def pages(
        self, chat_ids: Sequence[UUID], first: int, after: tuple[datetime, UUID] | None
    ) -> dict[UUID, MessagePage]:
        """One page of messages (oldest first) for each chat, in one query."""
        ...


class ChatTurnWriter(Protocol):
    """One transaction of a user's that writes one turn of a chat (the question, or the
    answer): what an answer needs of its chat, in as few round trips as possible.
    Nothing is kept unless :meth:`commit` is called."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def lock_chat(self, chat_id: UUID) -> tuple[Chat, str] | None:
        """The chat, held until the transaction ends (no delete or rename in between),
        and its organisation's corpus version; None if it is not the user's.

        The corpus version changes with every committed change to what search sees of
        the organisation's documents (a document becoming READY, or a READY one
        changing or going), in commit order."""
        ...

    async def history(self, chat_id: UUID, limit: int) -> list[Turn]:
        """The chat's last ``limit`` messages, oldest first."""
        ...

    async def append(self, message: Message, title: str | None = None) -> Chat | None:
        """Store ``message`` and move its chat's ``updated_at`` to the message's time
        (and set the title when given); None, storing nothing, when the chat is not the
        user's or is gone.

        The message is stored at its ``created_at`` or, if that is not after the
        chat's last message and ``updated_at`` (a clock behind another's, or stepped
        back), a microsecond after them, so messages sort in the order they were
        stored. The returned chat's ``updated_at`` is the time it was stored at."""
        ...

    async def commit(self) -> None: ...
