"""The Redis rate limiter against the real Redis: GCRA maths, atomic bursts, slots that
outlive a crashed process, and what happens when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from domain.entities import Role
from domain.errors import ErrorCode, RateLimited, ServiceUnavailable
from domain.ports import Budget
from infrastructure.cache.redis_client import create_redis
from infrastructure.ratelimit.limiter import (
    LIMITER_ERRORS,
    RATE_LIMITED,
    STORE_DOWN_RETRY_SECONDS,
    RedisRateLimiter,
    SlotOptions,
)
from infrastructure.ratelimit.policy import DEFAULT_LIMITS, parse_policies
from tests.conftest import free_port


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


def prefix() -> str:
    return f"foundry-test-{uuid.uuid4().hex[:8]}:"


def limiter(
    redis: Redis, limits: dict[str, str], key_prefix: str | None = None, lease: float = 60.0
) -> RedisRateLimiter:
    return RedisRateLimiter(
        redis, key_prefix or prefix(), parse_policies(limits), SlotOptions(lease_seconds=lease)
    )


async def outcomes(calls: Sequence[Awaitable[None]]) -> tuple[int, list[int]]:
    """How many calls passed, and the retryAfter of each refused one."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r.retry_after for r in results if isinstance(r, RateLimited)]
    others = [r for r in results if isinstance(r, BaseException) and not isinstance(r, RateLimited)]
    assert not others, others
    return len(results) - len(refused), refused


async def test_a_burst_passes_then_refusals_say_when_to_retry(redis: Redis) -> None:
    limits = limiter(redis, {"ask_user": "5/10"})  # burst 5, then one every 2 s
    for _ in range(5):
        await limits.hit(Budget.ASK_USER, "alice")
    refused_before = RATE_LIMITED.labels("ask_user")._value.get()
    with pytest.raises(RateLimited) as refused:
        await limits.hit(Budget.ASK_USER, "alice")
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert 1 <= refused.value.retry_after <= 2
    assert refused.value.details == {"retryAfter": refused.value.retry_after}
    assert RATE_LIMITED.labels("ask_user")._value.get() == refused_before + 1
    # Budgets are per key and per budget.
    await limits.hit(Budget.ASK_USER, "bob")
    await limits.hit(Budget.LOGIN_EMAIL, "alice")


async def test_concurrent_hits_from_many_connections_never_overspend(redis_url: str) -> None:
    key_prefix = prefix()
    clients = [create_redis(redis_url) for _ in range(4)]
    try:
        limiters = [limiter(client, {"login_ip": "20/60"}, key_prefix) for client in clients]
        calls = [limiters[i % 4].hit(Budget.LOGIN_IP, "203.0.113.9") for i in range(100)]
        allowed, refused = await outcomes(calls)
    finally:
        for client in clients:
            await client.aclose()
    assert allowed == 20
    assert len(refused) == 80
    assert all(1 <= wait <= 60 for wait in refused)


async def test_after_the_wait_the_budget_refills_at_the_sustained_rate(redis: Redis) -> None:
    # Burst 2, then one every 3 s: each step below has seconds to spare before a refill.
    limits = limiter(redis, {"ask_user": "2/6"})
    await limits.hit(Budget.ASK_USER, "carol")
    await limits.hit(Budget.ASK_USER, "carol")
    with pytest.raises(RateLimited) as refused:
        await limits.hit(Budget.ASK_USER, "carol")
    assert 1 <= refused.value.retry_after <= 3
    await asyncio.sleep(refused.value.retry_after)
    # The wait brought one request back, at the sustained rate, and no more.
    await limits.hit(Budget.ASK_USER, "carol")
    with pytest.raises(RateLimited) as again:
        await limits.hit(Budget.ASK_USER, "carol")
    assert 1 <= again.value.retry_after <= 3


