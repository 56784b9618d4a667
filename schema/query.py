from __future__ import annotations

import strawberry

from resolvers import accounts, organizations
from resolvers import documents as document_resolvers
from schema.permissions import IsAuthenticated
from schema.types.document import Document, DocumentConnection
from schema.types.organization import Organization
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
