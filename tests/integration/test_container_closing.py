"""Container.aclose closes what the container built: the Gemini clients' HTTP connections
(answerer and embedder), and the batching tasks it put around an embedder it was given."""

from __future__ import annotations

import asyncio
import uuid

import psutil
from pydantic import SecretStr

from domain.chats.entities import MessageRole
from infrastructure.container import BackendUrls, Container
from infrastructure.embeddings.gemini import GeminiEmbedder
from infrastructure.settings import Settings
from tests.gemini_standin import DEFAULT_PIECES, GeminiStandIn, fake_vector
from tests.integration.test_chunk_search import DIMENSIONS, document_with_chunks, member
from tests.integration.test_gemini_ingestion import _document, _embedder, _row

QUESTION = "When does the northern harbour ferry leave?"


def on_gemini(settings: Settings, standin: GeminiStandIn) -> Settings:
    """Answers and embeddings from Gemini (the stand-in), on a Redis prefix of its own."""
    return settings.model_copy(
        update={
            "embedder": "gemini",
            "answerer": "gemini",
            "gemini_api_key": SecretStr("stand-in-key"),
            "gemini_base_url": standin.base_url,
            "gemini_max_attempts": 1,
            "redis_key_prefix": f"closing-{uuid.uuid4().hex[:8]}:",
        }
    )


def connections_to(port: int) -> list[object]:
    """This process's open TCP connections to ``port`` (client ends only)."""
    return [
        connection
        for connection in psutil.Process().net_connections(kind="tcp")
        if connection.raddr and connection.raddr.port == port
    ]


async def test_closing_closes_the_gemini_answerer_and_embedder_connections(
    settings: Settings, urls: BackendUrls, standin: GeminiStandIn
) -> None:
    standin.reset()
    container = Container(on_gemini(settings, standin), urls)
    try:
        principal = await member(container)
        # One chunk whose vector is the question's own: search finds it, Gemini answers.
        await document_with_chunks(
            container, principal, [fake_vector(QUESTION, DIMENSIONS)], texts=[QUESTION]
        )
        chat = await container.services.chats.create(principal, None)
        answer = await container.services.answers.ask(principal, chat.id, QUESTION)
        assert answer.message.role is MessageRole.ASSISTANT
        assert answer.message.content == "".join(DEFAULT_PIECES)  # Gemini's, not extractive
        assert not answer.message.degraded
        methods = {request.method for request in standin.requests}
        assert methods == {"batchEmbedContents", "streamGenerateContent"}
        # The clients keep their connections to Gemini alive for the next call.
        assert connections_to(standin.port)
    finally:
        await container.aclose()
    assert connections_to(standin.port) == []


async def test_closing_stops_the_batching_around_an_embedder_it_was_given(
    settings: Settings, urls: BackendUrls, standin: GeminiStandIn
) -> None:
    before = asyncio.all_tasks()
    container = Container(
        settings.model_copy(update={"redis_key_prefix": f"closing-{uuid.uuid4().hex[:8]}:"}),
        urls,
    )
    embedder: GeminiEmbedder = _embedder(standin)
    try:
        document_id = await _document(container)
        await container.build_ingestion(embedder).ingest(document_id)
        assert (await _row(container, document_id))[0] == "ready"
    finally:
        await container.aclose()
        await embedder.aclose()  # the caller's, not the container's
    # The ingestion's batching task (embedding-batcher) does not outlive the container.
    assert [task.get_name() for task in asyncio.all_tasks() - before] == []
