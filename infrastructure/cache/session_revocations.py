"""Revoked sessions in Redis, so every API process rejects their access tokens.

Each revocation or required refresh is also announced on a pub/sub channel. An API
process remembers for a minute which sessions it heard of, so a long-lived stream (a
`documentEvents` subscription) re-checks its session before the next event instead
of at its next periodic check, and an authenticated WebSocket watching the session
(``watch``) checks it at once. Announcements are best effort: one lost while Redis
reconnects leaves the periodic check.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from uuid import UUID

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from domain.errors import ServiceUnavailable, TokenExpired, Unauthenticated
from domain.ports import Clock
from infrastructure.cache.pubsub_listener import RedisListener

log = structlog.get_logger("foundry.sessions")

_REVOKED = "revoked"
_REFRESH = "refresh"
# How long an announcement is remembered: far longer than a stream's periodic re-check.
NOTICE_MEMORY_SECONDS = 60.0
NOTICE_MEMORY_ENTRIES = 100_000

# Keys set in one call: a member's sessions are told in one round trip, however many.
_KEYS_PER_CALL = 1_000

# Set every entry to ARGV[1] for ARGV[2] seconds; with ARGV[3] = "keep", not an entry
# whose session is already revoked (a refresh never downgrades a revocation).
_PUT = """
for _, key in ipairs(KEYS) do
  local current = ARGV[3] == 'keep' and redis.call('GET', key)
  if not (current and string.find(current, '"revoked"', 1, true)) then
    redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
  end
end
return #KEYS
"""


class RedisSessionRevocations:
    """Entries live as long as an access token can, then expire on their own.

    Fails closed: when Redis cannot be asked, authentication is refused with
    SERVICE_UNAVAILABLE rather than accepting a possibly revoked token.
    """

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        access_token_ttl_seconds: int,
        clock: Clock,
        listener: RedisListener,
    ) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}session:"
        self._channel = f"{key_prefix}sessions-changed"
        self._ttl = access_token_ttl_seconds + 60
        self._clock = clock
        self._put_script = redis.register_script(_PUT)
        # Session id -> time.monotonic() when this process heard it changed, oldest first.
        self._heard: OrderedDict[UUID, float] = OrderedDict()
        # Session id -> what to call when a notice about it is heard (``watch``).
        self._watchers: dict[UUID, set[Callable[[], None]]] = {}
        listener.route(self._channel, self._on_notice)

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

    def changed_since(self, session_id: UUID, moment: float) -> bool:
        heard = self._heard.get(session_id)
        return heard is not None and heard >= moment

    def watch(self, session_id: UUID, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` each time this process hears a notice about the session, until
        the function returned is called. ``wake`` runs on the listener's task: it must
        not block (it schedules its work)."""
        self._watchers.setdefault(session_id, set()).add(wake)

        def unwatch() -> None:
            wakes = self._watchers.get(session_id)
            if wakes is not None:
                wakes.discard(wake)
                if not wakes:
                    del self._watchers[session_id]

        return unwatch

    def _on_notice(self, raw: bytes) -> None:
        try:
            session_ids = [UUID(value) for value in json.loads(raw)]
        except (ValueError, TypeError):
            log.warning("sessions.undecodable_notice")
            return
        now = time.monotonic()
        heard = self._heard
        for session_id in session_ids:
            heard[session_id] = now
            heard.move_to_end(session_id)
        for session_id in session_ids:
            for wake in list(self._watchers.get(session_id, ())):
                try:
                    wake()
                except Exception:  # one watcher's bug must not keep the others unwoken
                    log.exception("sessions.watcher_failed")
        while heard:
            oldest = next(iter(heard.values()))
            if oldest > now - NOTICE_MEMORY_SECONDS and len(heard) <= NOTICE_MEMORY_ENTRIES:
                break
            heard.popitem(last=False)

    async def announce(self, session_ids: Sequence[UUID]) -> None:
        if not session_ids:
            return
        try:
            await self._redis.publish(
                self._channel, json.dumps([str(session_id) for session_id in session_ids])
            )
        except (RedisError, OSError) as exc:  # streams fall back to their periodic re-check
            log.warning("sessions.notice_failed", count=len(session_ids), error=type(exc).__name__)

    async def _put(self, session_ids: Sequence[UUID], state: str) -> None:
        if not session_ids:
            return
        before = round(self._clock.now().astimezone(UTC).timestamp(), 3)
        value = json.dumps({"state": state, "before": before})
        keys = [self._prefix + str(session_id) for session_id in session_ids]
        keep = "keep" if state == _REFRESH else "overwrite"
        try:
            for start in range(0, len(keys), _KEYS_PER_CALL):
                await self._put_script(
                    keys=keys[start : start + _KEYS_PER_CALL], args=[value, self._ttl, keep]
                )
        except RedisError as exc:
            raise ServiceUnavailable("Sessions cannot be ended right now; try again.") from exc
        await self.announce(session_ids)
