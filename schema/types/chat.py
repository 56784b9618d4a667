from __future__ import annotations

from datetime import datetime
from enum import Enum
from uuid import UUID

import strawberry

from domain.chats.entities import Chat as DomainChat
from domain.chats.entities import Message as DomainMessage
from domain.chats.entities import Source as DomainSource
from domain.entities import Document as DomainDocument
from domain.errors import NotFound
from domain.services.cursors import encode_cursor
from schema.context import Info
from schema.types.document import Document
from schema.types.page_info import MESSAGES_PAGE, PageInfo, page_size


@strawberry.enum
class MessageRole(Enum):
    USER = "user"
    ASSISTANT = "assistant"


@strawberry.type(description="A passage an answer rests on; `index` is its [n] in the text.")
class Source:
    index: int
    page: int | None
    snippet: str
    score: float
    chunk_id: strawberry.ID
    document_id: strawberry.Private[UUID]
    known_document: strawberry.Private[DomainDocument | None]

    @strawberry.field
    async def document(self, info: Info) -> Document:
        found = self.known_document or await info.context.loaders.document.load(self.document_id)
        if found is None:
            raise NotFound("The cited document no longer exists.")
        return Document.from_domain(found)

    @classmethod
    def from_domain(cls, source: DomainSource, document: DomainDocument | None = None) -> Source:
        return cls(
            index=source.index,
            page=source.page,
            snippet=source.snippet,
            score=source.score,
            chunk_id=strawberry.ID(str(source.chunk_id)),
            document_id=source.document_id,
            known_document=document,
        )


@strawberry.type(description="A question or an answer in a chat.")
class Message:
    id: strawberry.ID
    role: MessageRole
    content: str
    sources: list[Source]
    created_at: datetime
    degraded: bool = strawberry.field(
        description="True when the language model failed and the offline answerer replied."
    )
    latency_ms: int | None
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None

    @classmethod
    def from_domain(
        cls, message: DomainMessage, documents: dict[UUID, DomainDocument] | None = None
    ) -> Message:
        known = documents or {}
        usage = message.usage
        return cls(
            id=strawberry.ID(str(message.id)),
            role=MessageRole(message.role.value),
            content=message.content,
            sources=[
                Source.from_domain(source, known.get(source.document_id))
                for source in message.sources
            ],
            created_at=message.created_at,
            degraded=message.degraded,
            latency_ms=usage.latency_ms if usage else None,
            model=usage.model if usage else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )


@strawberry.type
class MessageEdge:
    cursor: str
    node: Message


@strawberry.type
class MessageConnection:
    edges: list[MessageEdge]
    page_info: PageInfo


@strawberry.type(description="One user's conversation; nobody else can see it.")
class Chat:
    id: strawberry.ID
    title: str
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="Messages oldest first (first <= 200; null means 50).")
    async def messages(
        self, info: Info, first: int | None = MESSAGES_PAGE, after: str | None = None
    ) -> MessageConnection:
        key = (UUID(self.id), page_size(first, MESSAGES_PAGE), after)
        page = await info.context.loaders.messages.load(key)
        edges = [
            MessageEdge(
                cursor=encode_cursor(message.created_at, message.id),
                node=Message.from_domain(message),
            )
            for message in page.items
        ]
        return MessageConnection(
            edges=edges,
            page_info=PageInfo.forward(edges, has_next_page=page.has_next_page),
        )

    @classmethod
    def from_domain(cls, chat: DomainChat) -> Chat:
        return cls(
            id=strawberry.ID(str(chat.id)),
            title=chat.title,
            created_at=chat.created_at,
            updated_at=chat.updated_at,
        )


@strawberry.type
class ChatEdge:
    cursor: str
    node: Chat


@strawberry.type
class ChatConnection:
    edges: list[ChatEdge]
    page_info: PageInfo
