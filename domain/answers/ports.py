"""The answer generator port and what flows through it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from domain.chats.entities import MessageRole


@dataclass(frozen=True, slots=True)
class GroundingSource:
    """A retrieved passage handed to a generator; cite it as ``[index]``."""

    index: int
    document_id: UUID
    filename: str
    page: int | None
    text: str
    # The passage's length in the embedder's tokens when known (stored with the chunk),
    # so the extractive answerer need not tokenise it again to report prompt tokens.
    token_count: int | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier message of the chat, for rewriting a follow-up question."""

    role: MessageRole
    content: str


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    question: str
    """The standalone question (a follow-up already rewritten with the chat's history)."""
    sources: Sequence[GroundingSource]
    question_embedding: Sequence[float]
    rewritten_from: str | None = None
    """The question as asked when ``question`` is its rewrite: the rewrite is then made
    of earlier messages, which quote documents, and a prompt treats it as data."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class GenerationFinished:
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    complete: bool = True
    """False when the model stopped before the end of its answer (its output limit, a
    safety stop): the text is kept, with a note saying so, but never cached."""


GenerationEvent = TextDelta | GenerationFinished


class GenerationFailed(Exception):
    """The provider failed (unavailable, rate-limited, timed out, breaker open, cut off).

    Raised from :meth:`AnswerGenerator.stream`, possibly after some deltas.
    """


class AnswerGenerator(Protocol):
    name: str

    def stream(self, request: AnswerRequest) -> AsyncGenerator[GenerationEvent, None]:
        """Text deltas as they are produced, then one GenerationFinished.

        Closing the iterator early cancels generation; raises GenerationFailed
        when the provider fails.
        """
        ...

    async def condense(self, history: Sequence[Turn], question: str) -> str:
        """``question`` rewritten to stand alone given ``history`` (oldest first).

        Returns the question unchanged when it already stands alone; never raises
        for a provider failure (falls back to a local rewrite).
        """
        ...


class AnswerObserver(Protocol):
    """Metrics and logs of answering."""

    def retrieval(self, seconds: float, sources: int) -> None: ...

    def first_token(self, generator: str, seconds: float) -> None: ...

    def finished(
        self,
        generator: str,
        seconds: float,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        degraded: bool,
    ) -> None: ...

    def fallback(self, reason: str) -> None: ...

    def unknown_citations(self, generator: str, cited: Sequence[int], sources: int) -> None:
        """An answer cites source numbers ``cited`` though it was given ``sources``."""
        ...

    def cache(self, result: str) -> None:
        """exact, semantic (hits) or miss."""
        ...

    def outcome(self, outcome: str) -> None:
        """done, error code, or cancelled."""
        ...
