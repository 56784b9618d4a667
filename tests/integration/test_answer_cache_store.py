"""The Redis answer cache against the real Redis: keys per organisation and corpus
version, the similarity threshold, the entry bound, and a Redis that is down."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from domain.answers.cache import CachedAnswer, normalise_question
from domain.chats.entities import Source
from infrastructure.cache.answer_cache import CACHE_ERRORS, RedisAnswerCache, _digest
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
        copy_bytes=1024 * 1024,
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


MALFORMED_ENTRIES = [
    b"{not json",
    b"\xff\xfe",  # not UTF-8
    b'"a string"',
    b'{"question": "Who built the lighthouse?", "content": "Vance."}',  # an older format
    b'{"question": "q", "content": "c", "model": "m", "sources": [{"index": "one"}]}',
    b'{"question": "q", "content": "c", "model": "m", "sources": 5}',
    (
        b'{"question": "q", "content": "c", "model": "m", "sources": [{"index": 1, '
        b'"document_id": 7, "chunk_id": null, "page": null, "snippet": "", "score": 0}]}'
    ),
]


async def test_an_entry_that_cannot_be_read_is_a_miss_counted_and_replaced(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry of another format or damaged made every ask of its question fail."""
    cache = cache_on(redis, max_entries=100)
    await cache.store(ORG, "v1", NORTH, ANSWER)
    key = f"{cache._base(ORG, 'v1')}:q:{_digest(normalise_question(ANSWER.question))}"
    assert await redis.exists(key)
    for raw in MALFORMED_ENTRIES:
        await redis.set(key, raw, ex=60)
        exact = CACHE_ERRORS.labels("exact")._value.get()
        similar = CACHE_ERRORS.labels("similar")._value.get()
        with caplog.at_level(logging.WARNING, logger="foundry.answer_cache"):
            assert await cache.exact(ORG, "v1", ANSWER.question) is None, raw
            assert await cache.similar(ORG, "v1", NORTH) is None, raw
        assert CACHE_ERRORS.labels("exact")._value.get() == exact + 1
        assert CACHE_ERRORS.labels("similar")._value.get() == similar + 1
    warned = [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "answer_cache.malformed"
    ]
    assert len(warned) == 2 * len(MALFORMED_ENTRIES)
    assert {entry["operation"] for entry in warned} == {"exact", "similar"}
    # The answer stored after the miss takes the entry's place.
    await cache.store(ORG, "v1", NORTH, ANSWER)
    assert await cache.exact(ORG, "v1", ANSWER.question) == ANSWER
    assert await cache.similar(ORG, "v1", NORTH) == ANSWER


def answer_to(index: int) -> CachedAnswer:
    return CachedAnswer(f"question {index}", f"answer {index}", (), "extractive")


def axis(index: int, dimension: int = 8) -> list[float]:
    return [1.0 if position == index else 0.0 for position in range(dimension)]


def twin(cache: RedisAnswerCache, redis: Redis, **overrides: int) -> RedisAnswerCache:
    """Another API process's cache on the same Redis and prefix."""
    options = {"max_entries": 100, "copy_bytes": 64 * 1024 * 1024, **overrides}
    return RedisAnswerCache(redis, cache._prefix, ttl_seconds=60, min_similarity=0.95, **options)


async def test_another_process_finds_questions_stored_after_its_first_lookup(
    redis: Redis,
) -> None:
    one = cache_on(redis, max_entries=100)
    other = twin(one, redis)
    await one.store(ORG, "v1", axis(0), answer_to(0))
    assert await other.similar(ORG, "v1", axis(0)) == answer_to(0)
    for index in (1, 2):
        await one.store(ORG, "v1", axis(index), answer_to(index))
    assert await other.similar(ORG, "v1", axis(2)) == answer_to(2)
    assert await other.similar(ORG, "v1", axis(1)) == answer_to(1)
    assert await other.similar(ORG, "v1", axis(3)) is None


