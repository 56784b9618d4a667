"""Concurrent embed calls are coalesced into one model call and split back in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import pytest

from domain.errors import TransientFailure
from infrastructure.embeddings.batching import BatchingEmbedder
from tests.unit.test_chunking import WordTokenizer


class RecordingEmbedder:
    """Embeds text as [len(text)] and records each call's size; slow enough to queue."""

    name = "recording"
    dimensions = 1

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.query_calls: list[int] = []
        self.sentence_calls: list[int] = []
        self.fail = fail

    @property
    def tokenizer(self) -> WordTokenizer:
        return WordTokenizer()

    def warm_up(self, queries: bool = False) -> None:
        return None

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        await asyncio.sleep(0.05)
        if self.fail:
            raise ConnectionError("provider down")
        return [[float(len(text))] for text in texts]

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        self.query_calls.append(len(texts))
        await asyncio.sleep(0.05)
        return [[-float(len(text))] for text in texts]

    async def embed_query(self, text: str) -> list[float]:
        return [float(len(text))]

    async def embed_sentences(self, texts: Sequence[str]) -> list[list[float]]:
        self.sentence_calls.append(len(texts))
        await asyncio.sleep(0.05)
        return [[10.0 * len(text)] for text in texts]


async def test_waiting_requests_share_one_call_and_get_their_own_vectors() -> None:
    inner = RecordingEmbedder()
    batcher = BatchingEmbedder(inner, max_batch=100)
    requests = [["a" * (i + 1)] * 3 for i in range(5)]
    results = await asyncio.gather(*(batcher.embed_documents(texts) for texts in requests))
    for texts, vectors in zip(requests, results, strict=True):
        assert vectors == [[float(len(t))] for t in texts]
    # All five were waiting when the batcher ran: one model call for the fifteen texts.
    assert inner.calls == [15]
    # A request arriving while the model is busy waits for the next call.
    first = asyncio.create_task(batcher.embed_documents(["solo"]))
    await asyncio.sleep(0.01)
    later = await asyncio.gather(*(batcher.embed_documents(["b", "c"]) for _ in range(3)))
    await first
    assert inner.calls[1:] == [1, 6]
    assert later == [[[1.0], [1.0]]] * 3


