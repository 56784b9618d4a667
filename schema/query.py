from __future__ import annotations

import strawberry

from resolvers import accounts, organizations
from resolvers import chats as chat_resolvers
from resolvers import documents as document_resolvers
from resolvers import search as search_resolvers
from schema.permissions import IsAuthenticated
from schema.types.chat import Chat, ChatConnection
from schema.types.document import Document, DocumentConnection
from schema.types.organization import Organization
from schema.types.search import SearchHit
from schema.types.user import User


@strawberry.type
class Query:
    me: User = strawberry.field(
        resolver=accounts.me, permission_classes=[IsAuthenticated], description="The caller."
    )
    organization: Organization = strawberry.field(
        resolver=organizations.organization,
        permission_classes=[IsAuthenticated],
        description="The organisation the caller's session is in.",
    )
    documents: DocumentConnection = strawberry.field(
        resolver=document_resolvers.documents,
        permission_classes=[IsAuthenticated],
        description="Your organisation's documents, newest first (first <= 100).",
    )
    document: Document | None = strawberry.field(
        resolver=document_resolvers.document, permission_classes=[IsAuthenticated]
    )
    search: list[SearchHit] = strawberry.field(
        resolver=search_resolvers.search,
        permission_classes=[IsAuthenticated],
        description="Hybrid search over READY documents of your organisation (limit <= 50).",
    )
    chats: ChatConnection = strawberry.field(
        resolver=chat_resolvers.chats,
        permission_classes=[IsAuthenticated],
        description="Your chats, most recently active first (first <= 100).",
    )
    chat: Chat | None = strawberry.field(
        resolver=chat_resolvers.chat, permission_classes=[IsAuthenticated]
    )
