"""The process's Redis client (redis-py asyncio), from a redis:// or unix:// URL."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=5,
        socket_connect_timeout=3,
        health_check_interval=30,
        max_connections=200,
    )
