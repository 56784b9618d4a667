"""Chats and their messages: one user's conversation inside one organisation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True, slots=True)
class Chat:
    id: UUID
    organization_id: UUID
    user_id: UUID
    title: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Source:
    """A passage an answer rests on; ``index`` is the number its ``[n]`` citations use."""

    index: int
    document_id: UUID
    chunk_id: UUID
    page: int | None
    snippet: str
    score: float


@dataclass(frozen=True, slots=True)
class Usage:
    """What producing an answer took."""

    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    degraded: bool


@dataclass(frozen=True, slots=True)
class Message:
    id: UUID
    chat_id: UUID
    organization_id: UUID
    role: MessageRole
    content: str
    sources: list[Source]
    created_at: datetime
    usage: Usage | None = None

    @property
    def degraded(self) -> bool:
        return self.usage.degraded if self.usage else False


@dataclass(frozen=True, slots=True)
class ChatPage:
    items: list[Chat]
    has_next_page: bool


@dataclass(frozen=True, slots=True)
class MessagePage:
    """Messages oldest first."""

    items: list[Message]
    has_next_page: bool
