"""The two search paths over chunks: pgvector HNSW (cosine) and PostgreSQL full text.

Both start from the organisation-filtered base and keep only chunks of READY
documents (and, if asked, of chosen documents). A filter applied after an
HNSW scan would leave fewer than k rows when most neighbours are filtered out;
pgvector 0.8's iterative scans keep scanning the graph until k rows pass
(``hnsw.iterative_scan = relaxed_order``; results are re-sorted by distance
here, as relaxed order permits small inversions).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Float,
    Select,
    String,
    Uuid,
    cast,
    column,
    func,
    literal_column,
    null,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain.entities import DocumentStatus
from domain.retrieval.entities import ChunkMatch
from infrastructure.database.models import ChunkRow, DocumentRow

_ITERATIVE_SCAN = text(
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
    "set_config('hnsw.ef_search', :ef_search, true)"
)
_ENGLISH = literal_column("'english'::regconfig", type_=String)
# ts_rank_cd normalisation 1: divide by 1 + log(length), so long chunks don't win on bulk.
_RANK_NORMALIZATION = 1


class SqlChunkSearch:
    def __init__(
        self,
        session: AsyncSession,
        organization_id: UUID | None,
        ef_search: int,
        max_ranked: int = 2_000,
    ) -> None:
        self._session = session
        self._organization_id = organization_id
        self._ef_search = ef_search
        self._max_ranked = max_ranked
        self._scan_configured = False

    def _searchable(self, document_ids: Sequence[UUID] | None) -> list[ColumnElement[bool]]:
        if self._organization_id is None:
            raise RuntimeError("chunk search used outside a tenant transaction")
        ready = select(DocumentRow.id).where(
            DocumentRow.organization_id == self._organization_id,
            DocumentRow.status == DocumentStatus.READY.value,
        )
        if document_ids is not None:
            ready = ready.where(DocumentRow.id.in_(list(document_ids)))
        return [
            ChunkRow.organization_id == self._organization_id,
            ChunkRow.document_id.in_(ready),
            ChunkRow.embedding.is_not(None),
        ]

    async def nearest(
        self, embedding: Sequence[float], limit: int, document_ids: Sequence[UUID] | None
    ) -> list[ChunkMatch]:
        if document_ids is not None and not document_ids:
            return []
        if not self._scan_configured:
            await self._session.execute(
                _ITERATIVE_SCAN, {"ef_search": str(max(self._ef_search, limit))}
            )
            self._scan_configured = True
        distance = ChunkRow.embedding.cosine_distance(list(embedding))
        statement = (
            self._columns(distance.label("distance"), distance.label("rank"))
            .where(*self._searchable(document_ids))
            .order_by(distance)
            .limit(limit)
        )
        rows = (await self._session.execute(statement)).all()
        matches = [
            ChunkMatch(
                chunk_id=row.id,
                document_id=row.document_id,
                page=row.page,
                text=row.text,
                similarity=1.0 - float(row.distance),
                rank_score=1.0 - float(row.distance),
            )
            for row in rows
        ]
        matches.sort(key=lambda match: (-match.similarity, str(match.chunk_id)))
        return matches

    async def matching(
        self,
        websearch: str,
        embedding: Sequence[float],
        limit: int,
        document_ids: Sequence[UUID] | None,
    ) -> list[ChunkMatch]:
        if document_ids is not None and not document_ids:
            return []
        query = func.websearch_to_tsquery(_ENGLISH, websearch)
        # chunk_text_matches (migration 0003) finds and ranks the organisation's matches
        # through the GIN index, which row-level security would rule out here. Ranking
        # is the cost: a common word can match a large part of a corpus, so only the
        # first max_ranked matches are ranked (the vector path still sees all); text
        # and distance are read for the winners only.
        chosen = (
            cast(list(document_ids), ARRAY(Uuid()))
            if document_ids is not None
            else null().cast(ARRAY(Uuid()))
        )
        matched = func.chunk_text_matches(query, self._max_ranked, chosen).table_valued(
            column("id", Uuid()), column("document_id", Uuid()), column("rank", Float())
        )
        best = (
            select(matched.c.id, matched.c.rank)
            .order_by(matched.c.rank.desc(), matched.c.id)
            .limit(limit)
            .subquery()
        )
        distance = ChunkRow.embedding.cosine_distance(list(embedding))
        statement = (
            select(
                ChunkRow.id,
                ChunkRow.document_id,
                ChunkRow.page,
                ChunkRow.text,
                distance.label("distance"),
                best.c.rank,
            )
            .join(best, best.c.id == ChunkRow.id)
            .order_by(best.c.rank.desc(), ChunkRow.id)
        )
        rows = (await self._session.execute(statement)).all()
        return [
            ChunkMatch(
                chunk_id=row.id,
                document_id=row.document_id,
                page=row.page,
                text=row.text,
                similarity=1.0 - float(row.distance),
                rank_score=float(row.rank),
            )
            for row in rows
        ]

    @staticmethod
    def _columns(
        distance: ColumnElement[float], rank: ColumnElement[float]
    ) -> Select[UUID, UUID, int | None, str, float, float]:
        return select(
            ChunkRow.id, ChunkRow.document_id, ChunkRow.page, ChunkRow.text, distance, rank
        )
