"""The ingestion service with the gemini embedder (real google-genai client, local stand-in):
READY on success; a provider that stays down sends the document back to pending for the
queue to retry and fails it after the last attempt; a rejected key fails it at once."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from domain.entities import Principal, Role
from domain.errors import TransientFailure
from domain.services.accounts import RequestOrigin
from infrastructure.container import BackendUrls, Container
from infrastructure.database.models import ChunkRow, DocumentRow
from infrastructure.embeddings.gemini import GeminiEmbedder
from infrastructure.settings import Settings
from tests.gemini_standin import GeminiStandIn, Reply
from tests.helpers import PASSWORD, unique_email
from tests.integration.test_worker_recovery import _incoming


@pytest.fixture
async def container(settings: Settings, urls: BackendUrls) -> AsyncIterator[Container]:
    own = settings.model_copy(
        update={"redis_key_prefix": f"gemini-{uuid.uuid4().hex[:8]}:", "ingest_max_attempts": 2}
    )
    built = Container(own, urls)
    yield built
    await built.aclose()


def _embedder(standin: GeminiStandIn, timeout_seconds: float = 5.0) -> GeminiEmbedder:
    return GeminiEmbedder(
        "stand-in-key",
        base_url=standin.base_url,
        timeout_seconds=timeout_seconds,
        max_attempts=2,
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.02,
        backoff_jitter_seconds=0.0,
    )


async def _document(container: Container) -> uuid.UUID:
    session = await container.services.accounts.sign_up(
        unique_email(), PASSWORD, None, RequestOrigin()
    )
    principal = Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())
    text = "\n\n".join(f"Section {i}: tide tables for the northern harbour." for i in range(40))
    [result] = await container.services.documents.upload(
        principal, [_incoming("tides.txt", text.encode())], ip=None
    )
    assert result.document is not None
    return result.document.id


async def _row(container: Container, document_id: uuid.UUID) -> tuple[str, int, str | None]:
    async with container.session_factory() as session:
        row = (
            await session.execute(
                select(DocumentRow.status, DocumentRow.attempts, DocumentRow.error_code).where(
                    DocumentRow.id == document_id
                )
            )
        ).one()
    return row.status, row.attempts, row.error_code


async def test_ready_with_gemini_vectors(container: Container, standin: GeminiStandIn) -> None:
    standin.reset()
    embedder = _embedder(standin)
    document_id = await _document(container)
    await container.build_ingestion(embedder).ingest(document_id)
    await embedder.aclose()
    assert await _row(container, document_id) == ("ready", 1, None)
    async with container.session_factory() as session:
        stored = await session.scalars(
            select(ChunkRow.embedding).where(ChunkRow.document_id == document_id)
        )
        vectors = [list(v) for v in stored if v is not None]
    assert vectors and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)
    assert {t for r in standin.requests for t in r.task_types} == {"RETRIEVAL_DOCUMENT"}


async def test_provider_down_requeues_then_fails_after_the_last_attempt(
    container: Container, standin: GeminiStandIn
) -> None:
    standin.reset()
    embedder = _embedder(standin)
    document_id = await _document(container)
    ingestion = container.build_ingestion(embedder)
    standin.script(*[Reply.error(503)] * 10)
    with pytest.raises(TransientFailure):
        await ingestion.ingest(document_id)
    assert await _row(container, document_id) == ("pending", 1, None)  # for the queue's retry
    await ingestion.ingest(document_id)  # the retry, still down, is the last attempt
    await embedder.aclose()
    assert await _row(container, document_id) == ("failed", 2, "EMBEDDING_UNAVAILABLE")


async def test_rejected_key_fails_the_document_at_once(
    container: Container, standin: GeminiStandIn
) -> None:
    standin.reset()
    embedder = _embedder(standin)
    document_id = await _document(container)
    standin.script(Reply.error(403))
    await container.build_ingestion(embedder).ingest(document_id)
    await embedder.aclose()
    assert await _row(container, document_id) == ("failed", 1, "EMBEDDING_REJECTED")
    assert len(standin.requests) == 1  # never retried


async def test_a_stale_run_does_not_decide_a_reprocessed_documents_fate(
    container: Container, standin: GeminiStandIn
) -> None:
    """The last attempt fails after the user asked for reprocessing: the document stays
    with its new run (pending, no attempts used), not FAILED by the old one."""
    standin.reset()
    session = await container.services.accounts.sign_up(
        unique_email(), PASSWORD, None, RequestOrigin()
    )
    principal = Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())
    [result] = await container.services.documents.upload(
        principal, [_incoming("tides.txt", b"Tide tables for the northern harbour.")], ip=None
    )
    assert result.document is not None
    document_id = result.document.id
    embedder = _embedder(standin, timeout_seconds=0.5)
    ingestion = container.build_ingestion(embedder)
    standin.script(*[Reply.error(503)] * 2)
    with pytest.raises(TransientFailure):
        await ingestion.ingest(document_id)  # attempt 1 of 2: back to pending

    # Attempt 2, the last, times out once and then meets a 503: it gives up.
    standin.script(Reply.hang(2.0), Reply.error(503))
    sent = len(standin.requests)
    last = asyncio.create_task(ingestion.ingest(document_id))
    deadline = asyncio.get_running_loop().time() + 5
    while len(standin.requests) == sent:
        assert asyncio.get_running_loop().time() < deadline, "the last attempt never started"
        await asyncio.sleep(0.01)
    await container.services.documents.reprocess(principal, document_id, ip=None)
    assert await last is None  # nothing decided by the stale run
    await embedder.aclose()
    assert await _row(container, document_id) == ("pending", 0, None)


async def test_a_run_stops_embedding_a_document_deleted_under_it(
    settings: Settings, urls: BackendUrls, standin: GeminiStandIn
) -> None:
    """It neither spends the embedder on it to the end nor announces progress for it."""
    standin.reset()
    own = settings.model_copy(
        update={"redis_key_prefix": f"gemini-{uuid.uuid4().hex[:8]}:", "embed_group_size": 1}
    )
    container = Container(own, urls)
    try:
        session = await container.services.accounts.sign_up(
            unique_email(), PASSWORD, None, RequestOrigin()
        )
        principal = Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())
        text = "\n\n".join(
            f"Section {i}: tide tables for the northern harbour." for i in range(300)
        )
        [result] = await container.services.documents.upload(
            principal, [_incoming("tides.txt", text.encode())], ip=None
        )
        assert result.document is not None
        document_id = result.document.id
        embedder = _embedder(standin)
        standin.script(*[Reply.hang(0.6)] * 50)  # every chunk takes 0.6 s to embed
        run = asyncio.create_task(container.build_ingestion(embedder).ingest(document_id))
        deadline = asyncio.get_running_loop().time() + 5
        while not standin.requests:
            assert asyncio.get_running_loop().time() < deadline, "embedding never started"
            await asyncio.sleep(0.01)
        assert await container.services.documents.delete(principal, document_id, ip=None)
        assert await asyncio.wait_for(run, 10) is None
        await embedder.aclose()
        assert 1 <= len(standin.requests) <= 2  # of one per chunk, for 10+ chunks
    finally:
        await container.aclose()
