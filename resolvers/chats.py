"""Chats: create, rename, delete, list, read; ask a question (the whole answer at once)."""

from __future__ import annotations

import strawberry

from domain.errors import NotFound
from domain.ports import Budget
from domain.services.cursors import encode_cursor
from resolvers.answers import DocumentScope, document_scope
from resolvers.ids import parse_id
from schema.context import Info
from schema.types.chat import Chat, ChatConnection, ChatEdge, Message
from schema.types.page_info import CHATS_PAGE, PageInfo, page_size


async def chats(
    info: Info, first: int | None = CHATS_PAGE, after: str | None = None
) -> ChatConnection:
    ctx = info.context
    page = await ctx.services.chats.list(
        ctx.require_principal(), page_size(first, CHATS_PAGE), after
    )
    edges = [
        ChatEdge(cursor=encode_cursor(chat.updated_at, chat.id), node=Chat.from_domain(chat))
        for chat in page.items
    ]
    return ChatConnection(
        edges=edges,
        page_info=PageInfo.forward(edges, has_next_page=page.has_next_page),
    )


async def chat(info: Info, id: strawberry.ID) -> Chat | None:
    """The chat, or null with NOT_FOUND (unknown, malformed or someone else's id alike)."""
    ctx = info.context
    found = await ctx.services.chats.get(ctx.require_principal(), parse_id(id, "chat"))
    if found is None:
        raise NotFound("No such chat.")
    return Chat.from_domain(found)


# Creating, renaming and deleting share one budget: nothing else bounds how many chat rows
# one user writes.
async def create_chat(info: Info, title: str | None = None) -> Chat:
    principal = await info.context.charge_user(Budget.CHATS_USER)
    return Chat.from_domain(await info.context.services.chats.create(principal, title))


async def rename_chat(info: Info, id: strawberry.ID, title: str) -> Chat:
    principal = await info.context.charge_user(Budget.CHATS_USER)
    renamed = await info.context.services.chats.rename(principal, parse_id(id, "chat"), title)
    return Chat.from_domain(renamed)


async def delete_chat(info: Info, id: strawberry.ID) -> bool:
    principal = await info.context.charge_user(Budget.CHATS_USER)
    return await info.context.services.chats.delete(principal, parse_id(id, "chat"))


async def ask(
    info: Info, chat_id: strawberry.ID, question: str, document_ids: DocumentScope = None
) -> Message:
    ctx = info.context
    principal = await ctx.charge_user(Budget.ASK_USER)
    # A client that hangs up stops its answer, as one that leaves an answer subscription.
    completed = await ctx.unless_client_leaves(
        ctx.services.answers.ask(
            principal, parse_id(chat_id, "chat"), question, document_scope(document_ids)
        )
    )
    return Message.from_domain(completed.message, completed.documents)
