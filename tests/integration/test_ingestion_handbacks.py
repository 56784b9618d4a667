"""What the watchdog, the release at shutdown, a bulk reset and a missing stored file do
to a document, and what operators see of a run: a queue that refuses a job does not end
the watchdog's pass nor lose the document; a worker that beat for its document since the
watchdog looked keeps it; documents handed back or reset are announced on documentEvents;
a stored file that stays missing fails its document with STORED_FILE_MISSING (not as a
bad file); each run's log lines name their document; failures are counted by code.
On Redis prefixes (and, where the watchdog or a bulk reset could touch other tests'
documents, databases) of their own."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
import structlog
from prometheus_client import REGISTRY
from sqlalchemy import text

from domain.entities import Document, DocumentEvent, DocumentStatus, Principal
from domain.errors import TransientFailure
from infrastructure.container import BackendUrls, Container
from infrastructure.database.embedding_column import resize_and_reset
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import Settings
from tests.helpers import isolated_container
from tests.integration.test_gemini_ingestion import _row
from tests.integration.test_worker_recovery import _editor, _incoming

# Nothing listens on port 1: the queue's Redis refuses every job, for real.
REFUSING_REDIS = "redis://127.0.0.1:1/0"
TIMEOUT = timedelta(seconds=60)  # the watchdog's timeouts in these tests
OVERDUE = timedelta(seconds=90)


@pytest.fixture
async def own_database(
    settings: Settings, urls: BackendUrls, embedded_postgres: EmbeddedPostgres
) -> AsyncIterator[Container]:
    """Its own database: the watchdog and reset_all look at every organisation's rows."""
    container = await isolated_container(
        settings,
        urls,
        embedded_postgres,
        "handbacks",
        ingest_processing_timeout_seconds=int(TIMEOUT.total_seconds()),
        ingest_pending_timeout_seconds=int(TIMEOUT.total_seconds()),
        ingest_heartbeat_timeout_seconds=TIMEOUT.total_seconds(),
    )
    yield container
    await container.aclose()


@pytest.fixture
async def own(settings: Settings, urls: BackendUrls) -> AsyncIterator[Container]:
    """A queue no test worker reads; two attempts per document."""
    container = Container(
        settings.model_copy(
            update={
                "redis_key_prefix": f"handbacks-{uuid.uuid4().hex[:8]}:",
                "ingest_max_attempts": 2,
            }
        ),
        urls,
    )
    yield container
    await container.aclose()


async def _upload(container: Container, principal: Principal, count: int = 1) -> list[Document]:
    results = await container.services.documents.upload(
        principal,
        [
            _incoming(
                f"tides-{n}.txt", f"High water at the harbour, note {n} {uuid.uuid4()}".encode()
            )
            for n in range(count)
        ],
        ip=None,
    )
    return [result.document for result in results if result.document is not None]


async def _claim(container: Container, document: Document, at: datetime) -> Document:
    """What a worker's claim does, at ``at``."""
    async with container.uow_factory.organization(document.organization_id) as uow:
        claimed = await uow.documents.claim(document.id, at)
        await uow.commit()
    assert claimed is not None
    return claimed


async def _watchdog_pass_with_redis_down(
    container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    """A watchdog pass over the container's database while its Redis refuses
    connections: it recovers nothing (what it logs is in ``caplog``)."""
    assert container.settings.database_url is not None
    refusing = Container(
        container.settings,
        BackendUrls(container.settings.database_url.get_secret_value(), REFUSING_REDIS),
    )
    try:
        with caplog.at_level(logging.WARNING, logger="foundry.ingestion"):
            assert await refusing.build_ingestion().recover_stuck() == 0
    finally:
        await refusing.aclose()


async def test_a_queue_the_watchdog_cannot_read_leaves_overdue_pending_documents_as_they_were(
    own_database: Container, caplog: pytest.LogCaptureFixture
) -> None:
    principal = await _editor(own_database)
    [document] = await _upload(own_database, principal)
    long_ago = datetime.now(UTC) - OVERDUE
    async with own_database.session_factory() as session:
        await session.execute(
            text("UPDATE documents SET updated_at = :at WHERE id = :id"),
            {"at": long_ago, "id": document.id},
        )
        await session.commit()
    await _watchdog_pass_with_redis_down(own_database, caplog)
    messages = [r.getMessage() for r in caplog.records]
    assert any("watchdog.queue_unreadable" in m for m in messages)
    assert any(f"watchdog.recover_failed document_id={document.id}" in m for m in messages)
    async with own_database.session_factory() as session:
        updated = await session.scalar(
            text("SELECT updated_at FROM documents WHERE id = :id"), {"id": document.id}
        )
    assert updated == long_ago  # still overdue: the next pass, its queue back, decides


async def test_a_refused_job_neither_ends_the_watchdogs_pass_nor_loses_its_document(
    own_database: Container, caplog: pytest.LogCaptureFixture
) -> None:
    principal = await _editor(own_database)
    documents = await _upload(own_database, principal, 3)
    # Their workers died long ago: no heartbeat since.
    for document in documents:
        await _claim(own_database, document, datetime.now(UTC) - OVERDUE)
    await _watchdog_pass_with_redis_down(own_database, caplog)
    failures = [r for r in caplog.records if "watchdog.recover_failed" in r.getMessage()]
    assert len(failures) == 3  # every document tried, each refusal logged
    # Left as they were: stuck, so the next pass (its queue back) re-queues them all.
    for document in documents:
        assert await _row(own_database, document.id) == ("processing", 1, None)
    queued = await own_database.queue_depth()
    assert await own_database.build_ingestion().recover_stuck() == 3
    for document in documents:
        assert await _row(own_database, document.id) == ("pending", 1, None)
    assert await own_database.queue_depth() == queued + 3


async def _waiting_for_a_lock(container: Container, claiming: asyncio.Task[object]) -> None:
    """Until ``claiming`` has finished or waits for a row lock."""
    for _ in range(500):
        if claiming.done():
            return
        async with container.engine.connect() as connection:
            waiting = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid)"
                    " WHERE NOT granted AND datname = current_database()"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the claim neither finished nor waited")


