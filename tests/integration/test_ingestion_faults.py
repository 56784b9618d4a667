"""Ingestion runs that meet the unforeseen or lose their document on the way: an error
nobody planned for is retried by the queue and then fails the document with
PROCESSING_FAILED; the last attempt names the service that was down; a run whose
document was deleted or reprocessed stops after parsing or chunking; a run's claim stays
in flight (for the hand-back at shutdown) while an older run of the same document ends.
On a Redis prefix of their own: no test worker takes these documents."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import update

from domain.entities import Document, Principal
from domain.errors import ServiceUnavailable, TransientFailure
from domain.ingestion.chunking import Tokenizer
from domain.ingestion.ports import Embedder
from infrastructure.container import BackendUrls, Container
from infrastructure.database.models import DocumentRow
from infrastructure.settings import Settings
from tests.conftest import WorkerProcess, worker_env
from tests.integration.test_gemini_ingestion import _row
from tests.integration.test_worker_recovery import _editor, _incoming, _status

TEXT = "\n\n".join(
    f"Paragraph {i}: the harbour master logs ship {i} mooring at the eastern quay."
    for i in range(30)
)


@pytest.fixture
async def own(settings: Settings, urls: BackendUrls) -> AsyncIterator[Container]:
    """A container whose queue no test worker reads, giving each document two attempts."""
    container = Container(
        settings.model_copy(
            update={
                "redis_key_prefix": f"faults-{uuid.uuid4().hex[:8]}:",
                "ingest_max_attempts": 2,
            }
        ),
        urls,
    )
    yield container
    await container.aclose()


class GatedEmbedder:
    """The container's embedder, counting what it is asked, with a tokenizer that holds
    each of its first ``holds`` chunkings at their end until the test resumes it; raising
    ``failure`` instead of embedding, if given."""

    def __init__(self, inner: Embedder, holds: int = 0, failure: Exception | None = None) -> None:
        self._inner = inner
        self._failure = failure
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.reached = [threading.Event() for _ in range(holds)]
        self.resume = [threading.Event() for _ in range(holds)]
        self.chunkings = 0
        self.embedded = 0
        self._lock = threading.Lock()

    @property
    def tokenizer(self) -> Tokenizer:
        return self

    def token_starts(self, text: str) -> Sequence[int]:
        starts = self._inner.tokenizer.token_starts(text)
        with self._lock:
            call = self.chunkings
            self.chunkings += 1
        if call < len(self.reached):
            self.reached[call].set()
            self.resume[call].wait(60)
        return starts

    async def reached_chunking(self, call: int) -> bool:
        return await asyncio.to_thread(self.reached[call].wait, 60)

    def resume_all(self) -> None:
        for event in self.resume:
            event.set()

    def warm_up(self, queries: bool = False) -> None:
        self._inner.warm_up(queries)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded += len(texts)
        if self._failure is not None:
            raise self._failure
        return await self._inner.embed_documents(texts)

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._inner.embed_queries(texts)

    async def embed_query(self, text: str) -> list[float]:
        return await self._inner.embed_query(text)

    async def embed_sentences(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._inner.embed_sentences(texts)


async def _upload(container: Container, principal: Principal) -> Document:
    [result] = await container.services.documents.upload(
        principal, [_incoming("harbour.txt", f"{TEXT}\n\n{uuid.uuid4()}".encode())], ip=None
    )
    assert result.document is not None
    return result.document


async def _wait_for_status(
    container: Container, document_id: uuid.UUID, wanted: str, seconds: float
) -> tuple[str, int, str | None]:
    """The document's row once its status is ``wanted``, or as it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (row := await _row(container, document_id))[0] != wanted:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return row


