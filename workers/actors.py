"""Actors: thin, take ids, call a domain service. Import only after the broker is set."""

from __future__ import annotations

from uuid import UUID

import dramatiq

from domain.errors import ServiceUnavailable, TransientFailure
from infrastructure.queue.jobs import DOCUMENTS_QUEUE, INGEST_ACTOR
from workers import runtime

MAX_RETRIES = 5


def retry_transient(retries: int, exc: BaseException) -> bool:
    """Retry (with exponential backoff) only when a dependency failed, never for bad files."""
    return retries < MAX_RETRIES and isinstance(exc, TransientFailure | ServiceUnavailable)


@dramatiq.actor(
    actor_name=INGEST_ACTOR,
    queue_name=DOCUMENTS_QUEUE,
    retry_when=retry_transient,
    min_backoff=2_000,
    max_backoff=120_000,
    time_limit=30 * 60 * 1000,
)
async def ingest(document_id: str) -> None:
    await runtime.current().ingestion.ingest(UUID(document_id))