async def test_a_job_the_watchdog_queues_before_its_commit_is_claimed_after_it(
    own_database: Container,
) -> None:
    """The watchdog queues a stuck document's job before it commits the document's
    return to pending: a worker that takes the job at once must wait for that commit,
    not pass over a row still processing and drop the job."""
    principal = await _editor(own_database)
    [document] = await _upload(own_database, principal)
    claimed = await _claim(own_database, document, datetime.now(UTC) - OVERDUE)
    factory = own_database.uow_factory
    async with factory.organization(principal.organization_id) as watchdog:
        assert await watchdog.documents.requeue_if_unchanged(claimed, datetime.now(UTC))
        # The job is out; a worker claims the document now, before the commit.

        async def claim() -> Document | None:
            async with factory.organization(principal.organization_id) as worker:
                again = await worker.documents.claim(document.id, datetime.now(UTC))
                await worker.commit()
            return again

        claiming = asyncio.ensure_future(claim())
        await _waiting_for_a_lock(own_database, cast(asyncio.Task[object], claiming))
        await watchdog.commit()
    again = await asyncio.wait_for(claiming, 30)
    assert again is not None and again.status is DocumentStatus.PROCESSING
    assert await _row(own_database, document.id) == ("processing", 2, None)


async def test_a_worker_that_beat_since_the_watchdog_looked_keeps_its_document(
    own_database: Container,
) -> None:
    principal = await _editor(own_database)
    late, dead = await _upload(own_database, principal, 2)
    claimed_late = await _claim(own_database, late, datetime.now(UTC) - OVERDUE)
    await _claim(own_database, dead, datetime.now(UTC) - OVERDUE)
    now = datetime.now(UTC)
    async with own_database.uow_factory.system() as lookup:
        stuck = await lookup.maintenance.stuck(now - timedelta(hours=1), now - TIMEOUT, now, 10)
    seen = {document.id: document for document in stuck}
    assert set(seen) == {late.id, dead.id}
    # The slow worker's heartbeat lands between the watchdog's read and its update.
    async with own_database.uow_factory.organization(principal.organization_id) as uow:
        assert await uow.documents.heartbeat(claimed_late, datetime.now(UTC))
        await uow.commit()
    async with own_database.uow_factory.organization(principal.organization_id) as uow:
        assert await uow.documents.requeue_if_unchanged(seen[late.id], now) is None
        assert (
            await uow.documents.fail_if_unchanged(seen[late.id], "PROCESSING_TIMEOUT", now) is None
        )
        requeued = await uow.documents.requeue_if_unchanged(seen[dead.id], now)
        await uow.commit()
    assert requeued is not None and requeued.status is DocumentStatus.PENDING
    assert await _row(own_database, late.id) == ("processing", 1, None)


