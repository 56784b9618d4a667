from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry

from resolvers import answers, documents
from resolvers.answers import DocumentScope
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
        # Closed with this generator, not left to the garbage collector: its cleanup
        # (the stream's subscription slot) runs before the operation counts as ended.
        async with aclosing(documents.document_events(info)) as events:
            async for event in events:
                yield event

    @strawberry.subscription(
        permission_classes=[IsUser],
        description="Ask a question in a chat: AnswerSources, then AnswerToken pieces, then "
        "AnswerDone with the stored message, or AnswerError. Completing the subscription "
        "early stops the answer.",
    )
    async def answer(
        self,
        info: Info,
        chat_id: strawberry.ID,
        question: str,
        document_ids: DocumentScope = None,
    ) -> AsyncGenerator[AnswerEventType, None]:
        # As above; here the cleanup also stops generation and frees the answer's slot.
        async with aclosing(answers.answer(info, chat_id, question, document_ids)) as events:
            async for event in events:
                yield event
