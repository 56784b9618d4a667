"""The Dramatiq Redis broker, shared by the API (to enqueue) and workers (to consume)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol

import redis
from dramatiq.brokers.redis import RedisBroker
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

# Dramatiq's own client (built from a bare URL) has no timeouts: after a Redis failover
# an enqueue waited on a dead socket for the kernel's ~15 minutes, holding a thread of
# the API's default executor all along. No command it sends blocks on the server
# (consumers poll), so a reply slower than this means Redis is gone.
SOCKET_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3.0
# An idle pooled connection is pinged before use, so one a failover cut is replaced.
HEALTH_CHECK_INTERVAL_SECONDS = 30


class FetchGate(Protocol):
    def fetch(
        self, queue_name: str, wanted: int, take: Callable[[int], list[bytes]]
    ) -> list[bytes]:
        """Fetch at most ``wanted`` messages of the queue by calling ``take(n)`` (or not
        at all: an empty list)."""
        ...


class GatedRedisBroker(RedisBroker):
    """Dramatiq's Redis broker, with a gate a worker may put in front of its consumers'
    fetches (see workers/fetch_gate.py). Without one, fetches are Dramatiq's own."""

    fetch_gate: FetchGate | None = None

    def do_fetch(self, queue_name: str, count: int) -> list[bytes]:
        gate = self.fetch_gate
        if gate is None:
            return self._take(queue_name, count)
        return gate.fetch(queue_name, count, partial(self._take, queue_name))

    def _take(self, queue_name: str, count: int) -> list[bytes]:
        fetched: list[bytes] = self._dispatch("fetch")(queue_name, count)  # type: ignore[no-untyped-call]
        return fetched


def create_broker(redis_url: str, key_prefix: str) -> GatedRedisBroker:
    # Keepalive probes notice a peer gone silent on an idle TCP connection; a Unix
    # socket (the embedded Redis) has no such option, and redis-py refuses it there.
    tcp = {} if redis_url.startswith("unix://") else {"socket_keepalive": True}
    client = redis.Redis.from_url(
        redis_url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        **tcp,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        # As the process's asyncio client (cache/redis_client.py): one immediate retry
        # on a fresh connection for a pooled one Redis closed, none after a timeout
        # (redis-py's default, three with backoff, would wait four timeouts and more).
        retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
    )
    broker = GatedRedisBroker(  # type: ignore[no-untyped-call]  # dramatiq is untyped
        client=client, namespace=f"{key_prefix}dramatiq", heartbeat_timeout=60_000
    )
    return broker