class _Events:
    """An organisation's documentEvents, from the moment this process listens."""

    def __init__(self, container: Container, organization_id: uuid.UUID) -> None:
        self._container = container
        # An async generator behind the port's AsyncIterator: closed by close().
        self._events = cast(
            AsyncGenerator[DocumentEvent, None], container.events.subscribe(organization_id)
        )
        self._next = asyncio.ensure_future(anext(self._events))

    async def listening(self) -> None:
        for _ in range(1_000):
            if self._container.events.subscriber_count():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("never subscribed")

    async def until(self, wanted: set[uuid.UUID], newer_than: datetime) -> list[DocumentEvent]:
        """Events until each of ``wanted`` has been announced PENDING since ``newer_than``."""
        seen: list[DocumentEvent] = []
        async with asyncio.timeout(20):
            while wanted:
                event = await self._next
                self._next = asyncio.ensure_future(anext(self._events))
                seen.append(event)
                document = event.document
                if document.status is DocumentStatus.PENDING and document.updated_at > newer_than:
                    wanted.discard(document.id)
        return seen

    async def close(self) -> None:
        self._next.cancel()
        await self._events.aclose()


async def test_documents_a_stopping_worker_hands_back_are_announced(own: Container) -> None:
    principal = await _editor(own)
    [document] = await _upload(own, principal)
    claimed = await _claim(own, document, datetime.now(UTC))
    events = _Events(own, principal.organization_id)
    try:
        await events.listening()
        assert await own.build_ingestion().release([claimed]) == 1
        [announced] = await events.until({document.id}, claimed.updated_at)
    finally:
        await events.close()
    assert announced.document.id == document.id
    assert await _row(own, document.id) == ("pending", 0, None)  # its attempt given back
    assert await own.services.documents.delete(principal, document.id, ip=None)


async def test_documents_reset_in_bulk_are_announced_before_they_are_queued(
    own_database: Container,
) -> None:
    first, second = await _editor(own_database), await _editor(own_database)
    ours = await _upload(own_database, first, 2)
    theirs = await _upload(own_database, second, 1)
    for document in (*ours, *theirs):
        await _claim(own_database, document, datetime.now(UTC))
    started = datetime.now(UTC)
    ingestion = own_database.build_ingestion()
    events = _Events(own_database, first.organization_id)
    try:
        await events.listening()
        reset = await resize_and_reset(own_database.engine, 384, datetime.now(UTC))
        assert set(reset) == {d.id for d in (*ours, *theirs)}
        queued = await own_database.queue_depth()
        assert await ingestion.enqueue(reset) == 3
        seen = await events.until({d.id for d in ours}, started)
    finally:
        await events.close()
    # Only this organisation's, each PENDING.
    assert {event.document.id for event in seen} == {d.id for d in ours}
    assert await own_database.queue_depth() == queued + 3


def _failures(code: str) -> float:
    value = REGISTRY.get_sample_value(
        "foundry_ingest_documents_total", {"outcome": "failed", "error_code": code}
    )
    return value or 0.0


async def test_a_stored_file_that_stays_missing_fails_with_its_own_code(own: Container) -> None:
    """Retried first (the storage may be back soon); after the last attempt, FAILED with
    STORED_FILE_MISSING, counted under that code; never PARSE_FAILED, a bad file."""
    principal = await _editor(own)
    [document] = await _upload(own, principal)
    await own.blobs.delete(document.storage_key)
    before = _failures("STORED_FILE_MISSING")
    ingestion = own.build_ingestion()
    with pytest.raises(TransientFailure):
        await ingestion.ingest(document.id)
    assert await _row(own, document.id) == ("pending", 1, None)  # for the queue's retry
    failed = await ingestion.ingest(document.id)  # the last of its two attempts
    assert failed is not None
    assert await _row(own, document.id) == ("failed", 2, "STORED_FILE_MISSING")
    assert _failures("STORED_FILE_MISSING") == before + 1


async def test_a_runs_log_lines_name_its_document_and_a_duplicate_job_is_counted_skipped(
    own: Container, caplog: pytest.LogCaptureFixture
) -> None:
    principal = await _editor(own)
    [document] = await _upload(own, principal)
    ingestion = own.build_ingestion()
    skipped = REGISTRY.get_sample_value("foundry_ingest_skipped_total") or 0.0
    with caplog.at_level(logging.INFO, logger="foundry.ingestion"):
        ready = await ingestion.ingest(document.id)
        assert ready is not None and ready.status is DocumentStatus.READY
        assert await ingestion.ingest(document.id) is None  # a duplicate job
    events = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    stages = [e for e in events if e.get("event") == "ingest.stage"]
    assert {e["stage"] for e in stages} == {"parse", "chunk", "embed", "store"}
    for stage in stages:
        assert stage["document_id"] == str(document.id)
        assert stage["organization_id"] == str(principal.organization_id)
    [dropped] = [e for e in events if e.get("event") == "ingest.skipped"]
    assert dropped["document_id"] == str(document.id)
    assert REGISTRY.get_sample_value("foundry_ingest_skipped_total") == skipped + 1
    # The context ends with the run: nothing after it is attributed to the document.
    assert "document_id" not in structlog.contextvars.get_contextvars()
