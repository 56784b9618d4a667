"""A membership change that runs while a session starts or an API key is made: whichever
commits first, the other sees it, so no session or key outlives a removal or keeps a
role taken away.

A removal or role change locks its organisation's row until it commits
(``organizations.lock``). Here a bare connection plays such a change, half done (row
locked, membership changed, not committed), while the service call runs; the call must
wait for it, then act on what it committed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import pytest

from domain.entities import AuthSession, Principal, Role
from domain.errors import Forbidden, InvalidRefreshToken, NotFound
from domain.services.accounts import RequestOrigin
from infrastructure.container import BackendUrls, Container
from tests.helpers import PASSWORD, unique_email

T = TypeVar("T")
ORIGIN = RequestOrigin()


@dataclass
class Organisation:
    admin: AuthSession
    member: AuthSession

    @property
    def id(self) -> uuid.UUID:
        return self.admin.organization.id


@pytest.fixture
async def organisation(container: Container) -> Organisation:
    accounts = container.services.accounts
    admin = await accounts.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    member = await accounts.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    principal = Principal(admin.user.id, admin.organization.id, Role.ADMIN, uuid.uuid4())
    await container.services.organizations.add_member(
        principal, member.user.email, Role.ADMIN, ip=None
    )
    return Organisation(admin, member)


@pytest.fixture
async def change(urls: BackendUrls) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection for the half-done membership change."""
    connection = await asyncpg.connect(urls.database_url.replace("+asyncpg", ""))
    yield connection
    await connection.close()


async def begin_change(connection: asyncpg.Connection, organization_id: uuid.UUID) -> None:
    await connection.execute("BEGIN")
    await connection.execute(
        "SELECT id FROM organizations WHERE id = $1 FOR UPDATE", organization_id
    )


async def change_membership(
    connection: asyncpg.Connection,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str | None,
) -> None:
    """Within the half-done change: the member gets ``role``, or leaves (None)."""
    if role is None:
        statement = "DELETE FROM memberships WHERE user_id = $1 AND organization_id = $2"
        await connection.execute(statement, user_id, organization_id)
    else:
        statement = "UPDATE memberships SET role = $3 WHERE user_id = $1 AND organization_id = $2"
        await connection.execute(statement, user_id, organization_id, role)


async def after_waiting(connection: asyncpg.Connection, call: Awaitable[T]) -> asyncio.Task[T]:
    """Starts ``call`` and returns once it waits for a lock (the change's); fails if it
    finishes without waiting."""
    task = asyncio.ensure_future(call)
    for _ in range(1_000):
        if task.done():
            await task
            pytest.fail("the call did not wait for the membership change")
        if await connection.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            return task
        await asyncio.sleep(0.01)
    task.cancel()
    pytest.fail("the call neither waited nor finished")


async def test_a_log_in_during_a_removal_is_refused(
    container: Container, organisation: Organisation, change: asyncpg.Connection
) -> None:
    member = organisation.member.user
    await begin_change(change, organisation.id)
    await change_membership(change, organisation.id, member.id, None)
    log_in = container.services.accounts.log_in(member.email, PASSWORD, organisation.id, ORIGIN)
    waiting = await after_waiting(change, log_in)
    await change.execute("COMMIT")
    with pytest.raises(NotFound):
        await waiting


async def test_a_refresh_during_a_role_change_carries_the_new_role(
    container: Container, organisation: Organisation, change: asyncpg.Connection
) -> None:
    accounts = container.services.accounts
    member = organisation.member.user
    session = await accounts.log_in(member.email, PASSWORD, organisation.id, ORIGIN)
    assert session.role is Role.ADMIN
    await begin_change(change, organisation.id)
    await change_membership(change, organisation.id, member.id, "viewer")
    waiting = await after_waiting(change, accounts.refresh(session.refresh_token, ORIGIN))
    await change.execute("COMMIT")
    refreshed = await waiting
    assert refreshed.role is Role.VIEWER
    assert (await accounts.authenticate(refreshed.access_token)).role is Role.VIEWER


async def test_an_api_key_made_during_a_demotion_is_refused(
    container: Container, organisation: Organisation, change: asyncpg.Connection
) -> None:
    member = organisation.member
    principal = Principal(member.user.id, organisation.id, Role.ADMIN, uuid.uuid4())
    await begin_change(change, organisation.id)
    await change_membership(change, organisation.id, member.user.id, "editor")
    create = container.services.api_keys.create(principal, "ci", Role.ADMIN, None, ip=None)
    waiting = await after_waiting(change, create)
    await change.execute("COMMIT")
    with pytest.raises(Forbidden):
        await waiting


async def test_a_switch_during_a_role_change_carries_the_new_role(
    container: Container, organisation: Organisation, change: asyncpg.Connection
) -> None:
    # The member's own session, in their personal organisation, switches into the shared
    # one while the admin lowers their role there.
    accounts = container.services.accounts
    member = organisation.member
    await begin_change(change, organisation.id)
    await change_membership(change, organisation.id, member.user.id, "viewer")
    switch = accounts.switch_organization(member.refresh_token, organisation.id, ORIGIN)
    waiting = await after_waiting(change, switch)
    await change.execute("COMMIT")
    switched = await waiting
    assert switched.organization.id == organisation.id
    assert (await accounts.authenticate(switched.access_token)).role is Role.VIEWER


async def test_a_refresh_during_a_removal_neither_deadlocks_nor_survives(
    container: Container, organisation: Organisation, change: asyncpg.Connection
) -> None:
    # A removal locks the organisation, then revokes the member's token rows; a refresh
    # that locked its token row first and then waited for the organisation would deadlock
    # with it (PostgreSQL aborts one of the two).
    accounts = container.services.accounts
    member = organisation.member.user
    session = await accounts.log_in(member.email, PASSWORD, organisation.id, ORIGIN)
    await begin_change(change, organisation.id)
    waiting = await after_waiting(change, accounts.refresh(session.refresh_token, ORIGIN))
    await change_membership(change, organisation.id, member.id, None)
    await change.execute(
        "UPDATE refresh_tokens SET revoked_at = now() "
        "WHERE user_id = $1 AND organization_id = $2 AND revoked_at IS NULL",
        member.id,
        organisation.id,
        timeout=10,
    )
    await change.execute("COMMIT")
    with pytest.raises(InvalidRefreshToken):
        await waiting
