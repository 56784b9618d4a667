"""Enqueue Dramatiq messages from any process without importing the actors.

Ingestion jobs go to one of a few lanes (Dramatiq queues), chosen by organisation.
A worker consumes every lane, prefetching a few messages from each into one work
queue served in the order they were fetched: an organisation that queues a thousand
documents fills its own lane, and another organisation's upload, in a lane of its
own, waits for about one document per worker thread instead of the whole backlog.
Organisations that share a lane share it in order of upload.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Collection
from uuid import UUID

import structlog
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name

from domain.errors import ServiceUnavailable

log = structlog.get_logger("foundry.queue")

INGEST_ACTOR = "documents.ingest"
DOCUMENTS_QUEUE = "documents"
# Fixed, not a setting: every API process must send only to lanes every worker
# consumes. Each lane costs a worker two consumer threads (the lane and its delay
# queue), each polling Redis about once a second while idle.
INGEST_LANES = 8
# Jobs read per round trip when looking for documents' jobs in the queues.
_PAGE = 1000
# Lane 0 is the queue used before there were lanes: messages already waiting there
# when a deployment upgrades are still consumed.
LANE_QUEUES = (DOCUMENTS_QUEUE, *(f"{DOCUMENTS_QUEUE}-{lane}" for lane in range(1, INGEST_LANES)))


def lane_of(organization_id: UUID) -> str:
    """The queue of this organisation's ingestion jobs: the same in every process and
    release (a hash of the id, not Python's per-process ``hash``)."""
    digest = hashlib.blake2b(organization_id.bytes, digest_size=8).digest()
    return LANE_QUEUES[int.from_bytes(digest, "big") % INGEST_LANES]


class DramatiqJobQueue:
    def __init__(self, broker: RedisBroker) -> None:
        self._broker = broker

    async def enqueue_ingest(self, document_id: UUID, organization_id: UUID) -> None:
        message: Message[None] = Message(
            queue_name=lane_of(organization_id),
            actor_name=INGEST_ACTOR,
            args=(str(document_id),),
            kwargs={},
            options={},
        )
        try:
            await asyncio.to_thread(self._broker.enqueue, message)
        except Exception as exc:
            raise ServiceUnavailable("The job queue is unavailable.") from exc

    def lane_keys(self) -> list[str]:
        """The Redis lists holding the messages waiting in each lane."""
        return [f"{self._broker.namespace}:{queue}" for queue in LANE_QUEUES]

    async def waiting(self, document_ids: Collection[UUID]) -> set[UUID]:
        """Which of these documents have an ingestion job no worker has taken yet: in a
        lane, or in a lane's delay queue (a retry waiting out its backoff). Jobs a worker
        has fetched are not counted: should that worker die, Dramatiq gives them back
        only when some worker's maintenance notices, which can take long, so a document
        whose job a worker holds is queued again when overdue (claiming is idempotent).
        Reads the queues a page at a time and stops once all are found."""
        wanted = set(document_ids)
        if not wanted:
            return set()
        try:
            return await asyncio.to_thread(self._waiting, wanted)
        except Exception as exc:
            raise ServiceUnavailable("The job queue is unavailable.") from exc

    def _waiting(self, wanted: set[UUID]) -> set[UUID]:
        client = self._broker.client
        found: set[UUID] = set()
        unreadable = 0
        for queue in LANE_QUEUES:
            for name in (queue, dq_name(queue)):
                key = f"{self._broker.namespace}:{name}"
                start = 0
                while page := client.lrange(key, start, start + _PAGE - 1):
                    start += len(page)
                    for data in client.hmget(f"{key}.msgs", page):
                        document_id = _document_of(data)
                        if document_id is None:
                            unreadable += data is not None  # None: taken meanwhile
                        elif document_id in wanted:
                            found.add(document_id)
                    if found == wanted:
                        return found
        if unreadable:
            log.warning("queue.unreadable_messages", count=unreadable)
        return found


def _document_of(data: object) -> UUID | None:
    """The document of an encoded ingestion job (None for anything else)."""
    if not isinstance(data, bytes):  # the broker's client never decodes replies
        return None
    try:
        message: Message[None] = Message.decode(data)
        if message.actor_name != INGEST_ACTOR or not message.args:
            return None
        return UUID(str(message.args[0]))
    except Exception:  # a message this code cannot read: not an ingestion job of ours
        return None
