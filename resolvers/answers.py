"""The answer subscription: sources, then tokens, then the stored message (or an error)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated
from uuid import UUID

import strawberry
import structlog

from domain.answers.events import AnswerCompleted
from domain.errors import DomainError, ErrorCode
from domain.ports import Budget
from resolvers.ids import parse_id, parse_ids
from schema.context import Info
from schema.types.answer import AnswerDone, AnswerError, AnswerSources, AnswerToken, answer_event

log = structlog.get_logger("foundry.answers")

# The `documentIds` argument of `ask` and `answer`, read as search's `documentIds`.
DocumentScope = Annotated[
    list[strawberry.ID] | None,
    strawberry.argument(
        description="Answer from these documents only, as search's documentIds: null means "
        "all of your organisation's documents and an empty list none; ids you cannot see "
        "match nothing; at most 100 ids (VALIDATION_FAILED beyond)."
    ),
]


def document_scope(document_ids: list[strawberry.ID] | None) -> list[UUID] | None:
    """The documents an answer may draw on, parsed as search parses its ``documentIds``."""
    return parse_ids(document_ids) if document_ids is not None else None


async def answer(
    info: Info,
    chat_id: strawberry.ID,
    question: str,
    document_ids: list[strawberry.ID] | None = None,
) -> AsyncGenerator[AnswerSources | AnswerToken | AnswerDone | AnswerError, None]:
    ctx = info.context
    # (RevalidateSocketSession has just re-checked the socket's session.)
    # Refusals are GraphQL errors (extensions carry retryAfter), not AnswerError events.
    principal = await ctx.charge_user(Budget.ASK_USER)
    async with ctx.rate_limiter.hold(
        Budget.SUBSCRIPTIONS_USER, str(principal.user_id), principal.role
    ):
        try:
            events = ctx.services.answers.stream(
                principal, parse_id(chat_id, "chat"), question, document_scope(document_ids)
            )
            # aclosing: when the client completes or disconnects, strawberry closes this
            # generator, and closing the stream cancels generation right there.
            async with aclosing(events) as stream:
                async for event in stream:
                    # A log-out or removal heard meanwhile ends the answer before it shows
                    # what was retrieved or is stored (closing the stream stops generation;
                    # nothing partial is kept). Once stored, it is delivered.
                    if not isinstance(event, AnswerCompleted):
                        await ctx.end_if_signed_out(principal)
                    yield answer_event(event)
        except DomainError as error:
            yield AnswerError.from_domain(error)
        except Exception:
            # A bug, not the client's doing: the stream still ends as the contract says,
            # with an AnswerError, and the request id finds the traceback in the logs.
            log.exception("answer.unexpected_error", request_id=ctx.request_id)
            yield AnswerError(
                code=ErrorCode.INTERNAL.value,
                message=f"Unexpected error (request {ctx.request_id}).",
            )
