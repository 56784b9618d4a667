"""The two search paths over chunks: pgvector HNSW (cosine) and PostgreSQL full text.

Both keep only the organisation's chunks of READY documents (and, if asked, of
chosen documents). A filter applied after an HNSW scan would leave fewer than k
rows when most neighbours are filtered out; pgvector 0.8's iterative scans keep
scanning the graph until k rows pass (``hnsw.iterative_scan = relaxed_order``,
set with the tenant at the start of the transaction, see ``uow.py``); results
are re-sorted by distance here, as relaxed order permits small inversions.

An iterative scan still gives up at pgvector's limits (``tenant_settings.py``): a
filter that leaves few rows near the question (chosen documents, a planner that
misjudged a selective filter) can end the walk with fewer than k rows. When the
nearest-chunk statement returns fewer rows than asked, :meth:`SqlChunkSearch.nearest`
asks again with an exact scan of the same rows (:data:`_EXACT`): it measures the
distance to every chunk that passes the filter, which no index order can cut short.
Only a short answer pays for it: an organisation (or a choice of documents) with
fewer than k chunks, where the exact scan reads those few, or a walk that gave up,
where it costs what an exact search of those chunks costs.

Search is the hot path of the API, so both statements are plain SQL written once
and sent straight through asyncpg, with no SQLAlchemy execution per call: on the
connection of a read-only tenant transaction (``reader.py``, what search and
answers use) or of a unit of work's session (``driver.py``). The query vector
travels in pgvector's binary format on the readers' connections, which register a
codec for it (``vector_codec.py``), and elsewhere as a ``real[]`` parameter that
pgvector casts.

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

import functools
from collections.abc import Sequence
from uuid import UUID

from domain.retrieval.entities import ChunkMatch
from infrastructure.database.driver import ConnectionSource
from infrastructure.database.models import UNREADY_STATUSES

# $1 is always the query vector ({vector}: see _VECTOR); $2 the chosen documents when
# there are any.
# The tenant's embedded chunks of READY (and, if given, chosen) documents: all but those
# of the few documents that are not ready (a hashed list, found through a partial
# index; cheaper than checking each chunk's document, see migration 0007). The
# organisation, the limit and whether documents are chosen are written into the
# statement (see above; formatted from a UUID, an int and fixed clauses only).
_SEARCHED = """
WHERE c.organization_id = '{organization}'::uuid
  AND c.embedding IS NOT NULL{chosen}
  AND c.document_id NOT IN (
    SELECT d.id FROM documents d
    WHERE d.organization_id = '{organization}'::uuid AND d.status IN {unready}
  )"""
_NEAREST = """
SELECT c.id, c.document_id, c.page, c.text, c.token_count,
       c.embedding <=> {vector} AS distance
FROM chunks c{searched}
ORDER BY distance  -- the HNSW index's order; the vector is sent once
LIMIT {limit:d}"""
# The same rows, every distance measured: OFFSET 0 keeps the inner query whole, so
# its rows cannot come in the index's order and the planner reads them by the
# organisation's (or the documents') B-tree instead; texts are read for the k best.
_EXACT = """
SELECT c.id, c.document_id, c.page, c.text, c.token_count, best.distance
FROM (
  SELECT measured.id, measured.distance
  FROM (
    SELECT c.id, c.embedding <=> {vector} AS distance
    FROM chunks c{searched}
    OFFSET 0
  ) AS measured
  ORDER BY measured.distance, measured.id
  LIMIT {limit:d}
) AS best
JOIN chunks c ON c.id = best.id
ORDER BY best.distance, c.id"""
_CHOSEN = "\n  AND c.document_id = ANY ($2::uuid[])"
# The query vector parameter: in pgvector's binary format where the connection has
# the codec (True), or as real[] cast by pgvector (False).
_VECTOR = {True: "$1::vector", False: "CAST($1::real[] AS vector)"}


def nearest_statement(
    organization_id: UUID,
    limit: int,
    chosen: bool,
    binary_vector: bool = False,
    *,
    exact: bool = False,
) -> str:
    """The nearest-chunk statement of one organisation and limit, with or without a
    chosen-documents parameter ($2) (formatted once, kept for the busiest);
    ``exact``: the scan that measures every searched chunk (:data:`_EXACT`)."""
    return _nearest_statement(organization_id, limit, chosen, binary_vector, exact)


# Kept formatted for the busiest organisations' few limits. The caches sit behind typed
# functions (an lru_cache wrapper takes any arguments as far as mypy can tell) and are
# typed themselves, so the check runs for every type of argument that reaches it.
@functools.lru_cache(maxsize=1_024, typed=True)
def _nearest_statement(
    organization_id: UUID, limit: int, chosen: bool, binary_vector: bool, exact: bool
) -> str:
    if not isinstance(organization_id, UUID) or not isinstance(limit, int):
        raise TypeError("the organisation must be a UUID and the limit an int")
    searched = _SEARCHED.format(
        organization=organization_id, chosen=_CHOSEN if chosen else "", unready=UNREADY_STATUSES
    )
    return (_EXACT if exact else _NEAREST).format(
        searched=searched, limit=limit, vector=_VECTOR[binary_vector]
    )


# chunk_text_matches (migration 0003) finds and ranks the organisation's matches
# through the GIN index, which row-level security would rule out here. Ranking is
# the cost: a common word can match a large part of a corpus, so only the first
# max_ranked matches are ranked (the vector path still sees all); text and
# distance are read for the winners only. ts_rank normalisation 1 (inside the
# function, migration 0008) divides by 1 + log(length), so long chunks don't win on
# bulk; ts_rank_cd cost half as much again for no better ranking (bench/README.md).
# $1 vector, $2 websearch text, $3 max ranked, $4 chosen documents (only when there
# are some). The limit and the absent chosen documents are literals, like the nearest
# statement's: with them as parameters PostgreSQL kept planning the statement anew on
# every run instead of settling on its generic plan (0.1 ms of its 1 ms; migration
# 0010 does the same for the function's own query).
_MATCHING = """
SELECT c.id, c.document_id, c.page, c.text, c.token_count,
       c.embedding <=> {vector} AS distance, best.rank
