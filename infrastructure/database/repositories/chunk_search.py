"""The two search paths over chunks: pgvector HNSW (cosine) and PostgreSQL full text.

Both keep only the organisation's chunks of READY documents (and, if asked, of
chosen documents). A filter applied after an HNSW scan would leave fewer than k
rows when most neighbours are filtered out; pgvector 0.8's iterative scans keep
scanning the graph until k rows pass (``hnsw.iterative_scan = relaxed_order``,
set with the tenant at the start of the transaction, see ``uow.py``); results
are re-sorted by distance here, as relaxed order permits small inversions.

Search is the hot path of the API, so both statements are plain SQL compiled
once (no ORM statement building per call), and the query vector travels as a
``real[]`` parameter, which the driver encodes in binary (pgvector casts it).

The nearest-chunk statement names its organisation and limit as literals, one
statement per organisation and limit: the driver prepares a statement once per
connection, and after five runs PostgreSQL may keep a generic plan, made without the
parameters' values. With them as parameters that plan assumed an organisation of a
guessed size and a tenth of its rows, and for a larger one it was an exact scan of
all of its chunks (seen at 5,000 chunks: 41 ms instead of 1.5 for the HNSW scan; it
grows with the organisation). With literals, each organisation's plan knows its
size, and is still made once per connection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import REAL, Integer, String, TextClause, Uuid, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from domain.retrieval.entities import ChunkMatch

# Every statement's parameters, typed; the query vector goes out as real[] and pgvector
# casts it (CAST(CAST(:embedding AS real[]) AS vector) makes the parameter a real[]).
_EMBEDDING = bindparam("embedding", type_=ARRAY(REAL))
_DOCUMENTS = bindparam("document_ids", type_=ARRAY(Uuid()))
_LIMIT = bindparam("limit", type_=Integer())

# The tenant's embedded chunks of READY (and, if given, chosen) documents. The
# organisation, the limit and whether documents are chosen are written into the
# statement (see above; formatted from a UUID, an int and a fixed clause only).
_NEAREST = """
SELECT c.id, c.document_id, c.page, c.text, c.token_count,
       c.embedding <=> CAST(CAST(:embedding AS real[]) AS vector) AS distance
FROM chunks c
WHERE c.organization_id = '{organization}'::uuid
  AND c.embedding IS NOT NULL{chosen}
  AND c.document_id IN (
    SELECT d.id FROM documents d
    WHERE d.organization_id = '{organization}'::uuid AND d.status = 'ready'
  )
ORDER BY distance  -- the HNSW index's order; the vector is sent once
LIMIT {limit:d}"""
_CHOSEN = "\n  AND c.document_id = ANY (:document_ids)"
# Statements kept built (SQLAlchemy then reuses their compiled forms): the busiest
# organisations' few limits.
_NEAREST_KEPT = 1_024
_NearestKey = tuple[UUID, int, bool]
_nearest_statements: OrderedDict[_NearestKey, TextClause] = OrderedDict()


def nearest_statement(organization_id: UUID, limit: int, chosen: bool) -> TextClause:
    """The nearest-chunk statement of one organisation and limit, with or without a
    ``document_ids`` parameter (built once, kept for the busiest)."""
    key = (organization_id, limit, chosen)
    statement = _nearest_statements.get(key)
    if statement is not None:
        _nearest_statements.move_to_end(key)
        return statement
    if not isinstance(organization_id, UUID) or not isinstance(limit, int):
        raise TypeError("the organisation must be a UUID and the limit an int")
    sql = _NEAREST.format(
        organization=organization_id, limit=limit, chosen=_CHOSEN if chosen else ""
    )
    statement = text(sql)
    statement = (
        statement.bindparams(_EMBEDDING, _DOCUMENTS) if chosen else statement.bindparams(_EMBEDDING)
    )
    _nearest_statements[key] = statement
    if len(_nearest_statements) > _NEAREST_KEPT:
        _nearest_statements.popitem(last=False)
    return statement


# chunk_text_matches (migration 0003) finds and ranks the organisation's matches
# through the GIN index, which row-level security would rule out here. Ranking is
# the cost: a common word can match a large part of a corpus, so only the first
# max_ranked matches are ranked (the vector path still sees all); text and
# distance are read for the winners only. ts_rank_cd normalisation 1 (inside the
# function) divides by 1 + log(length), so long chunks don't win on bulk.
_MATCHING = text(
    """
SELECT c.id, c.document_id, c.page, c.text, c.token_count,
       c.embedding <=> CAST(CAST(:embedding AS real[]) AS vector) AS distance, best.rank
FROM (
  SELECT m.id, m.rank
  FROM chunk_text_matches(
    websearch_to_tsquery('english'::regconfig, :websearch), :max_ranked, :document_ids
  ) AS m
  ORDER BY m.rank DESC, m.id
  LIMIT :limit
) AS best
JOIN chunks c ON c.id = best.id
ORDER BY best.rank DESC, c.id"""
).bindparams(
    _EMBEDDING,
    _DOCUMENTS,
    _LIMIT,
    bindparam("websearch", type_=String()),
    bindparam("max_ranked", type_=Integer()),
)


class SqlChunkSearch:
    def __init__(
        self, session: AsyncSession, organization_id: UUID | None, max_ranked: int = 2_000
    ) -> None:
        self._session = session
        self._organization_id = organization_id
        self._max_ranked = max_ranked

    @staticmethod
    def _filters(
        embedding: Sequence[float], document_ids: Sequence[UUID] | None
    ) -> dict[str, object]:
        """The query vector and the chosen documents (None: all), as parameters."""
        return {
            "embedding": embedding if isinstance(embedding, list) else list(embedding),
            "document_ids": list(document_ids) if document_ids is not None else None,
        }

    async def nearest(
        self, embedding: Sequence[float], limit: int, document_ids: Sequence[UUID] | None
    ) -> list[ChunkMatch]:
        if document_ids is not None and not document_ids:
            return []
        if self._organization_id is None:
            raise RuntimeError("chunk search used outside a tenant transaction")
        parameters = self._filters(embedding, document_ids)
        if document_ids is None:  # the statement has no such parameter then
            del parameters["document_ids"]
        statement = nearest_statement(self._organization_id, limit, document_ids is not None)
        rows = await self._session.execute(statement, parameters)
        matches = []
        # Unpacked, not row.name: attribute access on a Row costs ~4x (the hot path).
        for chunk_id, document_id, page, body, tokens, distance in rows:
            similarity = 1.0 - float(distance)
            matches.append(
                ChunkMatch(chunk_id, document_id, page, body, similarity, similarity, tokens)
            )
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
        parameters = self._filters(embedding, document_ids)
        parameters |= {"limit": limit, "websearch": websearch, "max_ranked": self._max_ranked}
        rows = await self._session.execute(_MATCHING, parameters)
        return [
            ChunkMatch(
                chunk_id, document_id, page, body, 1.0 - float(distance), float(rank), tokens
            )
            for chunk_id, document_id, page, body, tokens, distance, rank in rows
        ]
