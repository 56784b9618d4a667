"""Ports of retrieval: the two search paths over an organisation's chunks, and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from domain.retrieval.entities import ChunkMatch


class ChunkSearch(Protocol):
    """Searches the transaction's organisation's chunks of READY documents only."""

    async def nearest(
        self, embedding: Sequence[float], limit: int, document_ids: Sequence[UUID] | None
    ) -> list[ChunkMatch]:
        """Approximate nearest neighbours by cosine distance; returns ``limit`` chunks
        whenever that many match the filters (filtered HNSW scans keep scanning)."""
        ...

    async def matching(
        self,
        websearch: str,
        embedding: Sequence[float],
        limit: int,
        document_ids: Sequence[UUID] | None,
    ) -> list[ChunkMatch]:
        """Full-text matches of ``websearch_to_tsquery(websearch)``, best ranked first."""
        ...


class RetrievalObserver(Protocol):
    def stage(self, name: str, seconds: float, hits: int) -> None:
        """One retrieval stage finished (embed, vector, fulltext, fusion)."""
        ...
