"""The answer cache port: answers given before, reused while the corpus is unchanged.

Two lookups share one store: the exact one (organisation + normalised question +
corpus version) and the semantic one (a question whose embedding is close enough
to one answered before, same organisation and corpus version). The corpus version
changes with every document change, so a cached answer never outlives the
documents it was drawn from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from domain.chats.entities import Source

_SPACE = re.compile(r"\s+")
_EDGE_PUNCTUATION = " \t\n?!.,;:¿¡…"


def normalise_question(question: str) -> str:
    """The form exact lookups compare: case-folded, spaces collapsed, no end punctuation."""
    return _SPACE.sub(" ", question.casefold()).strip(_EDGE_PUNCTUATION)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An answer as it was stored, with the sources its ``[n]`` citations point at."""

    question: str
    content: str
    sources: tuple[Source, ...]
    model: str


class AnswerCache(Protocol):
    """Failures are the cache's own business: lookups then miss and stores do nothing."""

    async def exact(
        self, organization_id: UUID, corpus_version: str, question: str
    ) -> CachedAnswer | None:
        """The answer to the same question (compared normalised)."""
        ...

    async def similar(
        self, organization_id: UUID, corpus_version: str, embedding: Sequence[float]
    ) -> CachedAnswer | None:
        """The answer to the closest earlier question, if it is close enough."""
        ...

    async def store(
        self,
        organization_id: UUID,
        corpus_version: str,
        embedding: Sequence[float],
        answer: CachedAnswer,
    ) -> None: ...
