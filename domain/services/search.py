"""Hybrid search: vector and full-text search over the caller's organisation, fused by RRF."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from domain.entities import DocumentStatus, Principal
from domain.errors import QuestionTooLong, ValidationFailed
from domain.ingestion.ports import Embedder
from domain.ports import UnitOfWorkFactory
from domain.retrieval.embedding_faults import embedding_for_a_caller
from domain.retrieval.entities import ChunkMatch, Retrieval, SearchHit
from domain.retrieval.fulltext import all_words
from domain.retrieval.fusion import reciprocal_rank_fusion
from domain.retrieval.ports import ChunkSearch, RetrievalObserver


@dataclass(frozen=True, slots=True)
class SearchOptions:
    max_limit: int = 50
    candidates: int = 40
    max_query_chars: int = 2_000
    max_document_ids: int = 100


def clean_question(text: str, max_chars: int, field: str) -> str:
    """The question without surrounding whitespace; refuses empty and over-long ones."""
    cleaned = text.strip()
    if not cleaned:
        raise ValidationFailed(f"The {field} is empty.", field=field)
    if len(cleaned) > max_chars:
        raise QuestionTooLong(
            f"The {field} is {len(cleaned)} characters long; the limit is {max_chars}.",
            field=field,
            maxChars=max_chars,
        )
    return cleaned


class SearchService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        embedder: Embedder,
        observer: RetrievalObserver,
        options: SearchOptions,
    ) -> None:
        self._uow_factory = uow_factory
        self._embedder = embedder
        self._observer = observer
        self._options = options

    async def search(
        self,
        principal: Principal,
        query: str,
        limit: int,
        document_ids: Sequence[UUID] | None,
    ) -> list[SearchHit]:
        """The best ``limit`` chunks of READY documents for ``query`` (any role may search)."""
        query = clean_question(query, self._options.max_query_chars, "query")
        if not 1 <= limit <= self._options.max_limit:
            raise ValidationFailed(
                f"limit must be between 1 and {self._options.max_limit}.", field="limit"
            )
        self.check_document_ids(document_ids)
        return (await self.retrieve(principal, query, limit, document_ids)).hits

    def check_document_ids(self, document_ids: Sequence[UUID] | None) -> None:
        """Refuses more ids than ``documentIds`` takes (search, ask and answer alike)."""
        if document_ids is not None and len(document_ids) > self._options.max_document_ids:
            raise ValidationFailed(
                f"Pass at most {self._options.max_document_ids} document ids.",
                field="documentIds",
            )

    async def embed(self, query: str) -> list[float]:
        """The query's embedding, as :meth:`retrieve` computes it."""
        started = time.perf_counter()
        with embedding_for_a_caller("search"):
            embedding = await self._embedder.embed_query(query)
        self._lap("embed", started, 1)
        return embedding

    async def retrieve(
        self,
        principal: Principal,
        query: str,
        limit: int,
        document_ids: Sequence[UUID] | None = None,
        embedding: Sequence[float] | None = None,
    ) -> Retrieval:
        """Hits and the query embedding; ``query`` must already be validated.

        ``embedding``, when given, is ``query``'s (from :meth:`embed`).
        """
        ids = list(dict.fromkeys(document_ids)) if document_ids is not None else None
        candidates = max(limit, self._options.candidates)
        started = time.perf_counter()
        query_vector = list(embedding) if embedding is not None else await self.embed(query)
        mark = time.perf_counter()
        if ids == []:
            return Retrieval(hits=[], query_embedding=query_vector)
        async with self._uow_factory.reader(principal) as reader:
            vector = await reader.search.nearest(query_vector, candidates, ids)
            mark = self._lap("vector", mark, len(vector))
            text = await self._matching(
                reader.search, query, query_vector, candidates=candidates, ids=ids
            )
            mark = self._lap("fulltext", mark, len(text))
            fused = reciprocal_rank_fusion(vector, text, limit)
            mark = self._lap("fusion", mark, len(fused))
            # Each statement reads the latest commits: a document deleted or sent back to
            # processing since its chunks were found is left out with them.
            documents = {
                document.id: document
                for document in await reader.documents.get_many(
                    list({item.match.document_id for item in fused})
                )
                if document.status is DocumentStatus.READY
            }
        hits = [
            SearchHit(
                chunk_id=item.match.chunk_id,
                document=documents[item.match.document_id],
                page=item.match.page,
                text=item.match.text,
                score=item.score,
                similarity=item.match.similarity,
                vector_rank=item.vector_rank,
                text_rank=item.text_rank,
                token_count=item.match.token_count,
            )
            for item in fused
            if item.match.document_id in documents
        ]
        self._observer.stage("total", time.perf_counter() - started, len(hits))
        return Retrieval(hits=hits, query_embedding=query_vector)

    @staticmethod
    async def _matching(
        search: ChunkSearch,
        query: str,
        embedding: Sequence[float],
        *,
        candidates: int,
        ids: Sequence[UUID] | None,
    ) -> list[ChunkMatch]:
        """Chunks with every word of ``query`` (``websearch_to_tsquery``), best ranked first."""
        words = all_words(query)
        return await search.matching(words, embedding, candidates, ids) if words else []

    def _lap(self, stage: str, since: float, hits: int) -> float:
        now = time.perf_counter()
        self._observer.stage(stage, now - since, hits)
        return now
