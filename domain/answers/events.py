"""What answering a question streams to the caller, in order:
SourcesFound, AnswerDelta*, then AnswerCompleted (or the stream raises a DomainError)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.chats.entities import Message, Source
from domain.entities import Document


@dataclass(frozen=True, slots=True)
class CitedSource:
    source: Source
    document: Document


@dataclass(frozen=True, slots=True)
class SourcesFound:
    sources: list[CitedSource]


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True, slots=True)
class AnswerCompleted:
    """The stored assistant message, with the documents its sources cite."""

    message: Message
    documents: dict[UUID, Document]


AnswerEvent = SourcesFound | AnswerDelta | AnswerCompleted
