"""Revoked sessions in Redis, so every API process rejects their access tokens."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError

from domain.errors import ServiceUnavailable, TokenExpired, Unauthenticated
from domain.ports import Clock

_REVOKED = "revoked"
_REFRESH = "refresh"

# Set an entry unless the session is already revoked (never downgrade a revocation).
_SET_UNLESS_REVOKED = """
local current = redis.call('GET', KEYS[1])
if current and string.find(current, '"revoked"', 1, true) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class RedisSessionRevocations:
    """Entries live as long as an access token can, then expire on their own.

    Fails closed: when Redis cannot be asked, authentication is refused with
    SERVICE_UNAVAILABLE rather than accepting a possibly revoked token.
    """

    def __init__(
        self, redis: Redis, key_prefix: str, access_token_ttl_seconds: int, clock: Clock
    ) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}session:"
        self._ttl = access_token_ttl_seconds + 60
        self._clock = clock
        self._set_unless_revoked = redis.register_script(_SET_UNLESS_REVOKED)

    async def revoke(self, session_ids: Sequence[UUID]) -> None:
        await self._put(session_ids, _REVOKED)

    async def require_refresh(self, session_ids: Sequence[UUID]) -> None:
        await self._put(session_ids, _REFRESH)

    async def check(self, session_id: UUID, issued_at: datetime) -> None:
        try:
            raw = await self._redis.get(self._prefix + str(session_id))
        except RedisError as exc:
            raise ServiceUnavailable("Sessions cannot be checked right now; try again.") from exc
        if raw is None:
            return
        entry = json.loads(raw)
        if entry["state"] == _REVOKED:
            raise Unauthenticated("This session has ended; log in again.")
        # Tokens issued before the change carry stale claims; refreshed ones are newer.
        if issued_at.timestamp() < float(entry["before"]):
            raise TokenExpired("Your access changed; refresh the session.")

    async def _put(self, session_ids: Sequence[UUID], state: str) -> None:
        if not session_ids:
            return
        before = round(self._clock.now().astimezone(UTC).timestamp(), 3)
        value = json.dumps({"state": state, "before": before})
        try:
            for session_id in session_ids:
                key = self._prefix + str(session_id)
                if state == _REFRESH:
                    await self._set_unless_revoked(keys=[key], args=[value, self._ttl])
                else:
                    await self._redis.set(key, value, ex=self._ttl)
        except RedisError as exc:
            raise ServiceUnavailable("Sessions cannot be ended right now; try again.") from exc
