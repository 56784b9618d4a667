"""A replayed refresh token ends its session once: replaying it again, after that session
(and every one switched to from it) is revoked, is refused with the same code but writes
no audit entry and tells Redis nothing, however often it comes."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import pytest
from sqlalchemy import func, select

from domain.errors import RefreshTokenReused
from domain.services.accounts import RequestOrigin
from infrastructure.cache.session_revocations import RedisSessionRevocations
from infrastructure.container import Container
from infrastructure.database.models import AuditLogRow
from tests.helpers import PASSWORD, unique_email

REPLAYS = 5


class CountedRevocations:
    """How many times sessions were revoked in Redis (each call: a SET per family and a
    published notice)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[list[UUID]] = []
        original = RedisSessionRevocations.revoke

        async def counted(revocations: RedisSessionRevocations, ids: Sequence[UUID]) -> None:
            self.calls.append(list(ids))
            await original(revocations, ids)

        monkeypatch.setattr(RedisSessionRevocations, "revoke", counted)


async def reuse_entries(container: Container, user_id: UUID) -> int:
    async with container.engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(AuditLogRow)
            .where(
                AuditLogRow.actor_user_id == user_id,
                AuditLogRow.action == "auth.refresh_token_reused",
            )
        )
    assert isinstance(count, int)
    return count


async def replay(container: Container, token: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(RefreshTokenReused):
            await container.services.accounts.refresh(token, RequestOrigin("198.51.100.7"))


async def test_replays_of_a_used_token_end_its_session_once(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = container.services.accounts
    email = unique_email()
    signed_up = await accounts.sign_up(email, PASSWORD, None, RequestOrigin())
    await accounts.refresh(signed_up.refresh_token, RequestOrigin())
    # Another session of the user's stays live throughout: replays must not touch it.
    other = await accounts.log_in(email, PASSWORD, None, RequestOrigin())
    revocations = CountedRevocations(monkeypatch)

    await replay(container, signed_up.refresh_token, REPLAYS)

    assert await reuse_entries(container, signed_up.user.id) == 1
    assert revocations.calls == [[signed_up.principal.session_id]]
    renewed = await accounts.refresh(other.refresh_token, RequestOrigin())
    await accounts.authenticate(renewed.access_token)


async def test_replays_after_a_log_out_write_nothing(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = container.services.accounts
    signed_up = await accounts.sign_up(unique_email(), PASSWORD, None, RequestOrigin())
    renewed = await accounts.refresh(signed_up.refresh_token, RequestOrigin())
    assert await accounts.log_out(renewed.refresh_token, RequestOrigin())
    revocations = CountedRevocations(monkeypatch)

    await replay(container, signed_up.refresh_token, REPLAYS)

    assert await reuse_entries(container, signed_up.user.id) == 0
    assert revocations.calls == []
