"""Document events over Redis pub/sub: workers publish, every API process fans them out.

Each API process holds one pattern subscription and hands events to its local
subscribers through bounded inboxes, so idle GraphQL subscriptions cost a little
memory but no Redis connection each.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}documents:"
        self._subscribers: dict[UUID, set[Inbox[DocumentEvent]]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

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
        self._ensure_listener()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=10)
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

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="document-events")

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(f"{self._prefix}*")
                self._ready.set()
                backoff = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                self._ready.clear()
                log.warning("events.listener_failed", retry_in=backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, raw: bytes) -> None:
        try:
            event = decode_event(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("events.undecodable")
            return
        for inbox in list(self._subscribers.get(event.document.organization_id, ())):
            inbox.put_nowait(event)  # a slow consumer loses its oldest event, nobody stalls
