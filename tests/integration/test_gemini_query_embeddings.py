"""Questions embedded by Gemini (the stand-in) through the container's search service:
each question is its own call within a short deadline, so a slow or failing Gemini
costs a search seconds and never holds up the questions behind it; a rejected key or
model reaches callers as EMBEDDING_UNAVAILABLE without Gemini's reply or setting names."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from domain.errors import EmbeddingUnavailable, ErrorCode
from infrastructure.container import BackendUrls, Container
from infrastructure.settings import Settings
from tests.gemini_standin import GeminiStandIn, Reply, fake_vector
from tests.integration.test_chunk_search import member

# A hang guard only, far below the minute a hung Gemini call may take: a question that
# waits this long was held up by something other than its own deadline.
GUARD_SECONDS = 15
HUNG_SECONDS = 120


@contextlib.asynccontextmanager
async def on_gemini(
    settings: Settings, urls: BackendUrls, standin: GeminiStandIn, **extra: object
) -> AsyncIterator[Container]:
    """A container embedding with Gemini (the stand-in), whose calls may hang a minute."""
    configured = settings.model_copy(
        update={
            "embedder": "gemini",
            "gemini_api_key": SecretStr("stand-in-key"),
            "gemini_base_url": standin.base_url,
            "gemini_timeout_seconds": HUNG_SECONDS,
            **extra,
        }
    )
    container = Container(configured, urls)
    try:
        yield container
    finally:
        await container.aclose()


async def received(standin: GeminiStandIn, count: int) -> None:
    """Polls: the stand-in answers on a thread of its own."""
    deadline = asyncio.get_running_loop().time() + GUARD_SECONDS
    while len(standin.requests) < count:
        assert asyncio.get_running_loop().time() < deadline, "Gemini was never asked"
        await asyncio.sleep(0.01)


async def test_a_hung_question_does_not_hold_up_the_next(
    settings: Settings, urls: BackendUrls, gemini: GeminiStandIn
) -> None:
    # The first question's deadline is long: only running the calls side by side lets
    # the second through while the first still waits.
    async with on_gemini(
        settings, urls, gemini, gemini_query_deadline_seconds=HUNG_SECONDS
    ) as container:
        search = container.services.search
        gemini.script(Reply.hang(HUNG_SECONDS))
        first = asyncio.create_task(search.embed("Who built the lighthouse?"))
        try:
            await received(gemini, 1)
            second = await asyncio.wait_for(search.embed("When is payday?"), GUARD_SECONDS)
            assert len(second) == settings.embedding_dimensions
            assert not first.done()  # still waiting for Gemini
            assert [request.texts for request in gemini.requests] == [
                ["Who built the lighthouse?"],
                ["When is payday?"],
            ]
        finally:
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first


async def test_a_question_gives_up_at_its_deadline_with_embedding_unavailable(
    settings: Settings, urls: BackendUrls, gemini: GeminiStandIn
) -> None:
    """Every attempt would hang a minute (and three are allowed): the deadline ends it."""
    async with on_gemini(
        settings,
        urls,
        gemini,
        gemini_max_attempts=3,
        gemini_query_max_attempts=3,
        gemini_query_deadline_seconds=0.5,
    ) as container:
        principal = await member(container)
        gemini.script(*[Reply.hang(HUNG_SECONDS)] * 3)
        with pytest.raises(EmbeddingUnavailable) as raised:
            await asyncio.wait_for(
                container.services.search.search(principal, "Anyone there?", 8, None),
                GUARD_SECONDS,
            )
        assert raised.value.code is ErrorCode.EMBEDDING_UNAVAILABLE
        # The next question, Gemini answering again, is embedded as usual.
        gemini.reset()
        vector = await container.services.search.embed("Back again?")
        assert len(vector) == settings.embedding_dimensions


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_a_rejected_key_or_model_is_unavailable_to_callers_and_logged(
    settings: Settings,
    urls: BackendUrls,
    gemini: GeminiStandIn,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    caplog.set_level(logging.ERROR, logger="foundry.search")
    async with on_gemini(settings, urls, gemini, gemini_max_attempts=1) as container:
        principal = await member(container)
        chat = await container.services.chats.create(principal, None)
        failures: list[EmbeddingUnavailable] = []
        for call in (
            container.services.search.search(principal, "Who built it?", 8, None),
            container.services.answers.ask(principal, chat.id, "Who built it?"),
        ):
            gemini.script(Reply.error(status))
            with pytest.raises(EmbeddingUnavailable) as raised:
                await call
            failures.append(raised.value)
    for failure in failures:
        assert failure.code is ErrorCode.EMBEDDING_UNAVAILABLE
        assert failure.message == EmbeddingUnavailable.default_message
        assert "FOUNDRY_" not in failure.message and "scripted" not in failure.message
    # The operator still learns what Gemini said and which setting to check.
    logged = [r.getMessage() for r in caplog.records if "embedding_rejected" in r.getMessage()]
    assert len(logged) == 2
    assert all(f"scripted {status}" in line and "FOUNDRY_" in line for line in logged)


async def test_a_search_embeds_the_question_with_gemini(
    settings: Settings, urls: BackendUrls, gemini: GeminiStandIn
) -> None:
    """The happy path of the same wiring: one call, the question as a retrieval query."""
    async with on_gemini(settings, urls, gemini) as container:
        vector = await container.services.search.embed("What is the refund policy?")
    [request] = gemini.requests
    assert request.task_types == {"RETRIEVAL_QUERY"}
    expected = fake_vector("What is the refund policy?", settings.embedding_dimensions)
    assert vector == pytest.approx([v / 7.5 for v in expected])
