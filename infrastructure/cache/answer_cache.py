"""The answer cache in Redis: exact and semantic lookups per organisation and corpus version.

Keys live under ``{prefix}answers:{organisation}:{version digest}``:

- ``…:q:{question digest}`` holds one answer (JSON), for the normalised question;
- ``…:vectors`` is a hash from question digest to the question's unit vector
  (float32 bytes), scanned by the semantic lookup; it holds at most
  ``max_entries`` questions, so a lookup reads a bounded amount.

A new corpus version starts empty and the old one's keys expire with their TTL.
Redis failures never fail an answer: lookups miss and stores are skipped, with a
warning and ``foundry_answer_cache_errors_total``.
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


def _vector(raw: bytes | str) -> np.ndarray[tuple[int], np.dtype[np.float32]]:
    data = raw.encode("latin-1") if isinstance(raw, str) else raw
    return np.frombuffer(data, dtype=np.float32)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


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


def decode(raw: bytes | str) -> CachedAnswer:
    data = json.loads(raw)
    return CachedAnswer(
        question=str(data["question"]),
        content=str(data["content"]),
        model=str(data["model"]),
        sources=tuple(
            Source(
                index=int(item["index"]),
                document_id=UUID(item["document_id"]),
                chunk_id=UUID(item["chunk_id"]),
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
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._min_similarity = min_similarity
        self._max_entries = max_entries

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
        return decode(raw) if raw is not None else None

    async def similar(
        self, organization_id: UUID, corpus_version: str, embedding: Sequence[float]
    ) -> CachedAnswer | None:
        base = self._base(organization_id, corpus_version)
        try:
            entries: dict[bytes | str, bytes | str] = await self._redis.hgetall(f"{base}:vectors")
            if not entries:
                return None
            digests = list(entries)
            query = _unit(embedding)
            vectors = [_vector(entries[digest]) for digest in digests]
            usable = [index for index, vector in enumerate(vectors) if vector.shape == query.shape]
            if not usable:
                return None
            similarities = np.stack([vectors[index] for index in usable]) @ query
            best = int(np.argmax(similarities))
            if float(similarities[best]) < self._min_similarity:
                return None
            raw = await self._redis.get(f"{base}:q:{_text(digests[usable[best]])}")
        except RedisError:
            self._failed("similar")
            return None
        return decode(raw) if raw is not None else None

    async def store(
        self,
        organization_id: UUID,
        corpus_version: str,
        embedding: Sequence[float],
        answer: CachedAnswer,
    ) -> None:
        base = self._base(organization_id, corpus_version)
        digest = _digest(normalise_question(answer.question))
        try:
            entries = int(await self._redis.hlen(f"{base}:vectors"))
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(f"{base}:q:{digest}", encode(answer), ex=self._ttl)
                if entries < self._max_entries:
                    pipe.hset(f"{base}:vectors", digest, _unit(embedding).tobytes())
                    pipe.expire(f"{base}:vectors", self._ttl)
                await pipe.execute()
        except RedisError:
            self._failed("store")

    @staticmethod
    def _failed(operation: str) -> None:
        CACHE_ERRORS.labels(operation).inc()
        log.warning("answer_cache.unavailable", operation=operation, exc_info=True)
