"""Reciprocal rank fusion of the vector and full-text result lists."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from domain.retrieval.entities import ChunkMatch, FusedMatch

# The constant of Cormack, Clarke & Büttcher (2009): damps the weight of the very top
# ranks so that agreement between the two lists counts for more than one list's first place.
RRF_K = 60


def reciprocal_rank_fusion(
    vector: Sequence[ChunkMatch],
    text: Sequence[ChunkMatch],
    limit: int,
    k: int = RRF_K,
) -> list[FusedMatch]:
    """Score each chunk by the sum of 1 / (k + rank) over the lists it appears in.

    Ties (equal fused scores) go to the better vector rank, then to the chunk id,
    so the order is deterministic.
    """
    if limit <= 0:
        return []
    matches: dict[UUID, ChunkMatch] = {}
    vector_ranks: dict[UUID, int] = {}
    text_ranks: dict[UUID, int] = {}
    for rank, match in enumerate(vector, start=1):
        if match.chunk_id not in vector_ranks:
            vector_ranks[match.chunk_id] = rank
            matches[match.chunk_id] = match
    for rank, match in enumerate(text, start=1):
        if match.chunk_id not in text_ranks:
            text_ranks[match.chunk_id] = rank
            matches.setdefault(match.chunk_id, match)
    # Scored and ordered as plain tuples; only the kept few become FusedMatch (this runs
    # for every search over some 80 candidates). A UUID orders as its text does.
    missed = len(vector) + 1
    order = sorted(
        (
            -(
                _contribution(vector_ranks.get(chunk_id), k)
                + _contribution(text_ranks.get(chunk_id), k)
            ),
            vector_ranks.get(chunk_id, missed),
            chunk_id,
        )
        for chunk_id in matches
    )
    return [
        FusedMatch(
            match=matches[chunk_id],
            score=-negative_score,
            vector_rank=vector_ranks.get(chunk_id),
            text_rank=text_ranks.get(chunk_id),
        )
        for negative_score, _, chunk_id in order[:limit]
    ]


def _contribution(rank: int | None, k: int) -> float:
    return 0.0 if rank is None else 1.0 / (k + rank)
