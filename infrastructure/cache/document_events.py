"""Document events over Redis pub/sub: workers publish, every API process fans them out.

Each API process listens on one pattern (through its RedisListener) and hands events
to its local subscribers through bounded inboxes, so idle GraphQL subscriptions cost a little
memory but no Redis connection each.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from domain.entities import Document, DocumentEvent, DocumentStatus
from domain.errors import ServiceUnavailable
from infrastructure.cache.pubsub_listener import RedisListener
from infrastructure.inbox import Inbox

log = structlog.get_logger("foundry.events")

SUBSCRIBER_INBOX_SIZE = 256
_DATETIME_FIELDS = ("created_at", "updated_at", "processed_at")
_UUID_FIELDS = ("id", "organization_id", "uploaded_by")


def encode_event(event: DocumentEvent) -> bytes:
    document = asdict(event.document)
    for name in _DATETIME_FIELDS:
        value = document[name]
        document[name] = value.isoformat() if value else None
    for name in _UUID_FIELDS:
        document[name] = str(document[name]) if document[name] else None
    document["status"] = event.document.status.value
    return json.dumps({"document": document, "progress": event.progress}).encode()


def decode_event(raw: bytes) -> DocumentEvent:
    payload = json.loads(raw)
    document = payload["document"]
    for name in _DATETIME_FIELDS:
        document[name] = datetime.fromisoformat(document[name]) if document[name] else None
    for name in _UUID_FIELDS:
        document[name] = UUID(document[name]) if document[name] else None
    document["status"] = DocumentStatus(document["status"])
    return DocumentEvent(Document(**document), payload["progress"])


class RedisEventBus:
    def __init__(self, redis: Redis, key_prefix: str, listener: RedisListener) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}documents:"
        self._subscribers: dict[UUID, set[Inbox[DocumentEvent]]] = defaultdict(set)
        self._listener = listener
        listener.route(f"{self._prefix}*", self._dispatch)

    async def publish(self, event: DocumentEvent) -> None:
        """Best effort, like pub/sub itself: a document's state lives in the database and
        the next event carries it, so Redis being down never fails the work that
        reports progress (ingestion goes on; clients re-read the document)."""
        try:
            await self._redis.publish(
                f"{self._prefix}{event.document.organization_id}", encode_event(event)
            )
        except (RedisError, OSError) as exc:
            log.warning(
                "events.publish_failed",
                document_id=str(event.document.id),
                status=event.document.status.value,
                error=type(exc).__name__,
            )

    async def subscribe(self, organization_id: UUID) -> AsyncIterator[DocumentEvent]:
        inbox: Inbox[DocumentEvent] = Inbox(SUBSCRIBER_INBOX_SIZE)
        try:
            async with asyncio.timeout(10):
                await self._listener.ready()
        except TimeoutError as exc:
            raise ServiceUnavailable("Document events are unavailable right now.") from exc
        # Counted (subscriber_count, the metric) only once the process listens on Redis.
        self._subscribers[organization_id].add(inbox)
        try:
            while True:
                yield await inbox.get()
        finally:
            subscribers = self._subscribers.get(organization_id)
            if subscribers is not None:
                subscribers.discard(inbox)
                if not subscribers:
                    del self._subscribers[organization_id]

    def subscriber_count(self) -> int:
        return sum(len(inboxes) for inboxes in self._subscribers.values())

    def _dispatch(self, raw: bytes) -> None:
        try:
            event = decode_event(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("events.undecodable")
            return
        for inbox in list(self._subscribers.get(event.document.organization_id, ())):
            inbox.put_nowait(event)  # a slow consumer loses its oldest event, nobody stalls
