"""RedisRateLimiter: GCRA rate budgets and leased concurrency slots, atomic in Lua."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from domain.entities import Role
from domain.errors import RateLimited, ServiceUnavailable
from domain.ports import Budget
from infrastructure.ratelimit.policy import CONCURRENCY_BUDGETS, FAIL_CLOSED_BUDGETS, RatePolicies
from infrastructure.ratelimit.scripts import ACQUIRE_SLOT, GCRA, RENEW_SLOT

log = structlog.get_logger("foundry.ratelimit")

RATE_LIMITED = Counter(
    "foundry_rate_limited_total", "Requests refused because a budget was spent.", ["operation"]
)
LIMITER_ERRORS = Counter(
    "foundry_rate_limiter_errors_total",
    "Budget checks Redis could not answer, by what happened to the request "
    "(allowed: failed open, refused: failed closed).",
    ["operation", "outcome"],
)

# How long a client should wait when sign-in is refused because Redis is down.
STORE_DOWN_RETRY_SECONDS = 5


@dataclass(frozen=True, slots=True)
class SlotOptions:
    """Slots are leases: renewed while held, reclaimed ``lease_seconds`` after a crash."""

    lease_seconds: float = 60.0

    @property
    def renew_every_seconds(self) -> float:
        return self.lease_seconds / 3


def hashed(key: str) -> str:
    """Keys hold emails and IPs: store a digest, bounded in length and not personal data."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class RedisRateLimiter:
    """Implements the domain's RateLimiter port against one Redis (or cluster slot)."""

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        policies: RatePolicies,
        slots: SlotOptions | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}ratelimit:"
        self._policies = policies
        self._slots = slots or SlotOptions()
        self._gcra = redis.register_script(GCRA)
        self._acquire = redis.register_script(ACQUIRE_SLOT)
        self._renew = redis.register_script(RENEW_SLOT)
        self._releasing: set[asyncio.Future[None]] = set()  # strong refs until done
        # Every slot this process holds, renewed together by one task in one pipeline: a
        # task and a Redis call per slot would exhaust the connection pool (thousands of
        # idle subscriptions each hold two slots).
        self._leases: dict[tuple[str, str], int] = {}
        self._renewer: asyncio.Task[None] | None = None

    def _key(self, budget: Budget, key: str) -> str:
        return f"{self._prefix}{budget.value}:{hashed(key)}"

    async def hit(self, budget: Budget, key: str, role: Role | None = None, cost: int = 1) -> None:
        limit = self._policies.limit(budget, role)
        # A request costing more than the whole burst could never pass: charge the burst.
        cost = max(1, min(cost, limit.count))
        try:
            allowed, retry_ms, _ = await self._gcra(
                keys=[self._key(budget, key)],
                args=[repr(limit.emission_interval_ms), limit.count, cost],
            )
        except RedisError as exc:
            self._store_down(budget, exc)
            return
        if not int(allowed):
            self._refuse(budget, int(retry_ms))

    def hold(
        self, budget: Budget, key: str, role: Role | None = None
    ) -> AbstractAsyncContextManager[None]:
        if budget not in CONCURRENCY_BUDGETS:
            raise ValueError(f"{budget.value} is a rate, not a concurrency budget")
        return self._held(budget, key, role)

    @contextlib.asynccontextmanager
    async def _held(self, budget: Budget, key: str, role: Role | None) -> AsyncIterator[None]:
        limit = self._policies.limit(budget, role)
        redis_key = self._key(budget, key)
        holder = uuid.uuid4().hex
        lease_ms = math.ceil(self._slots.lease_seconds * 1000)
        try:
            acquired, retry_ms = await self._acquire(
                keys=[redis_key], args=[holder, limit.count, lease_ms]
            )
        except RedisError as exc:
            self._store_down(budget, exc)
            yield  # failed open: nothing to renew or release
            return
        except asyncio.CancelledError:
            # Cancelled (a client completing early) after the script may have run.
            await self._release(budget, redis_key, holder)
            raise
        if not int(acquired):
            self._refuse(budget, int(retry_ms))
        self._leases[(redis_key, holder)] = lease_ms
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._keep_renewed())
        try:
            yield
        finally:
            self._leases.pop((redis_key, holder), None)
            await self._release(budget, redis_key, holder)

    async def _release(self, budget: Budget, redis_key: str, holder: str) -> None:
        """Give the slot back, even when the caller is cancelled again meanwhile."""
        release = asyncio.ensure_future(self._zrem(budget, redis_key, holder))
        self._releasing.add(release)
        release.add_done_callback(self._releasing.discard)
        await asyncio.shield(release)

    async def _zrem(self, budget: Budget, redis_key: str, holder: str) -> None:
        try:
            await self._redis.zrem(redis_key, holder)
        except RedisError as exc:  # the lease runs out on its own
            log.warning("ratelimit.release_failed", operation=budget.value, error=repr(exc))

    async def _keep_renewed(self) -> None:
        """Renew every held lease, all in one pipeline, until none is held."""
        while self._leases:
            await asyncio.sleep(self._slots.renew_every_seconds)
            leases = list(self._leases.items())
            if not leases:
                return
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for (redis_key, holder), lease_ms in leases:
                        await self._renew(keys=[redis_key], args=[holder, lease_ms], client=pipe)
                    await pipe.execute()
            except RedisError as exc:  # try again next time; the lease outlives two misses
                log.warning("ratelimit.renew_failed", slots=len(leases), error=repr(exc))
                continue
            # A slot given back while the pipeline was on its way: its release (another
            # connection) may have reached Redis first, and the renewal then added it
            # back for a whole lease. Released again, now that the renewal is done.
            for redis_key, holder in [lease for lease, _ in leases if lease not in self._leases]:
                with contextlib.suppress(RedisError):  # the lease runs out on its own
                    await self._redis.zrem(redis_key, holder)

    def _refuse(self, budget: Budget, retry_ms: int) -> None:
        RATE_LIMITED.labels(budget.value).inc()
        raise RateLimited(retry_after=math.ceil(retry_ms / 1000))

    def _store_down(self, budget: Budget, exc: RedisError) -> None:
        """Sign-in budgets fail closed; the rest fail open, loudly."""
        closed = budget in FAIL_CLOSED_BUDGETS
        LIMITER_ERRORS.labels(budget.value, "refused" if closed else "allowed").inc()
        log.warning(
            "ratelimit.store_unavailable",
            operation=budget.value,
            failing="closed" if closed else "open",
            error=repr(exc),
        )
        if closed:
            raise ServiceUnavailable(
                "Sign-in is briefly unavailable; try again shortly.",
                retryAfter=STORE_DOWN_RETRY_SECONDS,
            ) from exc


class UnlimitedRateLimiter:
    """For FOUNDRY_RATE_LIMITS_ENABLED=false: every budget is unlimited."""

    async def hit(self, budget: Budget, key: str, role: Role | None = None, cost: int = 1) -> None:
        return None

    def hold(
        self, budget: Budget, key: str, role: Role | None = None
    ) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()
