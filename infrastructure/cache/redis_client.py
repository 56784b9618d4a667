"""The process's Redis client (redis-py asyncio), from a redis:// or unix:// URL."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def create_redis(url: str) -> Redis:
    # After a Redis restart, the pooled connections opened before it are dead, and
    # nothing notices until one is used: the command's read finds the socket closed.
    # Without a retry, each such connection fails one request (SERVICE_UNAVAILABLE
    # with Redis back up). One immediate retry on a fresh connection absorbs that;
    # while Redis is down, the retry's connect is refused at once, so calls still
    # fail fast. Timeouts are not retried: that would double the wait.
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=5,
        socket_connect_timeout=3,
        health_check_interval=30,
        max_connections=200,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
    )