async def test_cost_counts_files_and_is_capped_at_the_burst(redis: Redis) -> None:
    limits = limiter(redis, {"upload_org": "5/60"})
    await limits.hit(Budget.UPLOAD_ORGANIZATION, "org-1", cost=3)
    with pytest.raises(RateLimited):
        await limits.hit(Budget.UPLOAD_ORGANIZATION, "org-1", cost=3)
    await limits.hit(Budget.UPLOAD_ORGANIZATION, "org-1", cost=2)
    # More than the whole burst at once is possible on an idle budget (it costs the burst).
    await limits.hit(Budget.UPLOAD_ORGANIZATION, "org-2", cost=50)
    with pytest.raises(RateLimited):
        await limits.hit(Budget.UPLOAD_ORGANIZATION, "org-2")


async def test_roles_have_their_own_limits(redis: Redis) -> None:
    limits = limiter(redis, {"ask_user": "1/60", "ask_user:admin": "3/60"})
    for _ in range(3):
        await limits.hit(Budget.ASK_USER, "admin-user", Role.ADMIN)
    with pytest.raises(RateLimited):
        await limits.hit(Budget.ASK_USER, "admin-user", Role.ADMIN)
    await limits.hit(Budget.ASK_USER, "viewer-user", Role.VIEWER)
    with pytest.raises(RateLimited):
        await limits.hit(Budget.ASK_USER, "viewer-user", Role.VIEWER)


async def test_keys_hold_no_emails_and_expire(redis: Redis) -> None:
    key_prefix = prefix()
    limits = limiter(redis, {"login_email": "10/300"}, key_prefix)
    await limits.hit(Budget.LOGIN_EMAIL, "someone@example.com")
    keys = [key async for key in redis.scan_iter(match=f"{key_prefix}*")]
    assert len(keys) == 1
    assert b"someone" not in keys[0] and keys[0].startswith(b"%sratelimit:" % key_prefix.encode())
    # One request is 30 s of a 300 s window: the key lives no longer than that.
    assert 0 < await redis.pttl(keys[0]) <= 30_000


def test_bad_limits_are_refused_at_start_up() -> None:
    for bad in (
        {"ask_user": "ten/60"},
        {"ask": "1/60"},
        {"ask_user:owner": "1/60"},
        {"ws_connections_user": "2/60"},
        {"login_ip": "0/60"},
        # Spent with no role: a per-role limit would be accepted and never used.
        {"session_user:admin": "600/300"},
        {"login_email:viewer": "5/300"},
    ):
        with pytest.raises(ValueError, match="rate limit"):
            parse_policies(bad)
    assert set(DEFAULT_LIMITS) == set(Budget)


async def test_slots_bound_concurrent_holders_and_come_back_on_release(redis: Redis) -> None:
    limits = limiter(redis, {"subscriptions_user": "2"})
    async with limits.hold(Budget.SUBSCRIPTIONS_USER, "dave"):
        async with limits.hold(Budget.SUBSCRIPTIONS_USER, "dave"):
            with pytest.raises(RateLimited) as refused:
                async with limits.hold(Budget.SUBSCRIPTIONS_USER, "dave"):
                    pytest.fail("a third slot was granted")
            assert 1 <= refused.value.retry_after <= 60
            async with limits.hold(Budget.SUBSCRIPTIONS_USER, "erin"):
                pass
        async with limits.hold(Budget.SUBSCRIPTIONS_USER, "dave"):
            pass


async def test_concurrent_slot_requests_never_overbook(redis_url: str) -> None:
    key_prefix = prefix()
    clients = [create_redis(redis_url) for _ in range(3)]
    release, settled = asyncio.Event(), asyncio.Event()
    granted = refused = 0

    def settle() -> None:
        if granted + refused == 30:
            settled.set()

    async def occupy(limits: RedisRateLimiter) -> None:
        nonlocal granted, refused
        try:
            async with limits.hold(Budget.WEBSOCKETS_USER, "frank"):
                granted += 1
                settle()
                await release.wait()
        except RateLimited:
            refused += 1
            settle()

    try:
        limiters = [limiter(c, {"ws_connections_user": "5"}, key_prefix) for c in clients]
        tasks = [asyncio.create_task(occupy(limiters[i % 3])) for i in range(30)]
        await settled.wait()
        assert (granted, refused) == (5, 25)
        release.set()
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.aclose()


