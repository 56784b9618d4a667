"""The gemini embedder through the real google-genai client, against a local stand-in server."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from typing import Protocol

import pytest
from google.genai import _api_client as genai_api_client
from pydantic import SecretStr

from domain.errors import TransientFailure
from infrastructure.answers.circuit_breaker import CircuitBreaker
from infrastructure.embeddings.factory import build_embedder
from infrastructure.embeddings.gemini import (
    ApproximateTokenizer,
    GeminiConfigurationError,
    GeminiEmbedder,
)
from infrastructure.settings import Settings
from tests.conftest import free_port
from tests.gemini_standin import GeminiStandIn, Reply, fake_vector
from tests.integration.test_gemini_answerer import state_of

API_KEY = "test-gemini-key-Zq81"
ENDPOINT_SUFFIX = "/models/gemini-embedding-001:batchEmbedContents"


class MakeEmbedder(Protocol):
    def __call__(
        self,
        *,
        dimensions: int = 384,
        base_url: str | None = None,
        timeout_seconds: float = 5.0,
        max_attempts: int = 3,
        query_max_attempts: int = 2,
        query_deadline_seconds: float = 5.0,
    ) -> GeminiEmbedder: ...


@pytest.fixture
async def make_embedder(gemini: GeminiStandIn) -> AsyncIterator[MakeEmbedder]:
    """Embedders on the stand-in with tiny timeouts and backoff; closed after the test."""
    made: list[GeminiEmbedder] = []

    def make(
        *,
        dimensions: int = 384,
        base_url: str | None = None,
        timeout_seconds: float = 5.0,
        max_attempts: int = 3,
        query_max_attempts: int = 2,
        query_deadline_seconds: float = 5.0,
    ) -> GeminiEmbedder:
        embedder = GeminiEmbedder(
            API_KEY,
            dimensions=dimensions,
            base_url=base_url or gemini.base_url,
            timeout_seconds=timeout_seconds,
            max_attempts=max_attempts,
            query_max_attempts=query_max_attempts,
            query_deadline_seconds=query_deadline_seconds,
            backoff_initial_seconds=0.01,
            backoff_max_seconds=0.02,
            backoff_jitter_seconds=0.0,
        )
        made.append(embedder)
        return embedder

    yield make
    for embedder in made:
        await embedder.aclose()


def unit(values: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(v * v for v in values))
    return [v / norm for v in values]


def assert_unit_length(vector: list[float]) -> None:
    assert math.isclose(math.sqrt(math.fsum(v * v for v in vector)), 1.0, abs_tol=1e-9)


def retry_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "gemini.retry"
    ]


async def test_documents_go_out_in_batches_of_at_most_100(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder
) -> None:
    texts = [f"chunk number {i}" for i in range(250)]

    vectors = await make_embedder().embed_documents(texts)

    assert [len(request.items) for request in gemini.requests] == [100, 100, 50]
    assert [text for request in gemini.requests for text in request.texts] == texts
    for request in gemini.requests:
        assert request.path.endswith(ENDPOINT_SUFFIX)
        assert request.api_key == API_KEY
        assert request.task_types == {"RETRIEVAL_DOCUMENT"}
        assert request.dimensionalities == {384}
    assert len(vectors) == 250
    for text, vector in zip(texts, vectors, strict=True):
        assert len(vector) == 384
        assert_unit_length(vector)
        assert vector == pytest.approx(unit(fake_vector(text, 384)))


async def test_query_is_embedded_as_a_retrieval_query(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder
) -> None:
    vector = await make_embedder(dimensions=768).embed_query("what is the refund policy?")

    [request] = gemini.requests
    assert request.texts == ["what is the refund policy?"]
    assert request.task_types == {"RETRIEVAL_QUERY"}
    assert request.dimensionalities == {768}
    assert len(vector) == 768
    assert_unit_length(vector)


async def test_no_texts_make_no_request(gemini: GeminiStandIn, make_embedder: MakeEmbedder) -> None:
    assert await make_embedder().embed_documents([]) == []
    assert gemini.requests == []


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_a_transient_status_is_retried(
    gemini: GeminiStandIn,
    make_embedder: MakeEmbedder,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    gemini.script(Reply.error(status))

    vectors = await make_embedder().embed_documents(["alpha", "beta"])

    assert len(gemini.requests) == 2
    assert gemini.requests[0].body == gemini.requests[1].body
    assert vectors[0] == pytest.approx(unit(fake_vector("alpha", 384)))
    [event] = retry_events(caplog)
    assert event["attempt"] == 1
    assert event["status"] == status
    assert API_KEY not in caplog.text


async def test_a_provider_that_stays_down_raises_transient_failure(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gemini.script(*[Reply.error(500)] * 5)

    with pytest.raises(TransientFailure, match="after 3 attempts"):
        await make_embedder(max_attempts=3).embed_documents(["anyone there?"])

    assert len(gemini.requests) == 3
    assert [event["attempt"] for event in retry_events(caplog)] == [1, 2]


async def test_questions_and_sentences_get_fewer_attempts_than_documents(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder
) -> None:
    embedder = make_embedder(max_attempts=3, query_max_attempts=2)
    for embed in (embedder.embed_query("anyone?"), embedder.embed_sentences(["anyone?"])):
        gemini.reset()
        gemini.script(*[Reply.error(503)] * 3)
        with pytest.raises(TransientFailure, match="after 2 attempts"):
            await embed
        assert len(gemini.requests) == 2
    # Never more than max_attempts, whatever the query setting says.
    gemini.reset()
    gemini.script(*[Reply.error(503)] * 3)
    with pytest.raises(TransientFailure, match="after 1 attempts"):
        await make_embedder(max_attempts=1, query_max_attempts=2).embed_queries(["anyone?"])
    assert len(gemini.requests) == 1


async def test_questions_fail_fast_while_the_breaker_is_open_and_documents_still_try(
    gemini: GeminiStandIn,
) -> None:
    """Two questions failing in a row open the breaker: the third fails at once, with no
    request to Gemini (a search would otherwise wait out its deadline each time);
    documents, which can wait, keep their own retries. Once the breaker's reset time has
    passed, one question goes through as its trial, and its success closes it."""
    now = [0.0]
    breaker = CircuitBreaker(
        "gemini-embeddings-test", failure_threshold=2, reset_seconds=30, clock=lambda: now[0]
    )
    embedder = GeminiEmbedder(
        API_KEY,
        dimensions=384,
        base_url=gemini.base_url,
        query_max_attempts=1,
        query_breaker=breaker,
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.02,
        backoff_jitter_seconds=0.0,
    )
    try:
        gemini.script(Reply.error(503), Reply.error(503))
        for _ in range(2):
            with pytest.raises(TransientFailure, match="after 1 attempts"):
                await embedder.embed_query("anyone?")
        assert breaker.state == "open"
        with pytest.raises(TransientFailure, match="breaker is open"):
            await embedder.embed_query("anyone?")
        assert len(gemini.requests) == 2
        [vector] = await embedder.embed_documents(["no hurry"])  # not behind the breaker
        assert len(vector) == 384
        now[0] = 31.0
        assert len(await embedder.embed_query("back?")) == 384  # the trial
        assert state_of(breaker) == "closed"
    finally:
        await embedder.aclose()


async def test_a_slow_gemini_fails_a_question_at_its_deadline_but_not_a_document(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder
) -> None:
    """The same slow answer: past the question's deadline, well within a document's
    timeout (documents keep the ingestion policy)."""
    embedder = make_embedder(timeout_seconds=30, query_max_attempts=1, query_deadline_seconds=0.2)
    gemini.script(Reply.hang(1.0))
    with pytest.raises(TransientFailure):  # its attempt's timeout or its deadline: both 0.2 s
        await embedder.embed_query("in a hurry")
    gemini.script(Reply.hang(1.0))
    [vector] = await embedder.embed_documents(["no hurry"])
    assert vector == pytest.approx(unit(fake_vector("no hurry", 384)))
    assert [request.texts for request in gemini.requests] == [["in a hurry"], ["no hurry"]]


async def test_a_hung_request_times_out_and_is_retried(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder
) -> None:
    gemini.script(Reply.hang(2.0))

    vector = await make_embedder(timeout_seconds=0.3).embed_query("slow")

    assert len(gemini.requests) == 2
    assert vector == pytest.approx(unit(fake_vector("slow", 384)))


async def test_a_provider_that_keeps_hanging_raises_transient_failure(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder
) -> None:
    gemini.script(Reply.hang(2.0), Reply.hang(2.0))

    with pytest.raises(TransientFailure, match="after 2 attempts"):
        await make_embedder(timeout_seconds=0.3, max_attempts=2).embed_documents(["slow"])

    assert len(gemini.requests) == 2


async def test_a_body_that_is_not_json_is_retried(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gemini.script(Reply.garbled())

    vector = await make_embedder().embed_query("cut mid-JSON")

    assert len(gemini.requests) == 2
    assert vector == pytest.approx(unit(fake_vector("cut mid-JSON", 384)))
    [event] = retry_events(caplog)
    assert event["error"] == "JSONDecodeError"  # the SDK parses a whole body itself


async def test_a_provider_that_keeps_garbling_raises_transient_failure(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder
) -> None:
    gemini.script(Reply.garbled(), Reply.garbled())

    with pytest.raises(TransientFailure, match="after 2 attempts"):
        await make_embedder(max_attempts=2).embed_documents(["text"])


async def test_the_sdk_stays_on_httpx_when_aiohttp_is_installed(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With this flag set and no client of ours, the SDK would send through aiohttp,
    # whose faults are not among the ones retried.
    monkeypatch.setattr(genai_api_client, "has_aiohttp", True)

    vector = await make_embedder().embed_query("over httpx")

    assert vector == pytest.approx(unit(fake_vector("over httpx", 384)))
    assert len(gemini.requests) == 1


async def test_an_unreachable_provider_raises_transient_failure(
    make_embedder: MakeEmbedder,
) -> None:
    embedder = make_embedder(base_url=f"http://127.0.0.1:{free_port()}", max_attempts=2)

    with pytest.raises(TransientFailure, match="after 2 attempts"):
        await embedder.embed_documents(["nobody listens"])


@pytest.mark.parametrize(
    ("status", "setting"),
    [
        (400, "FOUNDRY_EMBEDDING_DIMENSIONS"),
        (401, "FOUNDRY_GEMINI_API_KEY"),
        (403, "FOUNDRY_GEMINI_API_KEY"),
        (404, "FOUNDRY_GEMINI_EMBEDDING_MODEL"),
    ],
)
async def test_a_permanent_rejection_is_not_retried_and_names_the_setting(
    gemini: GeminiStandIn, make_embedder: MakeEmbedder, status: int, setting: str
) -> None:
    gemini.script(Reply.error(status))

    with pytest.raises(GeminiConfigurationError, match=setting) as raised:
        await make_embedder().embed_documents(["text"])

    assert not isinstance(raised.value, TransientFailure)
    assert API_KEY not in str(raised.value)
    assert len(gemini.requests) == 1


async def test_the_factory_builds_it_from_settings(gemini: GeminiStandIn) -> None:
    settings = Settings(
        _env_file=None,
        embedder="gemini",
        gemini_api_key=SecretStr(API_KEY),
        gemini_base_url=gemini.base_url,
        gemini_timeout_seconds=5,
    )
    embedder = build_embedder(settings)
    assert isinstance(embedder, GeminiEmbedder)
    try:
        assert embedder.dimensions == 384
        assert embedder.name == "gemini:gemini-embedding-001"
        embedder.warm_up()
        assert_unit_length(await embedder.embed_query("hello"))
    finally:
        await embedder.aclose()
    [request] = gemini.requests
    assert request.path.endswith(ENDPOINT_SUFFIX)
    assert request.api_key == API_KEY


async def test_the_factory_refuses_a_missing_key() -> None:
    settings = Settings(_env_file=None, embedder="gemini")
    with pytest.raises(GeminiConfigurationError, match="FOUNDRY_GEMINI_API_KEY"):
        build_embedder(settings)


def test_the_approximate_tokenizer_splits_words_and_punctuation() -> None:
    text = "Refunds, within 30 days! internationalisation"
    starts = ApproximateTokenizer().token_starts(text)
    pieces = [text[a:b].strip() for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    assert pieces == ["Refunds", ",", "within", "30", "days", "!", "internatio", "nalisation"]
