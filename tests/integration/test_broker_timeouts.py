"""The job broker's Redis connections give up on a Redis that stopped answering (a
failover, a network partition) instead of holding an API thread for ~15 minutes."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.errors import ServiceUnavailable
from infrastructure.queue.broker import create_broker
from infrastructure.queue.jobs import DramatiqJobQueue


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A Redis URL whose server accepts connections (the kernel completes them) and never
    answers. Closing it resets those connections, so nothing stays blocked after the test."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.close()


def test_the_broker_connections_carry_timeouts_and_a_health_check(redis_url: str) -> None:
    broker = create_broker(redis_url, f"timeouts-{uuid.uuid4().hex[:8]}:")
    try:
        assert broker.client.ping()
        options = broker.client.connection_pool.connection_kwargs
        assert options["socket_timeout"] == 5
        assert options["socket_connect_timeout"] == 3
        assert options["socket_keepalive"] is True
        assert options["health_check_interval"] == 30
    finally:
        broker.client.connection_pool.disconnect()


def test_the_embedded_redis_unix_socket_gets_the_timeouts_it_can_take(tmp_path: Path) -> None:
    pool = create_broker(f"unix://{tmp_path}/redis.sock", "unix:").client.connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 5
    assert pool.connection_kwargs["socket_connect_timeout"] == 3
    pool.make_connection()  # a TCP-only option here would be refused (TypeError)


async def test_an_enqueue_to_a_redis_that_never_answers_fails_instead_of_hanging(
    black_hole: str,
) -> None:
    queue = DramatiqJobQueue(create_broker(black_hole, "black-hole:"))
    # A bound, not a timing: without timeouts the call never returns.
    async with asyncio.timeout(60):
        with pytest.raises(ServiceUnavailable):
            await queue.enqueue_ingest(uuid.uuid4(), uuid.uuid4())