FROM (
  SELECT m.id, m.rank
  FROM chunk_text_matches(
    websearch_to_tsquery('english'::regconfig, $2::text), $3::integer, {chosen}
  ) AS m
  ORDER BY m.rank DESC, m.id
  LIMIT {limit:d}
) AS best
JOIN chunks c ON c.id = best.id
ORDER BY best.rank DESC, c.id"""
_CHOSEN_MATCHING = {True: "$4::uuid[]", False: "NULL::uuid[]"}


def matching_statement(limit: int, chosen: bool, binary_vector: bool = False) -> str:
    """The full-text statement of one limit, with or without a chosen-documents
    parameter ($4) (formatted once per limit)."""
    return _matching_statement(limit, chosen, binary_vector)


@functools.lru_cache(maxsize=256, typed=True)  # behind a typed function, as above
def _matching_statement(limit: int, chosen: bool, binary_vector: bool) -> str:
    if not isinstance(limit, int):
        raise TypeError("the limit must be an int")
    return _MATCHING.format(
        vector=_VECTOR[binary_vector], chosen=_CHOSEN_MATCHING[chosen], limit=limit
    )


Query = tuple[str, list[object]]  # a statement and its arguments ($1, $2, ...)


def nearest_query(
    organization_id: UUID,
    embedding: Sequence[float],
    limit: int,
    document_ids: Sequence[UUID] | None,
    *,
    binary_vector: bool = False,
    exact: bool = False,
) -> Query:
    """The vector path's statement and arguments (``document_ids``: None for all;
    ``binary_vector``: the connection has the vector codec; ``exact``: measure every
    searched chunk instead of walking the index)."""
    statement = nearest_statement(
        organization_id, limit, document_ids is not None, binary_vector, exact=exact
    )
    arguments: list[object] = [_vector(embedding)]
    if document_ids is not None:
        arguments.append(list(document_ids))
    return statement, arguments


def matching_query(
    websearch: str,
    embedding: Sequence[float],
    limit: int,
    document_ids: Sequence[UUID] | None,
    max_ranked: int,
    *,
    binary_vector: bool = False,
) -> Query:
    """The full-text path's statement and arguments (``document_ids``: None for all;
    ``binary_vector``: the connection has the vector codec)."""
    statement = matching_statement(limit, document_ids is not None, binary_vector)
    arguments: list[object] = [_vector(embedding), websearch, max_ranked]
    if document_ids is not None:
        arguments.append(list(document_ids))
    return statement, arguments


class SqlChunkSearch:
    def __init__(
        self,
        connection: ConnectionSource,
        organization_id: UUID | None,
        max_ranked: int = 2_000,
        *,
        binary_vectors: bool = False,
    ) -> None:
        self._connection = connection
        self._organization_id = organization_id
        self._max_ranked = max_ranked
        self._binary = binary_vectors

    async def nearest(
        self, embedding: Sequence[float], limit: int, document_ids: Sequence[UUID] | None
    ) -> list[ChunkMatch]:
        if document_ids is not None and not document_ids:
            return []
        if self._organization_id is None:
            raise RuntimeError("chunk search used outside a tenant transaction")
        connection = await self._connection()
        statement, arguments = nearest_query(
            self._organization_id, embedding, limit, document_ids, binary_vector=self._binary
        )
        rows = await connection.fetch(statement, *arguments)
        if len(rows) < limit:  # fewer chunks than k, or a filtered walk that gave up
            statement, arguments = nearest_query(
                self._organization_id,
                embedding,
                limit,
                document_ids,
                binary_vector=self._binary,
                exact=True,
            )
            rows = await connection.fetch(statement, *arguments)
        matches = []
        # Unpacked, not row["name"]: the hot path.
        for chunk_id, document_id, page, body, tokens, distance in rows:
            similarity = 1.0 - float(distance)
            matches.append(
                ChunkMatch(chunk_id, document_id, page, body, similarity, similarity, tokens)
            )
        # Ties by id: a UUID orders as its text does, without making the text.
        matches.sort(key=lambda match: (-match.similarity, match.chunk_id))
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
        statement, arguments = matching_query(
            websearch, embedding, limit, document_ids, self._max_ranked, binary_vector=self._binary
        )
        rows = await (await self._connection()).fetch(statement, *arguments)
        return [
            ChunkMatch(
                chunk_id, document_id, page, body, 1.0 - float(distance), float(rank), tokens
            )
            for chunk_id, document_id, page, body, tokens, distance, rank in rows
        ]


def _vector(embedding: Sequence[float]) -> list[float]:
    return embedding if isinstance(embedding, list) else list(embedding)
