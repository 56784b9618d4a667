"""The answer cache in Redis: exact and semantic lookups per organisation and corpus version.

Keys live under ``{prefix}answers:{organisation}:{version digest}``:

- ``…:q:{question digest}`` holds one answer (JSON), for the normalised question;
- ``…:questions:{dimension}`` lists the cached questions' digests and unit vectors
  for the semantic lookup, at most ``max_entries`` of them; each process keeps a copy
  and reads only the entries added since (``question_vectors.py``).

A new corpus version starts empty and the old one's keys expire with their TTL.
Redis failures never fail an answer: lookups miss and stores are skipped, with a
warning and ``foundry_answer_cache_errors_total``. So does an entry that cannot be
read (written by another version, or damaged): it is a miss, and the answer stored
after it takes its place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from uuid import UUID

import numpy as np
import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from domain.answers.cache import CachedAnswer, normalise_question
from domain.chats.entities import Source
from infrastructure.cache.question_vectors import QuestionVectors

log = structlog.get_logger("foundry.answer_cache")

CACHE_ERRORS = Counter(
    "foundry_answer_cache_errors_total",
    "Answer-cache operations that failed (the answer went on without the cache).",
    ["operation"],
)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _unit(embedding: Sequence[float]) -> np.ndarray[tuple[int], np.dtype[np.float32]]:
    vector = np.asarray(embedding, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _questions_key(base: str, dimension: int) -> str:
    return f"{base}:questions:{dimension}"


def encode(answer: CachedAnswer) -> str:
    return json.dumps(
        {
            "question": answer.question,
            "content": answer.content,
            "model": answer.model,
            "sources": [
                {
                    "index": source.index,
                    "document_id": str(source.document_id),
                    "chunk_id": str(source.chunk_id),
                    "page": source.page,
                    "snippet": source.snippet,
                    "score": source.score,
                }
                for source in answer.sources
            ],
        }
    )


# What decode() raises for an entry it cannot read: not JSON or not UTF-8 (ValueError),
# a field missing (KeyError), a field of the wrong type (TypeError, ValueError).
MALFORMED = (ValueError, KeyError, TypeError)


def decode(raw: bytes | str) -> CachedAnswer:
    """The answer in ``raw``; raises one of MALFORMED if it is not one."""
    data = json.loads(raw)
    return CachedAnswer(
        question=str(data["question"]),
        content=str(data["content"]),
        model=str(data["model"]),
        sources=tuple(
            Source(
                index=int(item["index"]),
                # str(): a number or null fails as ValueError, not AttributeError.
                document_id=UUID(str(item["document_id"])),
                chunk_id=UUID(str(item["chunk_id"])),
                page=None if item["page"] is None else int(item["page"]),
                snippet=str(item["snippet"]),
                score=float(item["score"]),
            )
            for item in data["sources"]
        ),
    )


class RedisAnswerCache:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        ttl_seconds: int,
        min_similarity: float,
        max_entries: int,
        copy_bytes: int,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._min_similarity = min_similarity
        self._questions = QuestionVectors(
            redis, ttl_seconds=ttl_seconds, max_entries=max_entries, copy_bytes=copy_bytes
        )

    def _base(self, organization_id: UUID, corpus_version: str) -> str:
        return f"{self._prefix}answers:{organization_id}:{_digest(corpus_version)}"

    async def exact(
        self, organization_id: UUID, corpus_version: str, question: str
    ) -> CachedAnswer | None:
        key = f"{self._base(organization_id, corpus_version)}:q:"
        key += _digest(normalise_question(question))
        try:
            raw = await self._redis.get(key)
        except RedisError:
            self._failed("exact")
            return None
        return self._decoded(raw, "exact")

    async def similar(
        self, organization_id: UUID, corpus_version: str, embedding: Sequence[float]
    ) -> CachedAnswer | None:
        base = self._base(organization_id, corpus_version)
        query = _unit(embedding)
        try:
            found = await self._questions.closest(_questions_key(base, len(query)), query)
            if found is None or found[1] < self._min_similarity:
                return None
            raw = await self._redis.get(f"{base}:q:{found[0]}")
        except RedisError:
            self._failed("similar")
            return None
        return self._decoded(raw, "similar")

    async def store(
        self,
        organization_id: UUID,
        corpus_version: str,
        embedding: Sequence[float],
        answer: CachedAnswer,
    ) -> None:
        base = self._base(organization_id, corpus_version)
        digest = _digest(normalise_question(answer.question))
        vector = _unit(embedding)
        try:
            await self._questions.add(
                _questions_key(base, len(vector)),
                digest,
                vector,
                answer_key=f"{base}:q:{digest}",
                answer=encode(answer),
            )
        except RedisError:
            self._failed("store")

    @staticmethod
    def _decoded(raw: bytes | str | None, operation: str) -> CachedAnswer | None:
        """The answer in ``raw``; None (a miss) if there is none or it cannot be read.
        The fresh answer stored after the miss replaces the entry."""
        if raw is None:
            return None
        try:
            return decode(raw)
        except MALFORMED as error:
            CACHE_ERRORS.labels(operation).inc()
            log.warning(
                "answer_cache.malformed",
                operation=operation,
                error=type(error).__name__,
                size=len(raw),
            )
            return None

    @staticmethod
    def _failed(operation: str) -> None:
        CACHE_ERRORS.labels(operation).inc()
        log.warning("answer_cache.unavailable", operation=operation, exc_info=True)
