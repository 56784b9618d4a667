"""Deleting refresh tokens of sessions that ended for good, from the worker's watchdog.

Once an hour across all workers (a Redis key decides which, and when): the rows only
grow between two runs, and deleting them is no hurry, only what keeps the table (and
every membership change's look at it) from growing with each member's whole history.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from domain.services.refresh_token_retention import prune_refresh_tokens
from infrastructure.container import Container

log = structlog.get_logger("foundry.worker")

PRUNE_INTERVAL_SECONDS = 3_600


async def prune_now_and_then(container: Container) -> int:
    """Prune unless some worker did within the interval; returns the rows deleted.
    Never raises (but for cancellation): the watchdog goes on either way."""
    settings = container.settings
    key = f"{settings.redis_key_prefix}refresh-token-prune"
    try:
        if not await container.redis.set(key, "1", nx=True, ex=PRUNE_INTERVAL_SECONDS):
            return 0
        pruned = await prune_refresh_tokens(
            container.uow_factory,
            container.clock.now(),
            session_max_age=timedelta(seconds=settings.session_max_age_seconds),
            access_token_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning("refresh_tokens.prune_failed", exc_info=True)
        return 0
    if pruned:
        log.info("refresh_tokens.pruned", rows=pruned)
    return pruned
