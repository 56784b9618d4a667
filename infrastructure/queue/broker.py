"""The Dramatiq Redis broker, shared by the API (to enqueue) and workers (to consume)."""

from __future__ import annotations

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


def create_broker(redis_url: str, key_prefix: str) -> RedisBroker:
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
    broker: RedisBroker = RedisBroker(  # type: ignore[no-untyped-call]  # dramatiq is untyped
        client=client, namespace=f"{key_prefix}dramatiq", heartbeat_timeout=60_000
    )
    return broker
