"""A socket's operations share one Context and may check its token at once: the outcome
kept is the newest check's, and ``authenticated_at`` dates that outcome, so a stream
reading it mid-check still sees a session notice heard since (resolvers/documents.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import cast

from domain.entities import Principal, Role
from domain.errors import Unauthenticated
from domain.ports import RateLimiter
from domain.services import Services
from schema.context import Context

PRINCIPAL = Principal(uuid.uuid4(), uuid.uuid4(), Role.EDITOR, uuid.uuid4())


class Sessions:
    """Answers each check when the test says so: valid, or revoked."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[Principal]] = []
        self._asked = asyncio.Condition()

    async def authenticate(self, token: str) -> Principal:
        answer: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        async with self._asked:
            self.pending.append(answer)
            self._asked.notify_all()
        return await answer

    async def asked(self, count: int) -> None:
        async with self._asked:
            await self._asked.wait_for(lambda: len(self.pending) >= count)


def socket_context(sessions: Sessions) -> Context:
    context = Context(
        services=cast(Services, sessions),
        request_id="r",
        client_ip=None,
        rate_limiter=cast(RateLimiter, None),
    )
    context.principal = PRINCIPAL
    context.authenticated_at = time.monotonic()
    return context


async def test_the_time_of_a_check_moves_only_when_its_outcome_is_kept() -> None:
    sessions = Sessions()
    context = socket_context(sessions)
    before = context.authenticated_at
    check = asyncio.create_task(context.authenticate("token"))
    await sessions.asked(1)
    # Mid-check, a stream reads the old principal with the old time: a notice heard
    # after ``before`` still tells it to check for itself.
    assert context.authenticated_at == before and context.principal == PRINCIPAL
    sessions.pending[0].set_exception(Unauthenticated("This session has ended."))
    await check
    assert context.principal is None and context.authenticated_at > before
    assert isinstance(context.auth_error, Unauthenticated)


async def test_an_older_check_ending_last_cannot_bring_a_revoked_session_back() -> None:
    sessions = Sessions()
    context = socket_context(sessions)
    older = asyncio.create_task(context.authenticate("token"))
    await sessions.asked(1)
    newer = asyncio.create_task(context.authenticate("token"))
    await sessions.asked(2)
    sessions.pending[1].set_exception(Unauthenticated("This session has ended."))
    await newer
    sessions.pending[0].set_result(PRINCIPAL)  # begun before the log-out, answered after
    await older
    assert context.principal is None
    assert isinstance(context.auth_error, Unauthenticated)
