from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from resolvers import answers, documents
from schema.context import Info
from schema.permissions import IsAuthenticated, IsUser
from schema.types.answer import AnswerEventType
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

    @strawberry.subscription(
        permission_classes=[IsUser],
        description="Ask a question in a chat: AnswerSources, then AnswerToken pieces, then "
        "AnswerDone with the stored message, or AnswerError. Completing the subscription "
        "early stops the answer.",
    )
    async def answer(
        self, info: Info, chat_id: strawberry.ID, question: str
    ) -> AsyncGenerator[AnswerEventType, None]:
        async for event in answers.answer(info, chat_id, question):
            yield event
