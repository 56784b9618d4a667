"""Enqueue Dramatiq messages from any process without importing the actors."""

from __future__ import annotations

import asyncio
from uuid import UUID

from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from domain.errors import ServiceUnavailable

INGEST_ACTOR = "documents.ingest"
DOCUMENTS_QUEUE = "documents"


class DramatiqJobQueue:
    def __init__(self, broker: RedisBroker) -> None:
        self._broker = broker

    async def enqueue_ingest(self, document_id: UUID) -> None:
        message: Message[None] = Message(
            queue_name=DOCUMENTS_QUEUE,
            actor_name=INGEST_ACTOR,
            args=(str(document_id),),
            kwargs={},
            options={},
        )
        try:
            await asyncio.to_thread(self._broker.enqueue, message)
        except Exception as exc:
            raise ServiceUnavailable("The job queue is unavailable.") from exc

    def depth(self) -> int:
        """Messages waiting in the documents queue (blocking Redis call)."""
        client = self._broker.client
        return int(client.llen(f"{self._broker.namespace}:{DOCUMENTS_QUEUE}"))
