"""One Redis pub/sub connection per process, serving every channel pattern routed to it.

Document events and session notices both arrive this way. The listener starts when
first needed (an API process starts it at once, so that every stream it serves hears
of a session that ended, not only once a document stream asked), and after a lost
connection it subscribes again with backoff; messages published meanwhile are lost, as
pub/sub never keeps them, so every user of it has a fallback (the database's state, a
periodic re-check).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from redis.asyncio import Redis

log = structlog.get_logger("foundry.pubsub")

Handler = Callable[[bytes], None]


class RedisListener:
    def __init__(self, redis: Redis, name: str = "redis-listener") -> None:
        self._redis = redis
        self._name = name
        self._handlers: dict[bytes, Handler] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def route(self, pattern: str, handler: Handler) -> None:
        """Hand messages on channels matching ``pattern`` to ``handler`` (synchronous:
        it runs on the listener's task and must not block). Routes are set up before
        the listener starts."""
        if self._task is not None:
            raise RuntimeError("routes must be added before the listener starts")
        self._handlers[pattern.encode()] = handler

    def start(self) -> None:
        """Start listening if not yet, without waiting for the subscription."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name=self._name)

    async def ready(self) -> None:
        """Start listening if not yet, and wait until every pattern is subscribed (for as
        long as Redis is down: callers bound the wait)."""
        self.start()
        await self._ready.wait()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(*self._handlers)
                self._ready.set()
                backoff = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        self._deliver(message["pattern"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                self._ready.clear()
                log.warning("pubsub.listener_failed", retry_in=backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _deliver(self, pattern: bytes, data: bytes) -> None:
        handler = self._handlers.get(pattern)
        if handler is None:
            return
        try:
            handler(data)
        except Exception:  # one bad message must not drop the subscription
            log.exception("pubsub.handler_failed", pattern=pattern.decode(errors="replace"))
