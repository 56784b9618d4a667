"""Metrics and logs for each ingestion stage (parse, chunk, embed, store) and queue depth."""

from __future__ import annotations

from contextlib import AbstractContextManager
from uuid import UUID

import structlog
from prometheus_client import Counter, Gauge, Histogram

from domain.entities import Document

log = structlog.get_logger("foundry.ingestion")

STAGE_SECONDS = Histogram(
    "foundry_ingest_stage_seconds",
    "Time spent in each ingestion stage.",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
STAGE_ITEMS = Counter(
    "foundry_ingest_stage_items_total",
    "Bytes parsed, chunks produced, chunks embedded and chunks stored.",
    ["stage"],
)
# error_code: a code of the registry (domain/errors.py) when the outcome is "failed",
# else empty; a fixed set of values, so the label keeps the series few.
DOCUMENTS = Counter(
    "foundry_ingest_documents_total",
    "Documents finished, by outcome and error code.",
    ["outcome", "error_code"],
)
SKIPPED = Counter(
    "foundry_ingest_skipped_total",
    "Ingest jobs dropped because their document was not pending (a duplicate job, or "
    "the document was deleted, finished or claimed meanwhile).",
)
QUEUE_DEPTH = Gauge(
    "foundry_ingest_queue_depth", "Ingestion jobs waiting in the documents queues (every lane)."
)
WATCHDOG_RECOVERED = Counter(
    "foundry_ingest_watchdog_recovered_total",
    "Stuck documents re-queued or failed by the watchdog.",
)


class PrometheusStageObserver:
    def run(self, document: Document) -> AbstractContextManager[None]:
        # Context variables: only this run's task (and the tasks it starts) see them.
        return structlog.contextvars.bound_contextvars(
            document_id=str(document.id), organization_id=str(document.organization_id)
        )

    def stage(self, name: str, seconds: float, size: int) -> None:
        STAGE_SECONDS.labels(name).observe(seconds)
        STAGE_ITEMS.labels(name).inc(size)
        log.info("ingest.stage", stage=name, ms=round(seconds * 1000, 1), size=size)

    def outcome(self, document: Document, outcome: str) -> None:
        kind, _, error_code = outcome.partition(":")
        DOCUMENTS.labels(kind, error_code).inc()
        log.info(
            "ingest.document",
            document_id=str(document.id),
            organization_id=str(document.organization_id),
            outcome=outcome,
            chunks=document.chunk_count,
            pages=document.page_count,
            attempts=document.attempts,
        )

    def skipped(self, document_id: UUID) -> None:
        SKIPPED.inc()
        log.info("ingest.skipped", document_id=str(document_id))
