"""A worker killed mid-document: its heartbeat stops, the watchdog re-queues the document
and another worker finishes it; a live worker slower than the heartbeat timeout keeps
its document; documents that keep getting stuck fail after N attempts. Runs on its own
queue namespace."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from dramatiq import Message
from sqlalchemy import func, select, update

from domain.entities import Document, DocumentEvent, DocumentStatus, Principal, Role
from domain.ingestion.ports import IncomingFile
from domain.services.accounts import RequestOrigin
from infrastructure.container import BackendUrls, Container
from infrastructure.database.models import DocumentRow
from infrastructure.queue.jobs import LANE_QUEUES
from infrastructure.settings import Settings
from tests.conftest import WorkerProcess, worker_env
from tests.helpers import PASSWORD, unique_email


@pytest.fixture
async def isolated(settings: Settings, urls: BackendUrls) -> AsyncIterator[Container]:
    """A container whose queue, events and locks live under their own Redis prefix, and
    whose watchdog gives up on documents sooner than the session's worker does: that
    worker's watchdog also sees this test's documents (one database), so they are made
    overdue for this one only (see OVERDUE)."""
    own = settings.model_copy(
        update={
            "redis_key_prefix": f"recovery-{uuid.uuid4().hex[:8]}:",
            "ingest_processing_timeout_seconds": 60,
            "ingest_pending_timeout_seconds": 60,
            "ingest_heartbeat_timeout_seconds": 60,
        }
    )
    container = Container(own, urls)
    yield container
    await container.aclose()


# Past the isolated watchdog's timeouts (60 s), within the session worker's (5 minutes
# pending, 40 processing, 2 without a heartbeat), whose watchdog would otherwise race
# this test's.
OVERDUE = timedelta(seconds=90)


async def _editor(container: Container) -> Principal:
    session = await container.services.accounts.sign_up(
        unique_email(), PASSWORD, None, RequestOrigin()
    )
    return Principal(session.user.id, session.organization.id, Role.ADMIN, uuid.uuid4())


def _incoming(name: str, data: bytes) -> IncomingFile:
    remaining = [data]

    async def read(_: int) -> bytes:
        return remaining.pop() if remaining else b""

    return IncomingFile(filename=name, content_type="text/plain", read=read)


async def _status(container: Container, document_id: uuid.UUID) -> tuple[str, int]:
    async with container.session_factory() as session:
        row = (
            await session.execute(
                select(DocumentRow.status, DocumentRow.attempts).where(
                    DocumentRow.id == document_id
                )
            )
        ).one()
    return row.status, row.attempts


async def _processing_seconds(container: Container, document_id: uuid.UUID) -> float:
    """How long the document was processing, from the row: its claim set
    processing_started_at, READY set processed_at."""
    async with container.session_factory() as session:
        row = (
            await session.execute(
                select(DocumentRow.processing_started_at, DocumentRow.processed_at).where(
                    DocumentRow.id == document_id
                )
            )
        ).one()
    assert row.processing_started_at is not None and row.processed_at is not None, row
    took: timedelta = row.processed_at - row.processing_started_at
    return took.total_seconds()


async def _long_document_processing(
    container: Container, line: str, paragraphs: int = 400
) -> uuid.UUID:
    """Upload a long document and wait until a worker is processing it."""
    principal = await _editor(container)
    text = "\n\n".join(line.format(i=i) for i in range(paragraphs))
    [result] = await container.services.documents.upload(
        principal, [_incoming("long.txt", text.encode())], ip=None
    )
    assert result.document is not None
    deadline = time.monotonic() + 60
    while (status := (await _status(container, result.document.id))[0]) != "processing":
        # Past processing already, or never claimed: the test would not stop it mid-document.
        assert status == "pending", f"the document went {status} before it was seen processing"
        assert time.monotonic() < deadline, "no worker started processing the document"
        await asyncio.sleep(0.05)
    return result.document.id


async def _long_document_embedding(container: Container, line: str, paragraphs: int) -> uuid.UUID:
    """Upload a long document and wait until a worker is embedding its chunks (a
    progress event between parsing's 0 and the store's 0.95)."""
    principal = await _editor(container)
    # An async generator behind the port's AsyncIterator: closed below.
    events = cast(
        AsyncGenerator[DocumentEvent, None], container.events.subscribe(principal.organization_id)
    )
    following = asyncio.ensure_future(anext(events))
    try:
        # Listening before the upload, so no event is missed.
        deadline = time.monotonic() + 30
        while not container.events.subscriber_count():
            assert time.monotonic() < deadline, "the event subscription never listened"
            await asyncio.sleep(0.01)
        text = "\n\n".join(line.format(i=i) for i in range(paragraphs))
        [result] = await container.services.documents.upload(
            principal, [_incoming("long.txt", text.encode())], ip=None
        )
        assert result.document is not None
        async with asyncio.timeout(120):
            while True:
                event = await following
                if event.progress is not None and 0 < event.progress < 0.95:
                    return result.document.id
                following = asyncio.ensure_future(anext(events))
    finally:
        following.cancel()
        await events.aclose()


async def _finished_by(
    worker: WorkerProcess, container: Container, document_id: uuid.UUID
) -> tuple[str, int]:
    """Start ``worker``, wait until the document is READY or FAILED (or five minutes have
    passed: embedding a long document on a loaded machine has taken two), stop the worker."""
    try:
        worker.wait_started()
        deadline = time.monotonic() + 300
        while True:
            status, attempts = await _status(container, document_id)
            if status in ("ready", "failed") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
    return status, attempts


async def test_killed_worker_is_recovered_by_the_watchdog_once_its_heartbeat_stops(
    isolated: Container, tmp_path: Path
) -> None:
    env = worker_env(
        isolated.settings,
        FOUNDRY_WORKER_THREADS="1",
        FOUNDRY_WATCHDOG_INTERVAL_SECONDS="1",
        # Only the stopped heartbeat can give the document back within this test.
        FOUNDRY_INGEST_PROCESSING_TIMEOUT_SECONDS="3600",
        FOUNDRY_INGEST_HEARTBEAT_SECONDS="0.5",
        FOUNDRY_INGEST_HEARTBEAT_TIMEOUT_SECONDS="3",
    )
    first = WorkerProcess(env, tmp_path / "first.log")
    first.wait_started()
    document_id = await _long_document_processing(
        isolated, "Paragraph {i}: the harbour master records ship {i} arriving with cargo."
    )
    first.kill()  # SIGKILL mid-document: no cleanup, no ack
    killed_at = time.monotonic()
    assert (await _status(isolated, document_id))[0] == "processing"

    second = WorkerProcess(env, tmp_path / "second.log")
    assert await _finished_by(second, isolated, document_id) == ("ready", 2)
    assert b"watchdog.recovered" in (tmp_path / "second.log").read_bytes()
    assert time.monotonic() - killed_at < 120


async def test_a_live_worker_slower_than_the_heartbeat_timeout_keeps_its_document(
    isolated: Container, tmp_path: Path
) -> None:
    heartbeat_timeout = 1.0
    env = worker_env(
        isolated.settings,
        FOUNDRY_WORKER_THREADS="1",
        FOUNDRY_WATCHDOG_INTERVAL_SECONDS="0.2",
        FOUNDRY_INGEST_PROCESSING_TIMEOUT_SECONDS="3600",
        FOUNDRY_INGEST_HEARTBEAT_SECONDS="0.3",
        FOUNDRY_INGEST_HEARTBEAT_TIMEOUT_SECONDS=str(heartbeat_timeout),
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.wait_started()
    document_id = await _long_document_processing(
        isolated,
        "Paragraph {i}: the ferry pilot notes vessel {i} mooring at the northern quay.",
        paragraphs=5_000,
    )
    # One attempt: re-queued, it would have been claimed again (the log can show other
    # tests' leftovers recovered: the watchdog sees the whole database).
    assert await _finished_by(worker, isolated, document_id) == ("ready", 1)
    # That one claim outlasted the heartbeat timeout several times over: only the
    # heartbeats kept the watchdog from taking the document back.
    assert await _processing_seconds(isolated, document_id) > 3 * heartbeat_timeout


async def _two_uploads(container: Container, first: str, second: str) -> tuple[Document, Document]:
    """Two small text documents of a new organisation, queued (no worker takes them here:
    the container's queue namespace is its own)."""
    principal = await _editor(container)
    uploads = [
        _incoming(f"{name}.txt", f"{name} {uuid.uuid4()}".encode()) for name in (first, second)
    ]
    results = await container.services.documents.upload(principal, uploads, ip=None)
    one, two = (r.document for r in results)
    assert isinstance(one, Document) and isinstance(two, Document)
    return one, two


async def test_watchdog_fails_documents_after_the_last_attempt_and_requeues_lost_ones(
    isolated: Container,
) -> None:
    stuck, lost = await _two_uploads(isolated, "stuck", "lost")
    long_ago = datetime.now(UTC) - OVERDUE
    async with isolated.session_factory() as session:
        await session.execute(
            update(DocumentRow)
            .where(DocumentRow.id == stuck.id)
            .values(status="processing", attempts=3, processing_started_at=long_ago)
        )
        await session.execute(
            update(DocumentRow).where(DocumentRow.id == lost.id).values(updated_at=long_ago)
        )
        await session.commit()
    assert await _drop_job(isolated, lost.id)  # the message lost: Redis restarted empty
    queued_before = await isolated.queue_depth()

    # Other tests' unprocessed documents may be overdue too: a pass looks at all of them.
    recovered = await isolated.build_ingestion().recover_stuck()

    assert recovered >= 2
    assert await _status(isolated, stuck.id) == (DocumentStatus.FAILED.value, 3)
    async with isolated.session_factory() as session:
        code = await session.scalar(
            select(DocumentRow.error_code).where(DocumentRow.id == stuck.id)
        )
    assert code == "PROCESSING_TIMEOUT"
    assert (await _status(isolated, lost.id))[0] == "pending"
    assert await isolated.queue_depth() >= queued_before + 1


async def test_watchdog_leaves_pending_documents_whose_job_is_still_queued(
    isolated: Container,
) -> None:
    """A backlog longer than the pending timeout is not a lost message: the document is
    not queued twice, and its pending clock restarts so later passes look at others."""
    waits, lost = await _two_uploads(isolated, "waits", "lost")
    long_ago = datetime.now(UTC) - OVERDUE
    async with isolated.session_factory() as session:
        await session.execute(
            update(DocumentRow)
            .where(DocumentRow.id.in_([waits.id, lost.id]))
            .values(updated_at=long_ago)
        )
        await session.commit()
    assert await _drop_job(isolated, lost.id)
    assert await isolated.queue.waiting([waits.id, lost.id]) == {waits.id}
    queued_before = await isolated.queue_depth()
    started = datetime.now(UTC)

    await isolated.build_ingestion().recover_stuck()

    assert await isolated.queue.waiting([lost.id]) == {lost.id}  # queued again
    async with isolated.session_factory() as session:
        rows = {
            row.id: row
            for row in await session.execute(
                select(DocumentRow.id, DocumentRow.status, DocumentRow.updated_at).where(
                    DocumentRow.id.in_([waits.id, lost.id])
                )
            )
        }
    assert rows[waits.id].status == rows[lost.id].status == "pending"
    assert rows[waits.id].updated_at >= started  # not overdue any more
    # Exactly one message for each: the waiting one was not queued a second time.
    assert await _jobs_for(isolated, waits.id) == 1
    assert await _jobs_for(isolated, lost.id) == 1
    assert await isolated.queue_depth() >= queued_before + 1


async def test_one_watchdog_pass_finds_a_lost_job_behind_more_waiting_ones_than_a_page(
    isolated: Container,
) -> None:
    """A backlog of overdue documents whose jobs only wait, longer than a page, and one
    lost job behind them (overdue the least): one pass reads page after page and queues
    the lost one again, instead of only restarting the first page's clocks."""
    waiting: list[Document] = []
    for _ in range(3):
        waiting.extend(await _two_uploads(isolated, "waits", "waits-too"))
    [lost] = [d for d in await _two_uploads(isolated, "lost", "spare") if d.filename == "lost.txt"]
    long_ago = datetime.now(UTC) - OVERDUE
    async with isolated.session_factory() as session:
        for age, document in enumerate(waiting, start=1):
            await session.execute(
                update(DocumentRow)
                .where(DocumentRow.id == document.id)
                .values(updated_at=long_ago - timedelta(minutes=age))
            )
        await session.execute(
            update(DocumentRow).where(DocumentRow.id == lost.id).values(updated_at=long_ago)
        )
        await session.commit()
    assert await _drop_job(isolated, lost.id)

    await isolated.build_ingestion().recover_stuck(page=2)

    assert await isolated.queue.waiting([lost.id]) == {lost.id}  # queued again
    for document in waiting:
        assert await _jobs_for(isolated, document.id) == 1  # not queued twice
    async with isolated.session_factory() as session:
        overdue = await session.scalar(
            select(func.count())
            .select_from(DocumentRow)
            .where(
                DocumentRow.id.in_([d.id for d in [*waiting, lost]]),
                DocumentRow.updated_at < long_ago + timedelta(seconds=1),
            )
        )
    assert overdue == 0  # every one of them looked at in this pass


async def _messages(container: Container) -> list[tuple[str, str, uuid.UUID]]:
    """Every ingestion job in the container's queues: (queue, Redis message id, document)."""
    found = []
    for queue in LANE_QUEUES:
        key = f"{container.broker.namespace}:{queue}.msgs"
        for message_id, data in (await container.redis.hgetall(key)).items():
            message: Message[None] = Message.decode(_text(data).encode())
            found.append((queue, _text(message_id), uuid.UUID(str(message.args[0]))))
    return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _jobs_for(container: Container, document_id: uuid.UUID) -> int:
    return sum(1 for _, _, document in await _messages(container) if document == document_id)


async def _drop_job(container: Container, document_id: uuid.UUID) -> bool:
    """Remove the document's queued job, as a Redis that lost its data would have."""
    dropped = False
    for queue, message_id, document in await _messages(container):
        if document == document_id:
            key = f"{container.broker.namespace}:{queue}"
            await container.redis.lrem(key, 0, message_id)
            await container.redis.hdel(f"{key}.msgs", message_id)
            dropped = True
    return dropped


async def test_a_worker_stopped_mid_document_hands_it_back(
    isolated: Container, tmp_path: Path
) -> None:
    """SIGTERM (a deploy) with a document still running after the grace period: it goes
    back to pending at once, not left PROCESSING for the 40-minute timeout; the next
    worker finishes it."""
    line = "Paragraph {i}: the lighthouse keeper logs ship {i} passing the reef at dawn."
    await _stopped_and_resumed(isolated, tmp_path, _long_document_processing(isolated, line))


async def test_a_worker_stopped_while_embedding_hands_the_document_back(
    isolated: Container, tmp_path: Path
) -> None:
    """The same, with the grace period over while the chunks are being embedded: closing
    the worker's pools ends that run, which must not hide it from the hand-back."""
    line = "Paragraph {i}: the keeper's log counts ship {i} and the tide at dusk."
    reached = _long_document_embedding(isolated, line, 3_000)
    await _stopped_and_resumed(isolated, tmp_path, reached)


async def _stopped_and_resumed(
    isolated: Container, tmp_path: Path, reached: Coroutine[None, None, uuid.UUID]
) -> None:
    """Starts a worker, awaits ``reached`` (a document at the point to stop at), stops the
    worker with no grace: the document must be pending again, and a second worker
    finishes it."""
    env = worker_env(
        isolated.settings, FOUNDRY_WORKER_THREADS="1", FOUNDRY_SHUTDOWN_GRACE_SECONDS="0"
    )
    first = WorkerProcess(env, tmp_path / "first.log")
    first.wait_started()
    document_id = await reached
    first.stop()  # SIGTERM, no grace
    assert first.process.returncode == 0
    # Its attempt given back: the deploy was no fault of the document's.
    assert await _status(isolated, document_id) == ("pending", 0)
    assert b"worker.released_abandoned" in (tmp_path / "first.log").read_bytes()

    second = WorkerProcess(env, tmp_path / "second.log")
    assert await _finished_by(second, isolated, document_id) == ("ready", 1)
