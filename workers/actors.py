"""Actors: thin, take ids, call a domain service. Import only after the broker is set."""

from __future__ import annotations

from uuid import UUID

import dramatiq

from infrastructure.queue.jobs import DOCUMENTS_QUEUE, INGEST_ACTOR
from infrastructure.settings import INGEST_TIME_LIMIT_SECONDS
from workers import runtime
from workers.retry_policy import MAX_BACKOFF_MS, MIN_BACKOFF_MS, retry_transient


def retry_ingest(retries: int, exc: BaseException) -> bool:
    """The queue's retry decision, as many times as this worker's ingest_max_attempts."""
    return retry_transient(retries, exc, runtime.current().ingestion.max_attempts)


@dramatiq.actor(
    actor_name=INGEST_ACTOR,
    queue_name=DOCUMENTS_QUEUE,
    retry_when=retry_ingest,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
    time_limit=INGEST_TIME_LIMIT_SECONDS * 1000,
)
async def ingest(document_id: str) -> None:
    await runtime.current().ingestion.ingest(UUID(document_id))
