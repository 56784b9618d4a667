"""Whether Redis may evict keys before they expire.

Session revocations, rate budgets, connection slots and the job queue live in Redis as
keys. A server with a memory limit and an eviction policy other than ``noeviction``
(managed services often default to ``volatile-lru``) drops keys under memory pressure,
and the answer cache's keys make that pressure: an evicted revocation lets a logged-out
or removed session's access token back in until it expires, and an evicted job is never
run. Readiness reports such a server as not ready, saying which setting to change.
"""

from __future__ import annotations

import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError

log = structlog.get_logger("foundry.redis")

SAFE_POLICY = "noeviction"


class EvictionCheck:
    """Asks the server its ``maxmemory`` and ``maxmemory-policy`` on every check (an
    operator can change them at run time); warns once when the server will not say."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._warned_unknown = False

    async def problem(self) -> str | None:
        """None when no key can be evicted (no memory limit, or ``noeviction``), or
        when the server refuses CONFIG (some managed services rename it); otherwise
        what is wrong and how to fix it."""
        try:
            raw = await self._redis.config_get("maxmemory*")
        except ResponseError as refused:
            if not self._warned_unknown:
                self._warned_unknown = True
                log.warning(
                    "redis.eviction_policy_unknown",
                    error=str(refused),
                    hint=f"make sure maxmemory-policy is {SAFE_POLICY}",
                )
            return None
        settings = {_text(key): _text(value) for key, value in raw.items()}
        policy = settings.get("maxmemory-policy", SAFE_POLICY)
        if settings.get("maxmemory", "0") == "0" or policy == SAFE_POLICY:
            return None
        return (
            f"evicts keys (maxmemory {settings['maxmemory']} bytes, maxmemory-policy "
            f"{policy}): set maxmemory-policy {SAFE_POLICY}, or no maxmemory"
        )


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