# Slots renewed every 4/3 s: a renewal can come seconds late on a loaded machine and
# still be in time.
LEASE = 4.0


async def past_the_first_lease(redis: Redis, key: bytes | str) -> None:
    """Until Redis's clock is past every lease of ``key``'s holders as they stand now
    (their expiry times, ms): from then on, only renewals keep a slot held."""
    held = cast(list[tuple[bytes, float]], await redis.zrange(key, 0, -1, withscores=True))
    assert held, f"nobody holds a slot of {key!r}"
    expiry = max(score for _, score in held)
    deadline = time.monotonic() + 60
    while True:
        seconds, microseconds = await redis.time()
        if seconds * 1000 + microseconds / 1000 > expiry:
            return
        assert time.monotonic() < deadline, "Redis's clock never passed the lease"
        await asyncio.sleep(0.1)


async def test_held_slots_are_renewed_beyond_their_lease(redis: Redis) -> None:
    key_prefix = prefix()
    holder = limiter(redis, {"ws_connections_user": "1"}, key_prefix, lease=LEASE)
    other = limiter(redis, {"ws_connections_user": "1"}, key_prefix, lease=LEASE)
    async with holder.hold(Budget.WEBSOCKETS_USER, "gina"):
        [key] = await redis.keys(f"{key_prefix}*")
        await past_the_first_lease(redis, key)  # only renewals keep it now
        with pytest.raises(RateLimited):
            async with other.hold(Budget.WEBSOCKETS_USER, "gina"):
                pass
    async with other.hold(Budget.WEBSOCKETS_USER, "gina"):
        pass


