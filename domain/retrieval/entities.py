"""What retrieval finds: chunk matches from each search path, and fused hits."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.entities import Document


@dataclass(frozen=True, slots=True)
class ChunkMatch:
    """One chunk found by one search path (vector or full text), best first.

    ``similarity`` is the cosine similarity between the question and the chunk
    (both paths report it, so relevance can be judged the same way for each);
    ``rank_score`` is the path's own score (similarity, or the full-text rank);
    ``token_count`` the chunk's length in the embedder's tokens, stored at ingestion.
    """

    chunk_id: UUID
    document_id: UUID
    page: int | None
    text: str
    similarity: float
    rank_score: float
    token_count: int | None = None


@dataclass(frozen=True, slots=True)
class FusedMatch:
    """A chunk after reciprocal rank fusion; ranks are 1-based, None when a path missed it."""

    match: ChunkMatch
    score: float
    vector_rank: int | None
    text_rank: int | None


@dataclass(frozen=True, slots=True)
class SearchHit:
    chunk_id: UUID
    document: Document
    page: int | None
    text: str
    score: float
    similarity: float
    vector_rank: int | None
    text_rank: int | None
    token_count: int | None = None


@dataclass(frozen=True, slots=True)
class Retrieval:
    """Hits for one question, and the question's embedding (answerers reuse it)."""

    hits: list[SearchHit]
    query_embedding: list[float]