def _feed(fifo: Path, data: bytes, seconds: float = 60) -> None:
    """Write ``data`` into ``fifo`` once a reader has opened it, then close it (its EOF)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:  # ENXIO: nobody reads it yet
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


async def test_an_unexpected_error_is_retried_by_the_queue_then_fails_the_document(
    own: Container, tmp_path: Path
) -> None:
    """A real worker meets an error no handler foresaw on every attempt: the queue retries
    it, then the document fails with PROCESSING_FAILED (not PROCESSING for the watchdog),
    and each error is logged with its traceback."""
    document = await _upload(own, await _editor(own))
    # A row of a format this release no longer reads: the pipeline meets a KeyError.
    async with own.session_factory() as session:
        await session.execute(
            update(DocumentRow)
            .where(DocumentRow.id == document.id)
            .values(mime_type="application/x-retired-format")
        )
        await session.commit()
    env = worker_env(own.settings, FOUNDRY_WORKER_THREADS="1", FOUNDRY_INGEST_MAX_ATTEMPTS="2")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_started()
        row = await _wait_for_status(own, document.id, "failed", 60)
    finally:
        worker.stop()
    assert row == ("failed", 2, "PROCESSING_FAILED")
    log = (tmp_path / "worker.log").read_text()
    assert log.count("ingest.unexpected_error") == 2
    assert "KeyError: 'application/x-retired-format'" in log


async def test_the_last_attempt_names_the_service_that_was_down(
    own: Container, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The parse server cannot start (its interpreter finds no standard library): the
    document goes back to pending, then fails with SERVICE_UNAVAILABLE, not with
    EMBEDDING_UNAVAILABLE: the embedder never ran."""
    document = await _upload(own, await _editor(own))
    ingestion = own.build_ingestion()
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "no-python-here"))
    with pytest.raises(TransientFailure):
        await ingestion.ingest(document.id)
    assert await _row(own, document.id) == ("pending", 1, None)
    assert await ingestion.ingest(document.id) is not None  # the last attempt
    assert await _row(own, document.id) == ("failed", 2, "SERVICE_UNAVAILABLE")


async def test_a_run_superseded_while_parsing_stops_before_chunking(own: Container) -> None:
    principal = await _editor(own)
    document = await _upload(own, principal)
    stored = own.blobs.local_path(document.storage_key)
    stored.unlink()
    os.mkfifo(stored)  # the parse lasts until the test writes the text
    embedder = GatedEmbedder(own.embedder)
    run = asyncio.create_task(own.build_ingestion(embedder).ingest(document.id))
    assert (await _wait_for_status(own, document.id, "processing", 30))[0] == "processing"
    await own.services.documents.reprocess(principal, document.id, ip=None)
    await asyncio.to_thread(_feed, stored, TEXT.encode())
    assert await asyncio.wait_for(run, 60) is None
    assert (embedder.chunkings, embedder.embedded) == (0, 0)
    assert await _status(own, document.id) == ("pending", 0)  # the reprocess's, untouched
    assert await own.services.documents.delete(principal, document.id, ip=None)


async def test_a_run_superseded_while_chunking_stops_before_embedding(own: Container) -> None:
    principal = await _editor(own)
    document = await _upload(own, principal)
    embedder = GatedEmbedder(own.embedder, holds=1)
    run = asyncio.create_task(own.build_ingestion(embedder).ingest(document.id))
    try:
        assert await embedder.reached_chunking(0)
        assert await own.services.documents.delete(principal, document.id, ip=None)
    finally:
        embedder.resume_all()
    assert await asyncio.wait_for(run, 60) is None
    assert embedder.embedded == 0
    assert (await _status(own, document.id))[0] == "deleted"


async def test_a_newer_claim_stays_in_flight_when_an_older_run_of_its_document_ends(
    own: Container,
) -> None:
    """Reprocessed while this process still runs it, the document is claimed here again;
    the old run ends first and must leave the new claim in flight, or a worker stopped
    now would not hand it back."""
    principal = await _editor(own)
    document = await _upload(own, principal)
    embedder = GatedEmbedder(own.embedder, holds=2)
    ingestion = own.build_ingestion(embedder)
    old = asyncio.create_task(ingestion.ingest(document.id))
    new: asyncio.Task[Document | None] | None = None
    try:
        assert await embedder.reached_chunking(0)
        [old_claim] = ingestion.in_flight()
        await own.services.documents.reprocess(principal, document.id, ip=None)
        new = asyncio.create_task(ingestion.ingest(document.id))
        assert await embedder.reached_chunking(1)
        assert len(ingestion.in_flight()) == 2

        embedder.resume[0].set()
        assert await asyncio.wait_for(old, 60) is None  # superseded
        [new_claim] = ingestion.in_flight()
        assert new_claim.updated_at > old_claim.updated_at
        # What a stopping worker does with the claims it abandons (the attempt given back).
        assert await ingestion.release(ingestion.in_flight()) == 1
        assert await _status(own, document.id) == ("pending", 0)
    finally:
        embedder.resume_all()
    assert await asyncio.wait_for(new, 60) is None  # handed back meanwhile
    assert ingestion.in_flight() == []
    assert await own.services.documents.delete(principal, document.id, ip=None)


async def test_a_cancelled_run_is_not_taken_for_a_failure(own: Container) -> None:
    """Cancellation (the worker's time limit, its loop stopping) goes through: the document
    is neither failed nor handed back by the run, and its claim leaves the in-flight list."""
    principal = await _editor(own)
    document = await _upload(own, principal)
    embedder = GatedEmbedder(own.embedder, holds=1)
    ingestion = own.build_ingestion(embedder)
    run = asyncio.create_task(ingestion.ingest(document.id))
    try:
        assert await embedder.reached_chunking(0)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    finally:
        embedder.resume_all()
    assert await _row(own, document.id) == ("processing", 1, None)
    assert ingestion.in_flight() == []
    assert await own.services.documents.delete(principal, document.id, ip=None)


