"""The Redis answer cache against the real Redis: keys per organisation and corpus
version, the similarity threshold, the entry bound, and a Redis that is down."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from domain.answers.cache import CachedAnswer, normalise_question
from domain.chats.entities import Source
from infrastructure.cache.answer_cache import CACHE_ERRORS, RedisAnswerCache
from tests.conftest import free_port

ORG = uuid.uuid4()
ANSWER = CachedAnswer(
    question="Who built the lighthouse?",
    content="Margaret Vance built it [1].",
    sources=(Source(1, uuid.uuid4(), uuid.uuid4(), 2, "The lighthouse was built…", 0.03),),
    model="extractive",
)
NORTH = [1.0, 0.0, 0.0]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def cache_on(redis: Redis, **overrides: float) -> RedisAnswerCache:
    options: dict[str, float] = {"ttl_seconds": 60, "min_similarity": 0.95, "max_entries": 2}
    options.update(overrides)
    return RedisAnswerCache(
        redis,
        f"test-{uuid.uuid4().hex[:8]}:",
        ttl_seconds=int(options["ttl_seconds"]),
        min_similarity=options["min_similarity"],
        max_entries=int(options["max_entries"]),
    )


def test_questions_are_compared_normalised() -> None:
    assert normalise_question("  Who built\tthe LIGHTHOUSE?? ") == "who built the lighthouse"
    assert normalise_question("¿Quién construyó el faro?") == "quién construyó el faro"
    assert normalise_question("what is 3.5") == "what is 3.5"


async def test_exact_hits_need_the_same_organisation_and_corpus_version(redis: Redis) -> None:
    cache = cache_on(redis)
    await cache.store(ORG, "v1", NORTH, ANSWER)
    assert await cache.exact(ORG, "v1", "who built the lighthouse") == ANSWER
    assert await cache.exact(ORG, "v2", ANSWER.question) is None
    assert await cache.exact(uuid.uuid4(), "v1", ANSWER.question) is None
    assert await cache.exact(ORG, "v1", "Who built the bridge?") is None


async def test_similar_questions_hit_above_the_threshold_only(redis: Redis) -> None:
    cache = cache_on(redis)
    await cache.store(ORG, "v1", NORTH, ANSWER)
    assert await cache.similar(ORG, "v1", [0.99, 0.1, 0.0]) == ANSWER  # cosine 0.995
    assert await cache.similar(ORG, "v1", [0.9, 0.43, 0.0]) is None  # cosine 0.90
    assert await cache.similar(ORG, "v2", NORTH) is None
    assert await cache.similar(uuid.uuid4(), "v1", NORTH) is None
    # A vector of another dimension (the embedder changed) is never compared.
    assert await cache.similar(ORG, "v1", [1.0, 0.0]) is None


async def test_the_semantic_index_is_bounded_and_keys_expire(redis: Redis) -> None:
    cache = cache_on(redis, max_entries=2)
    for index, vector in enumerate(([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])):
        answer = CachedAnswer(f"question {index}", f"answer {index}", (), "extractive")
        await cache.store(ORG, "v1", vector, answer)
    assert await cache.similar(ORG, "v1", [0.0, 0.0, 1.0]) is None  # over the bound
    # …but its exact entry was kept.
    assert (await cache.exact(ORG, "v1", "question 2")) is not None
    keys = [key async for key in redis.scan_iter(match=f"{cache._prefix}answers:*")]
    ttls = [await redis.ttl(key) for key in keys]
    assert keys and all(0 < ttl <= 60 for ttl in ttls)


async def test_a_redis_that_is_down_means_misses_not_failures() -> None:
    down = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    cache = cache_on(down)
    errors = CACHE_ERRORS.labels("exact")._value.get()
    assert await cache.exact(ORG, "v1", ANSWER.question) is None
    assert await cache.similar(ORG, "v1", NORTH) is None
    await cache.store(ORG, "v1", NORTH, ANSWER)
    assert CACHE_ERRORS.labels("exact")._value.get() == errors + 1
    await down.aclose()
