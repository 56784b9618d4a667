from __future__ import annotations

import strawberry

from domain.retrieval.entities import SearchHit as DomainSearchHit
from schema.types.document import Document


@strawberry.type(description="A passage found by hybrid (vector + full-text) search.")
class SearchHit:
    chunk_id: strawberry.ID
    document: Document
    page: int | None
    text: str
    score: float = strawberry.field(
        description="Reciprocal-rank-fusion score of the two search paths (higher is better)."
    )
    similarity: float = strawberry.field(
        description="Cosine similarity between the query and the passage (-1..1)."
    )
    vector_rank: int | None = strawberry.field(description="1-based rank in vector search.")
    text_rank: int | None = strawberry.field(description="1-based rank in full-text search.")

    @classmethod
    def from_domain(cls, hit: DomainSearchHit) -> SearchHit:
        return cls(
            chunk_id=strawberry.ID(str(hit.chunk_id)),
            document=Document.from_domain(hit.document),
            page=hit.page,
            text=hit.text,
            score=hit.score,
            similarity=hit.similarity,
            vector_rank=hit.vector_rank,
            text_rank=hit.text_rank,
        )
