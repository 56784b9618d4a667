"""Ending sessions fails closed: when Redis cannot record a revocation, the change that
needed it (a removal, a log-out) is not committed either, and the caller is told to
try again, so no removed member's or logged-out session's access token lingers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from domain.entities import Principal, Role
from domain.errors import ServiceUnavailable, Unauthenticated
from domain.services.accounts import RequestOrigin
from infrastructure.container import BackendUrls, Container
from infrastructure.settings import Settings
from tests.conftest import free_port
from tests.helpers import PASSWORD, unique_email


@pytest.fixture
async def redis_down(settings: Settings, urls: BackendUrls) -> AsyncIterator[Container]:
    """The same database, and a Redis URL nobody listens on."""
    dead = BackendUrls(urls.database_url, f"redis://127.0.0.1:{free_port()}/0")
    built = Container(settings, dead)
    yield built
    await built.aclose()


async def test_a_member_stays_until_their_sessions_can_be_revoked(
    container: Container, redis_down: Container
) -> None:
    origin = RequestOrigin()
    owner = await container.services.accounts.sign_up(unique_email(), PASSWORD, None, origin)
    member = await container.services.accounts.sign_up(unique_email(), PASSWORD, None, origin)
    admin = Principal(owner.user.id, owner.organization.id, Role.ADMIN, uuid.uuid4())
    organizations = container.services.organizations
    await organizations.add_member(admin, member.user.email, Role.EDITOR, ip=None)
    inside = await container.services.accounts.log_in(
        member.user.email, PASSWORD, owner.organization.id, origin
    )

    with pytest.raises(ServiceUnavailable):
        await redis_down.services.organizations.remove_member(admin, member.user.id, ip=None)
    assert member.user.id in {m.user.id for m in await organizations.list_members(admin)}

    assert await organizations.remove_member(admin, member.user.id, ip=None)
    assert member.user.id not in {m.user.id for m in await organizations.list_members(admin)}
    with pytest.raises(Unauthenticated):
        await container.services.accounts.authenticate(inside.access_token)


async def test_a_log_out_is_not_half_done_when_redis_is_down(
    container: Container, redis_down: Container
) -> None:
    origin = RequestOrigin()
    session = await container.services.accounts.sign_up(unique_email(), PASSWORD, None, origin)

    with pytest.raises(ServiceUnavailable):
        await redis_down.services.accounts.log_out(session.refresh_token, origin)
    # Nothing changed: the refresh token still works, so the client can log out again.
    again = await container.services.accounts.refresh(session.refresh_token, origin)

    assert await container.services.accounts.log_out(again.refresh_token, origin)
    with pytest.raises(Unauthenticated):
        await container.services.accounts.authenticate(again.access_token)
