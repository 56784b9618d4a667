"""The worker side: parse -> chunk -> embed -> store, and the watchdog for stuck documents."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol
from uuid import UUID

from domain.entities import ChunkDraft, Document, DocumentEvent, DocumentStatus, ParsedDocument
from domain.errors import (
    EmptyDocument,
    ErrorCode,
    IngestionFailed,
    ParseFailed,
    ProcessingFailed,
    ServiceUnavailable,
    TransientFailure,
)
from domain.ingestion.chunking import ChunkingOptions, chunk_document
from domain.ingestion.filetypes import FileKind
from domain.ingestion.ports import (
    BlobStore,
    DocumentParser,
    Embedder,
    EventBus,
    JobQueue,
    ParseAbandoned,
)
from domain.ports import Clock, UnitOfWorkFactory

_KIND_BY_MIME = {kind.mime_type: kind for kind in FileKind}
# Documents read (and events published) per query when announcing a bulk reset.
_PAGE = 500
# Overdue documents the watchdog reads (and looks for in the queue) at a time.
_WATCHDOG_PAGE = 500
log = logging.getLogger("foundry.ingestion")


class StageObserver(Protocol):
    """Receives the duration (and size) of each pipeline stage: metrics and logs."""

    def run(self, document: Document) -> AbstractContextManager[None]:
        """The span of one run on ``document``: what is logged inside it (each stage,
        the outcome, warnings) names the document and its organisation."""
        ...

    def stage(self, name: str, seconds: float, size: int) -> None: ...

    def outcome(self, document: Document, outcome: str) -> None:
        """How a run ended: "ready", or "failed:<ERROR_CODE>" (a code of the registry)."""
        ...

    def skipped(self, document_id: UUID) -> None:
        """A message whose document was not pending (a duplicate message, or the document
        was deleted, finished or claimed meanwhile): nothing was done."""
        ...


@dataclass(frozen=True, slots=True)
class IngestionOptions:
    chunking: ChunkingOptions = field(default_factory=ChunkingOptions)
    # Chunks handed to the embedder per call: large enough that it can sort them by
    # length and pad little, small enough for steady progress events.
    embed_group_size: int = 128
    max_attempts: int = 3
    processing_timeout: timedelta = timedelta(minutes=40)
    pending_timeout: timedelta = timedelta(minutes=5)
    # While a run works on a document it records a heartbeat this often; the watchdog
    # re-queues a processing document whose heartbeat stopped for heartbeat_timeout
    # (a worker killed outright), long before processing_timeout.
    heartbeat_interval: timedelta = timedelta(seconds=15)
    heartbeat_timeout: timedelta = timedelta(minutes=2)
    progress_interval_seconds: float = 0.5


class IngestionService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        blobs: BlobStore,
        parser: DocumentParser,
        embedder: Embedder,
        events: EventBus,
        queue: JobQueue,
        clock: Clock,
        observer: StageObserver,
        options: IngestionOptions,
    ) -> None:
        self._uow_factory = uow_factory
        self._blobs = blobs
        self._parser = parser
        self._embedder = embedder
        self._events = events
        self._queue = queue
        self._clock = clock
        self._observer = observer
        self._options = options
        # Claims this process has made and not finished (see in_flight()), by run: a
        # reprocess may let this process claim a document again while its old run goes on,
        # and each run must remove only its own claim.
        self._in_flight: dict[object, Document] = {}
        # Set by a worker that is stopping: what fails from then on is the worker's own
        # shutdown (its pools closing), never the document's fault.
        self._stopping = False

    def stop(self) -> None:
        """The worker is stopping (called from its shutdown, on another thread, before it
        notes the claims in flight and closes its pools): runs that fail from now on leave
        their documents to the release, even on their last attempt."""
        self._stopping = True

    def in_flight(self) -> list[Document]:
        """The claims still being worked on, as claimed (safe from another thread)."""
        return list(self._in_flight.copy().values())

    async def release(self, claims: Sequence[Document]) -> int:
        """Hand back claims a stopping worker abandons: pending again (unless they moved
        on meanwhile) and queued, for the next worker at once rather than after the
        watchdog's processing timeout. Returns how many.

        Each gets its attempt back: the worker's shutdown (a deploy) is not the document's
        fault, so a long file that meets several deploys keeps every attempt for the
        faults it meets itself. (A worker that died without a word is another matter: the
        watchdog's recovery counts that attempt, since the document may have killed it.)"""
        released = 0
        for claimed in claims:
            async with self._uow_factory.organization(claimed.organization_id) as uow:
                reset = await uow.documents.hand_back_if_unchanged(claimed, self._clock.now())
                # Or its run handed it back itself, failing as the worker's pools closed:
                # the retry it asked the queue for may be lost with the stopping worker.
                current = reset or await uow.documents.get(claimed.id)
                if reset is not None:  # before the job: PENDING reaches listeners first
                    uow.on_commit(partial(self._events.publish, DocumentEvent(reset, 0.0)))
                if current is not None and current.status is DocumentStatus.PENDING:
                    # The old message may come back too: claiming is idempotent.
                    uow.on_commit(
                        partial(self._queue.enqueue_ingest, claimed.id, claimed.organization_id)
                    )
                await uow.commit()
            released += reset is not None
        return released

    def warm_up(self) -> None:
        self._embedder.warm_up()

    @property
    def max_attempts(self) -> int:
        """Runs a document gets before a fault that persists fails it."""
        return self._options.max_attempts

    async def ingest(self, document_id: UUID) -> Document | None:
        """Process one document if it is pending; safe to run twice.

        Bad files end FAILED with their code. Transient faults, and errors nobody
        foresaw, raise TransientFailure for the queue to retry, until the last attempt,
        which marks the document FAILED (EMBEDDING_UNAVAILABLE, SERVICE_UNAVAILABLE or
        PROCESSING_FAILED).
        """
        document = await self._claim(document_id)
        if document is None:
            self._observer.skipped(document_id)
            return None
        run = object()
        self._in_flight[run] = document
        # The heartbeat task, created inside, inherits the run's log context.
        with self._observer.run(document):
            done = asyncio.Event()
            # Set by the heartbeat when the claim is lost; read by the parser's thread.
            superseded = threading.Event()
            heartbeat = asyncio.create_task(
                self._heartbeat(document, done, superseded), name=f"heartbeat-{document.id}"
            )
            try:
                return await self._process(document, superseded)
            finally:
                done.set()  # not cancelled: a beat in progress ends its transaction first
                await heartbeat
                del self._in_flight[run]

    async def _heartbeat(
        self, claimed: Document, done: asyncio.Event, superseded: threading.Event
    ) -> None:
        """Tell the watchdog this run is alive until it is done or its claim is no longer
        current; then set ``superseded``, which abandons a parse in progress."""
        interval = self._options.heartbeat_interval.total_seconds()
        while True:
            try:
                await asyncio.wait_for(done.wait(), interval)
                return
            except TimeoutError:
                pass
            try:
                async with self._uow_factory.organization(claimed.organization_id) as uow:
                    current = await uow.documents.heartbeat(claimed, self._clock.now())
                    await uow.commit()
            except Exception:  # the database is down: try again next time
                log.warning("ingest.heartbeat_failed document_id=%s", claimed.id, exc_info=True)
                continue
            if not current:  # deleted, reprocessed or recovered meanwhile
                superseded.set()
                return

    async def _process(self, document: Document, superseded: threading.Event) -> Document | None:
        try:
            await self._events.publish(DocumentEvent(document, 0.0))
            parsed, drafts = await self._parse_and_chunk(document, superseded)
            embeddings = await self._embed(document, drafts)
            return await self._store(document, parsed, drafts, embeddings)
        except _Superseded:
            log.info("ingest.superseded document_id=%s", document.id)
            return None
        except IngestionFailed as failure:
            if self._stopping:  # perhaps the worker's own shutdown (its parse server gone)
                raise TransientFailure(str(failure)) from failure
            return await self._fail(document, failure.code.value)
        except _EmbedderUnavailable as fault:
            return await self._retry_or_fail(
                document, ErrorCode.EMBEDDING_UNAVAILABLE, fault, str(fault)
            )
        except _StoredFileMissing as fault:
            return await self._retry_or_fail(
                document, ErrorCode.STORED_FILE_MISSING, fault, str(fault)
            )
        except (TransientFailure, ServiceUnavailable) as fault:  # the database, the parser
            return await self._retry_or_fail(
                document, ErrorCode.SERVICE_UNAVAILABLE, fault, str(fault)
            )
        except Exception as exc:
            # A bug, or a fault nobody foresaw: maybe passing (a connection reset), maybe
            # not. Retried like a dependency that is down, so that one bad moment does not
            # fail the document and a lasting cause fails it after the last attempt rather
            # than leaving it PROCESSING until the watchdog gives up on it.
            # (CancelledError and KeyboardInterrupt are no Exception: they go through.)
            log.error(
                "ingest.unexpected_error document_id=%s attempt=%d",
                document.id,
                document.attempts,
                exc_info=True,
            )
            reason = f"unexpected {type(exc).__name__}: {exc}"
            return await self._retry_or_fail(document, ProcessingFailed.code, exc, reason)

    async def _retry_or_fail(
        self, document: Document, code: ErrorCode, fault: Exception, reason: str
    ) -> Document | None:
        """Hand the document back and raise TransientFailure so the queue's retry can
        claim it again (if the database is down too, the watchdog does it later), or, on
        the last attempt, fail it with ``code``."""
        if self._stopping:
            # The worker's pools are closing under this run, and its event loop stops
            # next: a transaction begun now could be left open holding the row's lock,
            # which the worker's release (of every claim it noted) would then wait on.
            raise TransientFailure(reason) from fault
        with contextlib.suppress(Exception):
            if document.attempts >= self._options.max_attempts:
                return await self._fail(document, code.value)
            await self._requeue(document)
        raise TransientFailure(reason) from fault

    async def _claim(self, document_id: UUID) -> Document | None:
        async with self._uow_factory.system() as lookup:
            organization_id = await lookup.maintenance.organization_of(document_id)
        if organization_id is None:
            return None
        async with self._uow_factory.organization(organization_id) as uow:
            document = await uow.documents.claim(document_id, self._clock.now())
            await uow.commit()
        return document

    async def _parse_and_chunk(
        self, document: Document, superseded: threading.Event
    ) -> tuple[ParsedDocument, list[ChunkDraft]]:
        kind = _KIND_BY_MIME[document.mime_type]
        path = self._blobs.local_path(document.storage_key)
        # Checked here: in the parse sandbox a missing file is just another crash of the
        # child, which would fail the document as PARSE_FAILED, a bad file.
        if not await asyncio.to_thread(self._blobs.exists, document.storage_key):
            await self._raise_if_superseded(document)  # deleted meanwhile: blob and all
            raise _StoredFileMissing(f"stored file {document.storage_key} is missing")
        started = time.perf_counter()
        try:
            # A parse can take minutes: once the heartbeat finds the claim lost, a parser
            # that can stop (the sandbox) gives its slot back at once, not at its timeout.
            parsed = await asyncio.to_thread(self._parser.parse, path, kind, superseded.is_set)
        except (IngestionFailed, ServiceUnavailable):  # a bad file; a parser that is down
            raise
        except ParseAbandoned as exc:  # the heartbeat found the claim lost
            raise _Superseded() from exc
        except FileNotFoundError as exc:  # gone since the check (an in-process parser)
            raise _StoredFileMissing(f"stored file {document.storage_key} is missing") from exc
        except Exception as exc:
            # Parsers meet arbitrary bytes; whatever they raise means "unreadable", and
            # retrying cannot help. The cause is kept for the logs.
            log.warning("ingest.parser_crashed document_id=%s", document.id, exc_info=True)
            raise ParseFailed() from exc
        self._observer.stage("parse", time.perf_counter() - started, document.size_bytes)
        # Parsing can take minutes, chunking seconds: a run whose document was deleted or
        # reprocessed meanwhile gives its worker thread back now.
        await self._raise_if_superseded(document)
        started = time.perf_counter()
        drafts = await asyncio.to_thread(
            chunk_document, parsed, self._embedder.tokenizer, self._options.chunking
        )
        self._observer.stage("chunk", time.perf_counter() - started, len(drafts))
        await self._raise_if_superseded(document)
        if not drafts:
            raise EmptyDocument()
        return parsed, drafts

    async def _embed(self, document: Document, drafts: list[ChunkDraft]) -> list[list[float]]:
        started = time.perf_counter()
        embeddings: list[list[float]] = []
        batch = self._options.embed_group_size
        report = _Throttle(self._options.progress_interval_seconds)
        for offset in range(0, len(drafts), batch):
            texts = [draft.text for draft in drafts[offset : offset + batch]]
            try:
                embeddings.extend(await self._embedder.embed_documents(texts))
            except (TransientFailure, ServiceUnavailable) as fault:
                raise _EmbedderUnavailable(str(fault)) from fault
            if report():
                # Deleted or reprocessed meanwhile: stop embedding, and never announce
                # this run's progress on a document that has moved on.
                await self._raise_if_superseded(document)
                progress = round(0.95 * len(embeddings) / len(drafts), 3)
                await self._events.publish(DocumentEvent(document, progress))
        self._observer.stage("embed", time.perf_counter() - started, len(drafts))
        return embeddings

    async def _store(
        self,
        document: Document,
        parsed: ParsedDocument,
        drafts: list[ChunkDraft],
        embeddings: list[list[float]],
    ) -> Document | None:
        started = time.perf_counter()
        async with self._uow_factory.organization(document.organization_id) as uow:
            current = await uow.documents.lock_claimed(document)
            if current is None:
                # Deleted, or reset for reprocessing (maybe claimed again) meanwhile: drop
                # this run's work.
                return None
            await uow.chunks.replace(current, drafts, embeddings)
            ready = await uow.documents.mark_ready(
                document.id, len(drafts), parsed.page_count, self._clock.now()
            )
            uow.on_commit(lambda: self._events.publish(DocumentEvent(ready, 1.0)))
            await uow.commit()
        self._observer.stage("store", time.perf_counter() - started, len(drafts))
        self._observer.outcome(ready, "ready")
        return ready

    async def _raise_if_superseded(self, document: Document) -> None:
        if not await self._still_claimed(document):
            raise _Superseded()

    async def _still_claimed(self, document: Document) -> bool:
        """Whether this run's claim is current (the test _store makes under the row's
        lock). A plain read: a worker stopped in the middle of it holds no lock that would
        keep its release from handing the document back."""
        async with self._uow_factory.organization(document.organization_id) as uow:
            return await uow.documents.is_claimed(document)

    async def _fail(self, document: Document, error_code: str) -> Document | None:
        """Fail the document if it is still as this run claimed it (a reprocess meanwhile
        gave it to a new run, whose outcome this one must not decide)."""
        async with self._uow_factory.organization(document.organization_id) as uow:
            failed = await uow.documents.fail_if_unchanged(document, error_code, self._clock.now())
            if failed is not None:
                await uow.chunks.delete_for_document(document.id)
                uow.on_commit(lambda: self._events.publish(DocumentEvent(failed, None)))
            await uow.commit()
        if failed is not None:
            self._observer.outcome(failed, f"failed:{error_code}")
        return failed

    async def _requeue(self, document: Document) -> None:
        """Back to pending so the retried message can claim it again (if still this run's)."""
        async with self._uow_factory.organization(document.organization_id) as uow:
            reset = await uow.documents.requeue_if_unchanged(document, self._clock.now())
            await uow.commit()
        if reset is not None:
            await self._events.publish(DocumentEvent(reset, 0.0))

    async def enqueue(self, document_ids: Sequence[UUID]) -> int:
        """Queue these documents (reset in bulk with the vector column's rebuild, by
        ``foundry reembed``) for ingestion, once their state (PENDING) is announced on
        documentEvents: listeners see it before a worker reports PROCESSING. Returns how
        many were queued (a document deleted meanwhile is not)."""
        queued = 0
        for organization_id, ids in (await self._announce(document_ids)).items():
            for document_id in ids:
                await self._queue.enqueue_ingest(document_id, organization_id)
            queued += len(ids)
        return queued

    async def _announce(self, document_ids: Sequence[UUID]) -> dict[UUID, list[UUID]]:
        """Publish the current state of these documents, of any organisation: one event
        each, as the queue gets one job each, the documents read a page at a time.
        Returns the live ones by organisation."""
        if not document_ids:
            return {}
        wanted = set(document_ids)
        by_organization: dict[UUID, list[UUID]] = defaultdict(list)
        # Every live document by id, a page at a time: one query per page, not per id
        # (created "before tomorrow": any document, whatever the skew between clocks).
        everything = self._clock.now() + timedelta(days=1)
        after: UUID | None = None
        async with self._uow_factory.system() as lookup:
            while page := await lookup.maintenance.live_documents(everything, after, _PAGE):
                for document_id, organization_id, _, _ in page:
                    if document_id in wanted:
                        by_organization[organization_id].append(document_id)
                after = page[-1][0]
        for organization_id, ids in by_organization.items():
            for start in range(0, len(ids), _PAGE):
                async with self._uow_factory.organization(organization_id) as uow:
                    documents = await uow.documents.get_many(ids[start : start + _PAGE])
                for document in documents:
                    await self._events.publish(DocumentEvent(document, None))  # never raises
        return by_organization

    async def recover_stuck(
        self, page: int = _WATCHDOG_PAGE, budget_seconds: float | None = None
    ) -> int:
        """Watchdog: re-queue documents stuck in processing (too long, or their worker's
        heartbeat stopped) or never picked up, and fail those that used up their
        attempts. Returns how many documents it touched.

        Overdue documents are read ``page`` at a time, the longest overdue first, until
        none is left or ``budget_seconds`` have passed (the next pass goes on from there):
        behind a backlog of thousands whose jobs are only waiting, a lost job is found in
        one pass, not after the clocks of every waiting document before it restarted. A
        document this pass could not handle (the queue or the database failed) is not
        tried again in the same pass, and the pass stops once a page holds nothing else.
        """
        started = time.monotonic()
        tried: set[UUID] = set()
        touched = 0
        while True:
            now = self._clock.now()
            async with self._uow_factory.system() as lookup:
                overdue = await lookup.maintenance.stuck(
                    now - self._options.processing_timeout,
                    now - self._options.heartbeat_timeout,
                    now - self._options.pending_timeout,
                    page,
                )
            fresh = [document for document in overdue if document.id not in tried]
            tried.update(document.id for document in fresh)
            touched += await self._recover_page(fresh, now)
            if not fresh or len(overdue) < page:
                return touched
            if budget_seconds is not None and time.monotonic() - started >= budget_seconds:
                log.info("watchdog.budget_spent documents=%d", len(tried))
                return touched

    async def _recover_page(self, stuck: Sequence[Document], now: datetime) -> int:
        queued = await self._still_queued(stuck)
        touched = 0
        for document in stuck:
            try:
                if document.id in queued:
                    await self._restart_pending_clock(document, now)
                    continue
                changed = await self._recover(document, now)
            except Exception:
                # The queue or the database is down: the row was left as it was (see
                # _recover), so a later pass finds it stuck again. The others go on.
                log.warning("watchdog.recover_failed document_id=%s", document.id, exc_info=True)
                continue
            if changed is not None:
                touched += 1
                await self._events.publish(DocumentEvent(changed, None))
        return touched

    async def _still_queued(self, stuck: Sequence[Document]) -> set[UUID]:
        """Which of these pending documents still have their job in the queue: waiting
        behind a backlog longer than the pending timeout, not lost. (Processing ones are
        recovered whatever the queue holds: their worker stopped.)"""
        pending = {d.id for d in stuck if d.status is DocumentStatus.PENDING}
        if not pending:
            return set()
        try:
            return await self._queue.waiting(pending)
        except ServiceUnavailable:
            # Re-queueing them fails the same way, each logged, and a later pass retries.
            log.warning("watchdog.queue_unreadable", exc_info=True)
            return set()

    async def _restart_pending_clock(self, document: Document, now: datetime) -> None:
        """A pending document whose job is still queued: looked at again after another
        pending timeout rather than on every pass."""
        async with self._uow_factory.organization(document.organization_id) as uow:
            await uow.documents.requeue_if_unchanged(document, now)  # still pending, later
            await uow.commit()

    async def _recover(self, document: Document, now: datetime) -> Document | None:
        """Re-queue or fail one stuck document, if nothing happened to it since the
        watchdog looked (a worker that claimed, finished or beat for it keeps it)."""
        async with self._uow_factory.organization(document.organization_id) as uow:
            if (
                document.status is DocumentStatus.PROCESSING
                and document.attempts >= self._options.max_attempts
            ):
                changed = await uow.documents.fail_if_unchanged(
                    document, ErrorCode.PROCESSING_TIMEOUT.value, now
                )
                if changed is not None:
                    await uow.chunks.delete_for_document(document.id)
            else:
                # Unlike a hand-back (release), the claim keeps its attempt: a worker that
                # died without a word may have been killed by the document itself.
                changed = await uow.documents.requeue_if_unchanged(document, now)
                if changed is not None:
                    # Queued before the commit, unlike other jobs: should the queue
                    # refuse it, the transaction rolls back and the document stays stuck
                    # for the next pass, instead of pending with no job until the pending
                    # timeout. A worker that takes the job at once waits for the commit
                    # (a claim first locks the row, which this UPDATE holds), then claims.
                    await self._queue.enqueue_ingest(document.id, document.organization_id)
            await uow.commit()
        return changed


class _Superseded(Exception):
    """The document was deleted or reset for reprocessing while this run worked on it."""


class _EmbedderUnavailable(TransientFailure):
    """The embedder failed after its own retries (not the database or the parse server)."""


class _StoredFileMissing(TransientFailure):
    """The document's stored file is not there. Retried: the storage may be briefly
    unavailable (a network mount coming back); a document whose file stays missing fails
    with STORED_FILE_MISSING after its last attempt, never as a bad file."""


class _Throttle:
    def __init__(self, interval: float, now: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._now = now
        self._last = now()

    def __call__(self) -> bool:
        current = self._now()
        if current - self._last >= self._interval:
            self._last = current
            return True
        return False