async def test_a_lookup_reads_only_the_questions_added_since_the_last(redis: Redis) -> None:
    one = cache_on(redis, max_entries=100)
    other = twin(one, redis)
    read = other._questions._read
    replies: list[int] = []

    async def counted_read(*, keys: list[str], args: list[bytes | int]) -> list[bytes]:
        reply: list[bytes] = await read(keys=keys, args=args)
        replies.append(len(reply))
        return reply

    other._questions._read = counted_read  # type: ignore[assignment]
    for index in (0, 1, 2):
        await one.store(ORG, "v1", axis(index), answer_to(index))
    assert await other.similar(ORG, "v1", axis(1)) == answer_to(1)
    assert await other.similar(ORG, "v1", axis(2)) == answer_to(2)
    await one.store(ORG, "v1", axis(3), answer_to(3))
    assert await other.similar(ORG, "v1", axis(3)) == answer_to(3)
    # The header, then: all three questions, none, the one added.
    assert replies == [4, 1, 2]


async def test_a_list_made_again_after_it_expired_replaces_the_copy(redis: Redis) -> None:
    one = cache_on(redis, max_entries=100)
    other = twin(one, redis)
    await one.store(ORG, "v1", axis(0), answer_to(0))
    assert await other.similar(ORG, "v1", axis(0)) == answer_to(0)
    key = f"{one._base(ORG, 'v1')}:questions:8"
    await redis.delete(key)  # what its TTL does (question 0's answer is still there)
    for index in (1, 2):
        await one.store(ORG, "v1", axis(index), answer_to(index))
    # The new list is longer than the copy of the old one: only its header tells.
    assert await other.similar(ORG, "v1", axis(0)) is None
    assert await other.similar(ORG, "v1", axis(2)) == answer_to(2)
    await redis.delete(key)
    assert await other.similar(ORG, "v1", axis(2)) is None
    assert other._questions.held_bytes == 0


async def test_a_list_expires_one_ttl_after_it_was_made_however_often_it_is_stored(
    redis: Redis,
) -> None:
    cache = cache_on(redis, max_entries=2)
    await cache.store(ORG, "v1", axis(0), answer_to(0))
    key = f"{cache._base(ORG, 'v1')}:questions:8"
    assert 0 < await redis.ttl(key) <= 60
    await redis.expire(key, 5)  # as if 55 of its 60 seconds had passed
    # One store that adds to it, then two that find it full: none makes it live longer,
    # so it cannot outlive the answers its entries point at.
    for index in (1, 2, 3):
        await cache.store(ORG, "v1", axis(index), answer_to(index))
    assert 0 < await redis.ttl(key) <= 5
    assert await redis.llen(key) == 3  # the header and two questions
    await redis.delete(key)  # what its TTL does
    await cache.store(ORG, "v1", axis(4), answer_to(4))
    assert 5 < await redis.ttl(key) <= 60  # a new list, with a TTL of its own
    assert await cache.similar(ORG, "v1", axis(4)) == answer_to(4)


async def test_concurrent_lookups_copy_each_question_once(redis: Redis) -> None:
    one = cache_on(redis, max_entries=100)
    other = twin(one, redis)
    await one.store(ORG, "v1", axis(0), answer_to(0))
    assert await other.similar(ORG, "v1", axis(0)) == answer_to(0)
    for index in range(1, 8):
        await one.store(ORG, "v1", axis(index), answer_to(index))
    found = await asyncio.gather(*(other.similar(ORG, "v1", axis(i % 8)) for i in range(16)))
    assert found == [answer_to(i % 8) for i in range(16)]
    copy = other._questions._copies[f"{one._base(ORG, 'v1')}:questions:8"]
    assert sorted(copy.digests) == sorted(set(copy.digests))
    assert copy.rows.shape == (8, 8)


async def test_copies_stay_within_their_byte_budget(redis: Redis) -> None:
    one = cache_on(redis, max_entries=100)
    # Room for about two organisations' single question.
    other = twin(one, redis, copy_bytes=300)
    organizations = [uuid.uuid4() for _ in range(5)]
    for organization in organizations:
        await one.store(organization, "v1", axis(0), answer_to(0))
    for organization in organizations * 2:
        assert await other.similar(organization, "v1", axis(0)) == answer_to(0)
        assert 0 < other._questions.held_bytes <= 300