async def test_a_claim_its_run_handed_back_at_shutdown_is_still_queued_by_the_release(
    own: Container,
) -> None:
    """A stopping worker closes its embedder under a run: the run hands its document back
    itself (an unexpected error, retried), and the queue's retry may be lost with the
    worker, so the release queues it all the same."""
    principal = await _editor(own)
    document = await _upload(own, principal)
    embedder = GatedEmbedder(own.embedder, 1, RuntimeError("the embedder was closed"))
    ingestion = own.build_ingestion(embedder)
    run = asyncio.create_task(ingestion.ingest(document.id))
    try:
        assert await embedder.reached_chunking(0)
        abandoned = ingestion.in_flight()  # what the worker notes before closing its pools
    finally:
        embedder.resume_all()
    with pytest.raises(TransientFailure):
        await asyncio.wait_for(run, 60)
    assert await _status(own, document.id) == ("pending", 1)
    queued = await own.queue_depth()
    assert await ingestion.release(abandoned) == 0  # already pending: nothing to reset
    assert await own.queue_depth() == queued + 1
    assert await own.services.documents.delete(principal, document.id, ip=None)


async def test_a_run_on_its_last_attempt_is_handed_back_not_failed_when_its_worker_stops(
    own: Container,
) -> None:
    """Closing a stopping worker's pools fails the runs under way: that is the worker's
    shutdown, not the document's fault, so even a last attempt goes back to the queue."""
    principal = await _editor(own)
    document = await _upload(own, principal)
    embedder = GatedEmbedder(own.embedder, 1, RuntimeError("the embedder was closed"))
    ingestion = own.build_ingestion(embedder)
    with pytest.raises(TransientFailure):  # the first of its two attempts
        embedder.resume_all()
        await asyncio.wait_for(ingestion.ingest(document.id), 60)
    assert await _row(own, document.id) == ("pending", 1, None)
    embedder = GatedEmbedder(own.embedder, 1, RuntimeError("the embedder was closed"))
    ingestion = own.build_ingestion(embedder)
    run = asyncio.create_task(ingestion.ingest(document.id))
    try:
        assert await embedder.reached_chunking(0)
        ingestion.stop()  # what the worker does before it closes its pools
        abandoned = ingestion.in_flight()
    finally:
        embedder.resume_all()
    with pytest.raises(TransientFailure):
        await asyncio.wait_for(run, 60)
    # Left as it was for the release: no transaction while the worker's pools close.
    assert await _row(own, document.id) == ("processing", 2, None)
    queued = await own.queue_depth()
    assert await ingestion.release(abandoned) == 1
    assert await _row(own, document.id) == ("pending", 1, None)  # its last attempt back
    assert await own.queue_depth() == queued + 1
    assert await own.services.documents.delete(principal, document.id, ip=None)


async def _handed_back_mid_run(container: Container, document_id: uuid.UUID) -> None:
    """A worker stopped (a deploy) while it chunks the document: the run fails as the
    worker's pools close, and the release hands the document back."""
    embedder = GatedEmbedder(container.embedder, 1, RuntimeError("the embedder was closed"))
    ingestion = container.build_ingestion(embedder)
    run = asyncio.create_task(ingestion.ingest(document_id))
    try:
        assert await embedder.reached_chunking(0)
        ingestion.stop()
        abandoned = ingestion.in_flight()
    finally:
        embedder.resume_all()
    with pytest.raises(TransientFailure):
        await asyncio.wait_for(run, 60)
    assert await ingestion.release(abandoned) == 1


async def test_hand_backs_at_shutdown_give_their_attempts_back(own: Container) -> None:
    """Two deploys while a long file is processed, then the first fault the document
    itself meets (the embedder down once): it is retried, not failed, since a hand-back
    is the worker's shutdown and no attempt of the document's."""
    principal = await _editor(own)  # two attempts per document
    document = await _upload(own, principal)
    for _ in range(2):
        await _handed_back_mid_run(own, document.id)
        assert await _row(own, document.id) == ("pending", 0, None)
    embedder = GatedEmbedder(own.embedder, failure=ServiceUnavailable("embedder blip"))
    with pytest.raises(TransientFailure):
        await asyncio.wait_for(own.build_ingestion(embedder).ingest(document.id), 60)
    assert await _row(own, document.id) == ("pending", 1, None)  # for the queue's retry
    assert await own.services.documents.delete(principal, document.id, ip=None)
