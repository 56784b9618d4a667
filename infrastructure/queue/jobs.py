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
from uuid import UUID

from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name

from domain.errors import ServiceUnavailable

INGEST_ACTOR = "documents.ingest"
DOCUMENTS_QUEUE = "documents"
# Fixed, not a setting: every API process must send only to lanes every worker
# consumes. Each lane costs a worker two consumer threads (the lane and its delay
# queue), each polling Redis about once a second while idle.
INGEST_LANES = 8
# Messages read per HSCAN call when listing the jobs waiting.
_SCAN_COUNT = 500
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

    async def waiting(self) -> set[UUID]:
        """The documents with an ingestion job in the queue: waiting in a lane, delayed
        for a retry, or taken by a worker and not finished (Dramatiq keeps a message's
        body until it is acknowledged). Reads every job waiting, so the watchdog asks
        only when it has overdue pending documents."""
        try:
            return await asyncio.to_thread(self._waiting)
        except Exception as exc:
            raise ServiceUnavailable("The job queue is unavailable.") from exc

    def _waiting(self) -> set[UUID]:
        client = self._broker.client
        found: set[UUID] = set()
        for queue in LANE_QUEUES:
            for name in (queue, dq_name(queue)):
                key = f"{self._broker.namespace}:{name}.msgs"
                for _, data in client.hscan_iter(key, count=_SCAN_COUNT):
                    message: Message[None] = Message.decode(data)
                    if message.actor_name == INGEST_ACTOR and message.args:
                        found.add(UUID(str(message.args[0])))
        return found