async def test_batches_respect_the_maximum_and_errors_reach_every_caller() -> None:
    inner = RecordingEmbedder()
    batcher = BatchingEmbedder(inner, max_batch=5)
    await asyncio.gather(*(batcher.embed_documents(["x", "y"]) for _ in range(6)))
    assert max(inner.calls) <= 6  # a batch stops growing once it reaches the maximum
    assert sum(inner.calls) == 12

    failing = BatchingEmbedder(RecordingEmbedder(fail=True))
    outcomes = await asyncio.gather(
        *(failing.embed_documents(["x"]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    with pytest.raises(ConnectionError):
        await failing.embed_documents(["again"])


class PickyEmbedder(RecordingEmbedder):
    """Rejects any call that contains the text 'bad'."""

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        await asyncio.sleep(0.01)
        if "bad" in texts:
            raise ValueError("rejected")
        return [[float(len(text))] for text in texts]


async def test_a_provider_that_is_down_fails_a_batch_once_not_once_per_request() -> None:
    class DownEmbedder(RecordingEmbedder):
        async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
            self.calls.append(len(texts))
            await asyncio.sleep(0.01)
            raise TransientFailure("Gemini is down, after its retries")

    inner = DownEmbedder()
    batcher = BatchingEmbedder(inner)
    first = asyncio.create_task(batcher.embed_documents(["busy"]))
    await asyncio.sleep(0)  # the others wait while the first call runs
    outcomes = await asyncio.gather(
        *(batcher.embed_documents([f"q{i}"]) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(outcome, TransientFailure) for outcome in outcomes)
    with pytest.raises(TransientFailure):
        await first
    assert inner.calls == [1, 4]  # one call for the four, none for each alone


async def test_one_bad_request_does_not_fail_the_others_in_its_batch() -> None:
    inner = PickyEmbedder()
    batcher = BatchingEmbedder(inner)
    outcomes = await asyncio.gather(
        batcher.embed_documents(["good", "one"]),
        batcher.embed_documents(["bad"]),
        batcher.embed_documents(["fine"]),
        return_exceptions=True,
    )
    assert outcomes[0] == [[4.0], [3.0]]
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == [[4.0]]


async def test_concurrent_questions_share_one_query_call() -> None:
    inner = RecordingEmbedder()
    batcher = BatchingEmbedder(inner, max_query_batch=8)
    questions = [f"question {'?' * i}" for i in range(12)]
    vectors = await asyncio.gather(*(batcher.embed_query(q) for q in questions))
    assert vectors == [[-float(len(q))] for q in questions]
    # Query task, not document task; at most 8 per call.
    assert inner.calls == []
    assert inner.query_calls == [8, 4]


async def test_concurrent_answers_share_one_sentence_call() -> None:
    inner = RecordingEmbedder()
    batcher = BatchingEmbedder(inner, max_query_batch=8)
    answers = [[f"sentence {n}", f"another sentence {n}!"] for n in range(3)]
    vectors = await asyncio.gather(*(batcher.embed_sentences(texts) for texts in answers))
    assert vectors == [[[10.0 * len(t)] for t in texts] for texts in answers]
    # Their own provider call: neither the document nor the question one.
    assert inner.calls == [] and inner.query_calls == []
    assert inner.sentence_calls == [6]


async def test_closing_stops_the_batching_tasks_and_fails_what_waits() -> None:
    before = asyncio.all_tasks()
    batcher = BatchingEmbedder(RecordingEmbedder())
    assert await batcher.embed_query("warm") == [-4.0]
    assert await batcher.embed_sentences(["warm"]) == [[40.0]]
    waiting = [asyncio.create_task(batcher.embed_documents([text])) for text in ("a", "b")]
    await asyncio.sleep(0.01)  # in the model call by now
    await batcher.aclose()
    for task in waiting:
        with pytest.raises(RuntimeError):
            await task
    # No runner (documents, questions, sentences) outlives the batcher.
    assert asyncio.all_tasks() - before == set()


async def test_an_embedder_that_batches_questions_itself_gets_them_directly() -> None:
    inner = RecordingEmbedder()
    batcher = BatchingEmbedder(inner, max_batch=100, coalesce_queries=False)
    questions = [f"question {'?' * i}" for i in range(3)]
    vectors = await asyncio.gather(*(batcher.embed_query(q) for q in questions))
    assert vectors == [[-float(len(q))] for q in questions]
    assert inner.query_calls == [1, 1, 1]  # one call each: the inner embedder batches them
    assert await batcher.embed_sentences(["one", "two"]) == [[30.0], [30.0]]
    assert inner.sentence_calls == [2]
    # Documents are still coalesced.
    await asyncio.gather(*(batcher.embed_documents([q]) for q in questions))
    assert inner.calls == [3]
    await batcher.aclose()


class StuckRetryEmbedder(RecordingEmbedder):
    """Rejects a batch of several requests, then hangs on each request tried alone."""

    def __init__(self) -> None:
        super().__init__()
        self.retrying = asyncio.Event()

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        if len(texts) > 1:
            raise ValueError("one of these texts is rejected")
        self.retrying.set()
        await asyncio.Event().wait()  # never answers: only aclose() ends this call
        raise AssertionError("unreachable")


async def test_closing_during_the_one_by_one_retries_fails_every_caller() -> None:
    before = asyncio.all_tasks()
    inner = StuckRetryEmbedder()
    batcher = BatchingEmbedder(inner)
    callers = [asyncio.create_task(batcher.embed_documents([text])) for text in ("a", "b")]
    await asyncio.wait_for(inner.retrying.wait(), 10)
    assert inner.calls == [2, 1]  # one batch of both, then the first one alone
    await batcher.aclose()
    # A hang guard only: without an answer the callers would wait for ever.
    outcomes = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 10)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    # A closed batcher starts no new runner: a late request fails at once.
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(batcher.embed_documents(["late"]), 10)  # a hang guard
    assert inner.calls == [2, 1]
    assert asyncio.all_tasks() - before == set()


class MalformedEmbedder(RecordingEmbedder):
    """Its first answer is not a list of vectors (a provider bug)."""

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        if len(self.calls) == 1:
            return cast(list[list[float]], object())
        return [[float(len(text))] for text in texts]


async def test_an_unexpected_error_fails_its_callers_and_the_batcher_goes_on() -> None:
    batcher = BatchingEmbedder(MalformedEmbedder())
    guard = 10  # seconds: a hang guard only, the error is expected at once
    with pytest.raises(TypeError):
        await asyncio.wait_for(batcher.embed_documents(["first"]), guard)
    assert await asyncio.wait_for(batcher.embed_documents(["next"]), guard) == [[4.0]]
    await batcher.aclose()
