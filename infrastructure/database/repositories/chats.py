"""Chats and messages of the transaction's user in the transaction's organisation.

Row-level security already hides other organisations' rows and other users'
chats (a restrictive policy on ``app.user_id``); the explicit filters here say
the same thing in the query.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Table,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from domain.chats.entities import Chat, ChatPage, Message, MessagePage, MessageRole, Source, Usage
from infrastructure.database.models import ChatRow, MessageRow

# Chat writes go through the table, not the ORM: the ORM's unit of work and entity
# loading cost about twice as much CPU per statement as the statement itself. An
# answer's own writes (its question and itself) go through chat_turns.py instead.
CHATS: Table = ChatRow.__table__  # type: ignore[assignment]


def to_chat(row: ChatRow | Row[tuple[UUID, UUID, UUID, str, datetime, datetime]]) -> Chat:
    return Chat(
        id=row.id,
        organization_id=row.organization_id,
        user_id=row.user_id,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def source_to_json(source: Source) -> dict[str, object]:
    return {
        "index": source.index,
        "documentId": str(source.document_id),
        "chunkId": str(source.chunk_id),
        "page": source.page,
        "snippet": source.snippet,
        "score": source.score,
    }


def source_from_json(data: dict[str, object]) -> Source:
    page = data.get("page")
    score = data.get("score")
    index = data.get("index")
    return Source(
        index=int(index) if isinstance(index, int) else 0,
        document_id=UUID(str(data["documentId"])),
        chunk_id=UUID(str(data["chunkId"])),
        page=page if isinstance(page, int) else None,
        snippet=str(data.get("snippet", "")),
        score=float(score) if isinstance(score, int | float) else 0.0,
    )


def to_message(row: MessageRow) -> Message:
    usage = (
        Usage(
            model=row.model,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            latency_ms=row.latency_ms or 0,
            degraded=row.degraded,
        )
        if row.model is not None
        else None
    )
    return Message(
        id=row.id,
        chat_id=row.chat_id,
        organization_id=row.organization_id,
        role=MessageRole(row.role),
        content=row.content,
        sources=[source_from_json(item) for item in row.sources],
        created_at=row.created_at,
        usage=usage,
    )


class _UserScoped:
    """A repository over the chats of the transaction's user in its organisation."""

    def __init__(
        self, session: AsyncSession, organization_id: UUID | None, user_id: UUID | None
    ) -> None:
        self._session = session
        self._organization_id = organization_id
        self._user_id = user_id

    def _owns_chat(self) -> list[ColumnElement[bool]]:
        if self._organization_id is None or self._user_id is None:
            raise RuntimeError("chats are only reachable in a user's tenant transaction")
        return [ChatRow.organization_id == self._organization_id, ChatRow.user_id == self._user_id]


class SqlChatRepository(_UserScoped):
    def _owned(self) -> Select[ChatRow]:
        return select(ChatRow).where(*self._owns_chat())

    async def add(self, chat: Chat) -> None:
        await self._session.execute(
            insert(CHATS).values(
                id=chat.id,
                organization_id=chat.organization_id,
                user_id=chat.user_id,
                title=chat.title,
                created_at=chat.created_at,
                updated_at=chat.updated_at,
            )
        )

    async def get(self, chat_id: UUID) -> Chat | None:
        row = await self._session.scalar(self._owned().where(ChatRow.id == chat_id))
        return to_chat(row) if row else None

    async def list(self, first: int, after: tuple[datetime, UUID] | None) -> ChatPage:
        query = self._owned()
        if after is not None:
            query = query.where(tuple_(ChatRow.updated_at, ChatRow.id) < tuple_(*after))
        rows = list(
            await self._session.scalars(
                query.order_by(ChatRow.updated_at.desc(), ChatRow.id.desc()).limit(first + 1)
            )
        )
        return ChatPage(
            items=[to_chat(row) for row in rows[:first]], has_next_page=len(rows) > first
        )

    async def update(self, chat_id: UUID, at: datetime, title: str | None = None) -> Chat | None:
        values: dict[str, object] = {"updated_at": at}
        if title is not None:
            values["title"] = title
        statement = (
            update(CHATS)
            .where(*self._owns_chat(), CHATS.c.id == chat_id)
            .values(**values)
            .returning(*CHATS.c)
        )
        row = (await self._session.execute(statement)).first()
        return to_chat(row) if row else None

    async def delete(self, chat_id: UUID) -> bool:
        owned = self._owned().where(ChatRow.id == chat_id).with_only_columns(ChatRow.id)
        result = await self._session.execute(
            delete(ChatRow).where(ChatRow.id.in_(owned.scalar_subquery())).returning(ChatRow.id)
        )
        return result.first() is not None


class SqlMessageRepository(_UserScoped):
    def _owned_chats(self) -> Select[UUID]:
        return select(ChatRow.id).where(*self._owns_chat())

    async def pages(
        self, chat_ids: Sequence[UUID], first: int, after: tuple[datetime, UUID] | None
    ) -> dict[UUID, MessagePage]:
        if not chat_ids:
            return {}
        ranked = select(
            MessageRow,
            func.row_number()
            .over(
                partition_by=MessageRow.chat_id,
                order_by=(MessageRow.created_at, MessageRow.id),
            )
            .label("position"),
        ).where(
            MessageRow.organization_id == self._organization_id,
            MessageRow.chat_id.in_(list(chat_ids)),
            MessageRow.chat_id.in_(self._owned_chats()),
        )
        if after is not None:
            ranked = ranked.where(tuple_(MessageRow.created_at, MessageRow.id) > tuple_(*after))
        subquery = ranked.subquery()
        message = aliased(MessageRow, subquery)
        rows = await self._session.scalars(
            select(message)
            .where(subquery.c.position <= first + 1)
            .order_by(message.chat_id, message.created_at, message.id)
        )
        grouped: dict[UUID, list[Message]] = defaultdict(list)
        for row in rows:
            grouped[row.chat_id].append(to_message(row))
        return {
            chat_id: MessagePage(
                items=grouped[chat_id][:first], has_next_page=len(grouped[chat_id]) > first
            )
            for chat_id in chat_ids
        }
