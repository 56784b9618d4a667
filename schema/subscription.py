from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from resolvers import documents
from schema.context import Info
from schema.permissions import IsAuthenticated
from schema.types.document import DocumentEvent


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Status and progress of your organisation's documents, from any worker.",
    )
    async def document_events(self, info: Info) -> AsyncGenerator[DocumentEvent, None]:
        async for event in documents.document_events(info):
            yield event
