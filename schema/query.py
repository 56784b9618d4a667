from __future__ import annotations

import strawberry

from resolvers import accounts, organizations
from resolvers import api_keys as api_key_resolvers
from resolvers import audit as audit_resolvers
from resolvers import chats as chat_resolvers
from resolvers import documents as document_resolvers
from resolvers import search as search_resolvers
from schema.permissions import IsAdmin, IsAuthenticated, IsUser
from schema.types.api_key import ApiKeyConnection
from schema.types.audit import AuditEntryConnection
from schema.types.chat import Chat, ChatConnection
from schema.types.document import Document, DocumentConnection
from schema.types.organization import Organization
from schema.types.search import SearchHit
from schema.types.user import User


@strawberry.type
class Query:
    me: User = strawberry.field(
        resolver=accounts.me, permission_classes=[IsUser], description="The caller."
    )
    organization: Organization = strawberry.field(
        resolver=organizations.organization,
        permission_classes=[IsAuthenticated],
        description="The organisation the caller's session is in.",
    )
    documents: DocumentConnection = strawberry.field(
        resolver=document_resolvers.documents,
        permission_classes=[IsAuthenticated],
        description="Your organisation's documents, newest first (first <= 100; null means 20).",
    )
    document: Document | None = strawberry.field(
        resolver=document_resolvers.document,
        permission_classes=[IsAuthenticated],
        description="One of your organisation's documents; null with NOT_FOUND for an id you "
        "cannot see (unknown, malformed, deleted or another organisation's).",
    )
    search: list[SearchHit] = strawberry.field(
        resolver=search_resolvers.search,
        permission_classes=[IsAuthenticated],
        description="Hybrid search over READY documents of your organisation (limit <= the "
        "server's maximum, 50 unless configured; null means 8).",
    )
    chats: ChatConnection = strawberry.field(
        resolver=chat_resolvers.chats,
        permission_classes=[IsUser],
        description="Your chats, most recently active first (first <= 100; null means 20).",
    )
    chat: Chat | None = strawberry.field(
        resolver=chat_resolvers.chat,
        permission_classes=[IsUser],
        description="One of your chats; null with NOT_FOUND for an id you cannot see "
        "(unknown, malformed, deleted or someone else's).",
    )
    api_keys: ApiKeyConnection = strawberry.field(
        resolver=api_key_resolvers.api_keys,
        permission_classes=[IsAdmin],
        description="Your organisation's API keys, newest first "
        "(admins only; first <= 100; null means 20).",
    )
    audit_log: AuditEntryConnection = strawberry.field(
        resolver=audit_resolvers.audit_log,
        permission_classes=[IsAdmin],
        description="Sensitive actions in your organisation, newest first "
        "(admins; first <= 100; null means 50).",
    )