async def test_a_slot_released_while_its_renewal_is_on_the_way_stays_released(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release goes out on another connection and can reach Redis before a renewal
    sent just earlier, which would then add the slot back for a whole lease."""
    key_prefix = prefix()
    # Renewed after 2 s; a slot the renewal added back would stay 6 s, twice the wait below.
    lease = 6.0
    holder = limiter(redis, {"ws_connections_user": "1"}, key_prefix, lease=lease)
    renewing, released, renewed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    execute = Pipeline.execute

    async def slow_execute(self: Pipeline, raise_on_error: bool = True) -> list[object]:
        renewing.set()
        await released.wait()  # the release reaches Redis first
        try:
            return await execute(self, raise_on_error)
        finally:
            renewed.set()

    monkeypatch.setattr(Pipeline, "execute", slow_execute)
    async with holder.hold(Budget.WEBSOCKETS_USER, "hana"):
        [key] = await redis.keys(f"{key_prefix}*")
        await asyncio.wait_for(renewing.wait(), 30)
    released.set()
    await asyncio.wait_for(renewed.wait(), 30)
    # The renewal is done; the renewer gives the slot back once more, next thing.
    deadline = time.monotonic() + lease / 2
    while await redis.zcard(key):
        assert time.monotonic() < deadline, "the slot the renewal added back stayed held"
        await asyncio.sleep(0.02)
    monkeypatch.undo()
    other = limiter(redis, {"ws_connections_user": "1"}, key_prefix, lease=lease)
    async with other.hold(Budget.WEBSOCKETS_USER, "hana"):
        pass


async def test_many_held_slots_share_one_renewal_task(redis_url: str) -> None:
    """Thousands of idle subscriptions hold slots: renewing them must not need a task and a
    connection each (a small pool shows it: 40 slots, 3 connections)."""
    pool = Redis.from_url(redis_url, max_connections=3)
    key_prefix = prefix()
    holder = limiter(pool, {"subscriptions_user": "100"}, key_prefix, lease=LEASE)
    other = limiter(pool, {"subscriptions_user": "40"}, key_prefix, lease=LEASE)
    try:
        tasks_before = len(asyncio.all_tasks())
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(40):
                await stack.enter_async_context(holder.hold(Budget.SUBSCRIPTIONS_USER, "hana"))
            assert len(asyncio.all_tasks()) <= tasks_before + 1
            [key] = await pool.keys(f"{key_prefix}*")
            await past_the_first_lease(pool, key)  # all 40 renewed, none lapsed
            assert await pool.zcard(key) == 40
            with pytest.raises(RateLimited):
                async with other.hold(Budget.SUBSCRIPTIONS_USER, "hana"):
                    pass
        async with other.hold(Budget.SUBSCRIPTIONS_USER, "hana"):
            pass
    finally:
        await pool.aclose()


CRASHING_HOLDER = """
import asyncio, sys
from infrastructure.cache.redis_client import create_redis
from infrastructure.ratelimit.limiter import RedisRateLimiter, SlotOptions
from infrastructure.ratelimit.policy import parse_policies
from domain.ports import Budget

async def main() -> None:
    limits = RedisRateLimiter(
        create_redis(sys.argv[1]), sys.argv[2],
        parse_policies({"ws_connections_user": "1"}), SlotOptions(lease_seconds=1.0),
    )
    async with limits.hold(Budget.WEBSOCKETS_USER, "henry"):
        print("held", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_crashed_process_gives_its_slots_back_when_the_lease_ends(
    redis: Redis, redis_url: str
) -> None:
    key_prefix = prefix()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_HOLDER, redis_url, key_prefix, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert (await child.stdout.readline()).strip() == b"held"
        limits = limiter(redis, {"ws_connections_user": "1"}, key_prefix)
        with pytest.raises(RateLimited):
            async with limits.hold(Budget.WEBSOCKETS_USER, "henry"):
                pass
    finally:
        child.kill()  # no clean-up code runs: as if the API process crashed
        await child.wait()
    deadline = time.monotonic() + 30
    while True:
        try:
            async with limits.hold(Budget.WEBSOCKETS_USER, "henry"):
                break
        except RateLimited:
            assert time.monotonic() < deadline, "the dead process's slot was never reclaimed"
            await asyncio.sleep(0.2)


@pytest.fixture
async def unreachable_redis() -> AsyncIterator[Redis]:
    """A client for a port nobody listens on: the shared Redis keeps running."""
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    yield client
    await client.aclose()


@pytest.mark.parametrize(
    "budget", [Budget.LOGIN_IP, Budget.LOGIN_EMAIL, Budget.SIGNUP_IP, Budget.SIGNUP_EMAIL]
)
async def test_sign_in_budgets_fail_closed_when_redis_is_down(
    unreachable_redis: Redis, budget: Budget
) -> None:
    limits = limiter(unreachable_redis, {})
    before = LIMITER_ERRORS.labels(budget.value, "refused")._value.get()
    with pytest.raises(ServiceUnavailable) as refused:
        await limits.hit(budget, "203.0.113.7")
    assert refused.value.code is ErrorCode.SERVICE_UNAVAILABLE
    assert refused.value.details == {"retryAfter": STORE_DOWN_RETRY_SECONDS}
    assert LIMITER_ERRORS.labels(budget.value, "refused")._value.get() == before + 1


async def test_other_budgets_fail_open_with_a_warning_and_a_metric(
    unreachable_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    limits = limiter(unreachable_redis, {})
    before = {
        budget: LIMITER_ERRORS.labels(budget.value, "allowed")._value.get()
        for budget in (Budget.ASK_USER, Budget.UPLOAD_ORGANIZATION, Budget.SUBSCRIPTIONS_USER)
    }
    await limits.hit(Budget.ASK_USER, "ivy")
    await limits.hit(Budget.UPLOAD_ORGANIZATION, "org", cost=3)
    async with limits.hold(Budget.SUBSCRIPTIONS_USER, "ivy"):
        pass
    for budget, count in before.items():
        assert LIMITER_ERRORS.labels(budget.value, "allowed")._value.get() == count + 1
    warnings = [
        r.msg
        for r in caplog.records
        if "ratelimit.store_unavailable" in r.getMessage() and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 3
    assert all(isinstance(event, dict) and event["failing"] == "open" for event in warnings)
