"""How many ingestion jobs a worker may take from a lane at a time.

Dramatiq's consumers prefetch per queue: each lane's consumer would take up to two
jobs per worker thread from its lane, whatever the worker already holds, so a worker
busy with long files could hoard a burst of another lane's jobs while a second worker
idles. The gate caps what a worker holds across lanes at Dramatiq's own per-queue
figure (two per thread), except that a lane holding nothing may always take one job:
that job is what lets another organisation's upload overtake a backlog (the worker
serves jobs in the order they were fetched), and it bounds the hoard at one per lane.
Delay queues (retries waiting out their backoff) are not limited.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping

import dramatiq


def fetch_allowance(
    queue_name: str,
    wanted: int,
    outstanding: Mapping[str, int],
    lanes: Collection[str],
    held: int,
) -> int:
    """How many of ``wanted`` jobs the consumer of ``queue_name`` may fetch, given the
    jobs each lane's consumer holds (fetched and not finished) and the most a worker
    holds across lanes."""
    if queue_name not in lanes:
        return wanted
    own = outstanding.get(queue_name, 0)
    room = held - sum(count for lane, count in outstanding.items() if lane in lanes)
    if own == 0:
        room = max(room, 1)
    return max(0, min(wanted, room))


class LaneFetchGate:
    """``fetch_allowance`` over a running worker's consumers: the broker's fetch gate,
    called on the consumers' threads.

    Fetches from lanes are made one at a time, and what a fetch took counts for its lane
    until that lane's consumer fetches again (by then it holds them itself): otherwise
    lanes fetching at the same moment would each see the others holding nothing."""

    def __init__(self, worker: dramatiq.Worker, lanes: Collection[str], held: int) -> None:
        self._worker = worker
        self._lanes = frozenset(lanes)
        self._held = held
        self._lock = threading.Lock()
        self._in_transit: dict[str, int] = {}

    def fetch(
        self, queue_name: str, wanted: int, take: Callable[[int], list[bytes]]
    ) -> list[bytes]:
        if queue_name not in self._lanes:
            return take(wanted)
        with self._lock:
            self._in_transit.pop(queue_name, None)
            outstanding = self._outstanding()
            allowed = fetch_allowance(queue_name, wanted, outstanding, self._lanes, self._held)
            fetched = take(allowed) if allowed > 0 else []
            self._in_transit[queue_name] = len(fetched)
            return fetched

    def _outstanding(self) -> dict[str, int]:
        held = dict(self._in_transit)
        for name, thread in list(self._worker.consumers.items()):
            consumer = thread.consumer
            if name in self._lanes and consumer is not None:
                # Dramatiq's Redis consumer: jobs fetched and not yet acknowledged.
                count = int(getattr(consumer, "outstanding_message_count", 0))
                held[name] = max(held.get(name, 0), count)
        return held
