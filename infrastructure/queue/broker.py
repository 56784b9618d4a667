"""The Dramatiq Redis broker, shared by the API (to enqueue) and workers (to consume)."""

from __future__ import annotations

from dramatiq.brokers.redis import RedisBroker


def create_broker(redis_url: str, key_prefix: str) -> RedisBroker:
    broker: RedisBroker = RedisBroker(  # type: ignore[no-untyped-call]  # dramatiq is untyped
        url=redis_url, namespace=f"{key_prefix}dramatiq", heartbeat_timeout=60_000
    )
    return broker
