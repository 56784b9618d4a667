"""The worker process: Dramatiq consumers for ingestion plus the stuck-document watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import uuid
from concurrent.futures import Future

import dramatiq
import structlog
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import AsyncIO, Middleware
from prometheus_client import start_http_server

from domain.entities import Document
from domain.services.ingestion import IngestionService
from infrastructure.container import BackendUrls, Container
from infrastructure.database.embedding_column import column_dimensions
from infrastructure.database.engine import create_engine, schema_readiness
from infrastructure.observability.ingestion_metrics import QUEUE_DEPTH, WATCHDOG_RECOVERED
from infrastructure.queue.broker import create_broker
from infrastructure.queue.jobs import LANE_QUEUES
from infrastructure.settings import Settings
from workers import runtime
from workers.fetch_gate import LaneFetchGate
from workers.token_pruning import prune_now_and_then

log = structlog.get_logger("foundry.worker")


class SchemaBehind(Exception):
    """The database's schema is older than this code (or not there): migrate first."""


class _CloseContainer(Middleware):
    """Closes pools on the event loop after in-flight jobs finish or the grace period
    ends, before the loop stops. First it notes the claims still running: closing the
    pools ends them (the embedder fails what it holds) without handing them back."""

    def __init__(self, container: Container, ingestion: IngestionService) -> None:
        self._container = container
        self._ingestion = ingestion
        self.abandoned: list[Document] = []

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._ingestion.stop()  # a run failing as the pools close is not the document's fault
        self.abandoned = self._ingestion.in_flight()
        thread = get_event_loop_thread()
        if thread is not None and thread.loop.is_running():
            with contextlib.suppress(Exception):
                thread.run_coroutine(self._container.aclose())


# How often the main thread wakes to run a signal handler that no wait let in.
STOP_POLL_SECONDS = 0.2


async def watchdog_loop(container: Container, ingestion: IngestionService, interval: float) -> None:
    """Every interval, one worker (a Redis lock decides which) recovers stuck documents;
    now and then it prunes ended sessions' refresh tokens too."""
    owner = uuid.uuid4().hex
    lock_key = f"{container.settings.redis_key_prefix}watchdog-lock"
    while True:
        try:
            if await container.redis.set(lock_key, owner, nx=True, px=int(interval * 900)):
                recovered = await ingestion.recover_stuck(budget_seconds=interval / 2)
                if recovered:
                    WATCHDOG_RECOVERED.inc(recovered)
                    log.warning("watchdog.recovered", documents=recovered)
                await prune_now_and_then(container)
            QUEUE_DEPTH.set(await container.queue_depth())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("watchdog.failed", exc_info=True)
        await asyncio.sleep(interval)


async def _schema_and_dimensions(settings: Settings, urls: BackendUrls) -> tuple[str, int]:
    """Whether this code can run on the schema ('ok' or why not) and, if so, the vector
    column's size. Read with a throwaway engine: the container's pools belong to the
    worker's loop."""
    engine = create_engine(urls.database_url, 1, settings.database_statement_timeout_ms)
    try:
        schema = await schema_readiness(engine)
        return schema, await column_dimensions(engine) if schema == "ok" else 0
    finally:
        await engine.dispose()


def run_worker(settings: Settings, urls: BackendUrls) -> int:
    # Before anything starts: on a schema this code does not fit, every job would fail
    # (with an UndefinedTableError for an empty database), each as a bug of its own.
    schema, stored = asyncio.run(_schema_and_dimensions(settings, urls))
    if schema != "ok":
        raise SchemaBehind(schema)
    if stored != settings.embedding_dimensions:
        log.error(
            "worker.embedding_dimension_mismatch",
            column=stored,
            configured=settings.embedding_dimensions,
            fix="run `foundry reembed`",
        )
        return 2
    container = Container(settings, urls)
    ingestion = container.build_ingestion()
    broker = create_broker(urls.redis_url, settings.redis_key_prefix)
    closing = _CloseContainer(container, ingestion)
    broker.add_middleware(AsyncIO())
    # After AsyncIO: shutdown hooks run in reverse order, so this one runs while
    # AsyncIO's event loop still does (added before it, it found the loop stopped).
    broker.add_middleware(closing)
    dramatiq.set_broker(broker)
    import workers.actors  # noqa: F401  # declares the actors on this broker

    for lane in LANE_QUEUES:  # the actor declared the first; jobs arrive in all of them
        broker.declare_queue(lane)

    ingestion.warm_up()
    runtime.install(runtime.WorkerRuntime(ingestion=ingestion))
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.host)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    worker = dramatiq.Worker(
        broker, queues=set(LANE_QUEUES), worker_threads=settings.worker_threads
    )
    # Before it starts: no consumer fetches ungated.
    broker.fetch_gate = LaneFetchGate(worker, LANE_QUEUES, held=2 * settings.worker_threads)
    worker.start()
    loop_thread = get_event_loop_thread()
    if loop_thread is None:
        raise RuntimeError("dramatiq's AsyncIO middleware did not start its event loop")
    watchdog: Future[None] = asyncio.run_coroutine_threadsafe(
        watchdog_loop(container, ingestion, settings.watchdog_interval_seconds), loop_thread.loop
    )
    log.info("worker.started", threads=settings.worker_threads, embedder=settings.embedder)
    # Woken now and then: Python runs a signal's handler in the main thread only when that
    # thread runs Python code, and a SIGTERM the kernel hands to another of the process's
    # threads interrupts no wait here, so one endless wait could miss it for good (seen
    # in CI: a worker still running 30 s after its SIGTERM, never logging worker.stopping).
    while not stop.wait(STOP_POLL_SECONDS):
        pass
    log.info("worker.stopping")
    watchdog.cancel()
    worker.stop(timeout=settings.shutdown_grace_seconds * 1000)
    abandoned = closing.abandoned
    if abandoned:
        # Still running after the grace period: their messages come back after the
        # broker's timeout, but a claim would then find them PROCESSING (not pending)
        # and drop them, leaving them to the watchdog's 40-minute processing timeout.
        released = asyncio.run(_release(settings, urls, abandoned))
        log.warning("worker.released_abandoned", abandoned=len(abandoned), released=released)
    log.info("worker.stopped")
    return 0


async def _release(settings: Settings, urls: BackendUrls, claims: list[Document]) -> int:
    """On a fresh container: the worker's pools belong to its stopped event loop."""
    container = Container(settings, urls)
    try:
        return await container.build_ingestion().release(claims)
    finally:
        await container.aclose()
