from __future__ import annotations

from typing import Annotated

import strawberry

from domain.answers.events import AnswerCompleted, AnswerDelta, AnswerEvent, SourcesFound
from domain.errors import DomainError
from schema.types.chat import Message, Source


@strawberry.type(description="The passages the answer will cite, sent before any token.")
class AnswerSources:
    sources: list[Source]


@strawberry.type(description="The next piece of the answer's text.")
class AnswerToken:
    text: str


@strawberry.type(description="The answer is complete and stored.")
class AnswerDone:
    message: Message


@strawberry.type(description="The answer failed; nothing was stored as an answer.")
class AnswerError:
    code: str
    message: str

    @classmethod
    def from_domain(cls, error: DomainError) -> AnswerError:
        return cls(code=error.code.value, message=error.message)


AnswerEventType = Annotated[
    AnswerSources | AnswerToken | AnswerDone | AnswerError,
    strawberry.union("AnswerEvent"),
]


def answer_event(event: AnswerEvent) -> AnswerSources | AnswerToken | AnswerDone:
    if isinstance(event, SourcesFound):
        return AnswerSources(
            sources=[Source.from_domain(item.source, item.document) for item in event.sources]
        )
    if isinstance(event, AnswerDelta):
        return AnswerToken(text=event.text)
    if isinstance(event, AnswerCompleted):
        return AnswerDone(message=Message.from_domain(event.message, event.documents))
    raise TypeError(f"unknown answer event {event!r}")
