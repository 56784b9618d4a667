"""A role change is committed once its sessions have been told to refresh; the second,
after-commit notice is best effort, so a Redis failure then does not report the committed
change as failed (the caller would retry a change that already happened)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import pytest
from redis.asyncio import Redis

from domain.entities import Principal, Role
from domain.errors import TokenExpired
from domain.services.accounts import RequestOrigin
from domain.services.organizations import OrganizationService
from infrastructure.cache.pubsub_listener import RedisListener
from infrastructure.cache.session_revocations import RedisSessionRevocations
from infrastructure.container import Container
from infrastructure.settings import Settings
from tests.conftest import free_port
from tests.helpers import PASSWORD, unique_email


class RedisGoneAfterCommit:
    """The real revocations, except that the second ``require_refresh`` (a role change's
    after-commit one) goes to a Redis nobody listens on."""

    def __init__(self, live: RedisSessionRevocations, dead: RedisSessionRevocations) -> None:
        self._live = live
        self._dead = dead
        self.refreshes = 0

    async def require_refresh(self, session_ids: Sequence[uuid.UUID]) -> None:
        self.refreshes += 1
        target = self._dead if self.refreshes == 2 else self._live
        await target.require_refresh(session_ids)

    async def revoke(self, session_ids: Sequence[uuid.UUID]) -> None:
        await self._live.revoke(session_ids)

    async def check(self, session_id: uuid.UUID, issued_at: datetime) -> None:
        await self._live.check(session_id, issued_at)

    async def announce(self, session_ids: Sequence[uuid.UUID]) -> None:
        await self._live.announce(session_ids)

    def changed_since(self, session_id: uuid.UUID, moment: float) -> bool:
        return self._live.changed_since(session_id, moment)


@pytest.fixture
async def flaky(container: Container, settings: Settings) -> AsyncIterator[RedisGoneAfterCommit]:
    dead_redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")

    def revocations(redis: Redis, listener: RedisListener) -> RedisSessionRevocations:
        return RedisSessionRevocations(
            redis,
            settings.redis_key_prefix,
            settings.access_token_ttl_seconds,
            container.clock,
            listener,
        )

    live = revocations(container.redis, RedisListener(container.redis))
    yield RedisGoneAfterCommit(live, revocations(dead_redis, RedisListener(dead_redis)))
    await dead_redis.aclose()


async def test_a_committed_role_change_succeeds_though_redis_fails_after_the_commit(
    container: Container, flaky: RedisGoneAfterCommit, caplog: pytest.LogCaptureFixture
) -> None:
    accounts, origin = container.services.accounts, RequestOrigin()
    owner = await accounts.sign_up(unique_email(), PASSWORD, None, origin)
    member = await accounts.sign_up(unique_email(), PASSWORD, None, origin)
    admin = Principal(owner.user.id, owner.organization.id, Role.ADMIN, uuid.uuid4())
    await container.services.organizations.add_member(admin, member.user.email, Role.VIEWER, None)
    inside = await accounts.log_in(member.user.email, PASSWORD, owner.organization.id, origin)
    service = OrganizationService(container.uow_factory, flaky, container.clock)
    caplog.set_level(logging.WARNING, logger="foundry.organizations")

    changed = await service.change_role(admin, member.user.id, Role.EDITOR, ip=None)

    assert changed.role is Role.EDITOR
    assert flaky.refreshes == 2  # the second one did fail
    members = await container.services.organizations.list_members(admin)
    assert {m.user.id: m.role for m in members}[member.user.id] is Role.EDITOR
    # The notice before the commit went through: the member's old token must refresh.
    with pytest.raises(TokenExpired):
        await accounts.authenticate(inside.access_token)
    assert "member.role_change_refresh_failed" in caplog.text
