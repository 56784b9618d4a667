"""A membership change looks only at the member's sessions that can still act, and
tells Redis about them in one round trip; the rows of sessions that ended for good are
pruned, but not before a replay of one of their tokens stops mattering.

Every refresh adds a row and nothing removed one, so a long-time member's removal (or
role change) read, updated and told Redis about every session they ever had, one round
trip each, while their organisation stayed locked against every log-in and refresh.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from redis.asyncio import Connection, Redis

from domain.entities import AuthSession, Principal, Role
from domain.errors import RefreshTokenReused, TokenExpired, Unauthenticated
from domain.services.accounts import RequestOrigin
from domain.services.organizations import OrganizationService
from domain.services.refresh_token_retention import prune_refresh_tokens
from infrastructure.cache.pubsub_listener import RedisListener
from infrastructure.cache.session_revocations import RedisSessionRevocations
from infrastructure.container import BackendUrls, Container
from infrastructure.settings import Settings
from tests.helpers import PASSWORD, unique_email
from workers.token_pruning import prune_now_and_then

ORIGIN = RequestOrigin()
DEAD_SESSIONS = 30


class CountingConnection(Connection):
    """Counts what is sent to Redis: one send is one round trip (a pipeline's too)."""

    sends = 0

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        type(self).sends += 1
        await super().send_packed_command(command, check_health)


@dataclass
class Counted:
    revocations: RedisSessionRevocations
    service: OrganizationService

    @property
    def sends(self) -> int:
        return CountingConnection.sends


@pytest.fixture
async def counted(
    container: Container, settings: Settings, redis_url: str
) -> AsyncIterator[Counted]:
    redis = Redis.from_url(redis_url, connection_class=CountingConnection)
    revocations = RedisSessionRevocations(
        redis,
        settings.redis_key_prefix,
        settings.access_token_ttl_seconds,
        container.clock,
        RedisListener(redis),
    )
    service = OrganizationService(
        container.uow_factory,
        revocations,
        container.clock,
        access_token_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
    )
    await revocations.revoke([uuid.uuid4()])  # the script is loaded: no NOSCRIPT later
    CountingConnection.sends = 0
    yield Counted(revocations, service)
    await redis.aclose()


@pytest.fixture
async def database(urls: BackendUrls) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection, to write token rows as months of use leave them."""
    connection = await asyncpg.connect(urls.database_url.replace("+asyncpg", ""))
    yield connection
    await connection.close()


async def insert_token(  # noqa: PLR0917  # one row's columns
    database: asyncpg.Connection,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    family_id: uuid.UUID,
    started: datetime,
    created: datetime,
    expires: datetime,
    used: datetime | None = None,
) -> uuid.UUID:
    token_id = uuid.uuid4()
    await database.execute(
        "INSERT INTO refresh_tokens (id, organization_id, user_id, family_id, "
        "session_started_at, token_hash, created_at, expires_at, used_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        token_id,
        organization_id,
        user_id,
        family_id,
        started,
        uuid.uuid4().hex * 2,
        created,
        expires,
        used,
    )
    return token_id


@dataclass
class History:
    admin: Principal
    member_id: uuid.UUID
    live: list[AuthSession]
    # A session at its maximum age: it cannot refresh, but its last access token works.
    ending: uuid.UUID
    dead: list[uuid.UUID]


@pytest.fixture
async def history(container: Container, database: asyncpg.Connection) -> History:
    """A member with two sessions that can act (one refreshed, so it has a used token),
    one that can act only until its last access token expires, and many long over."""
    accounts = container.services.accounts
    owner = await accounts.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    member = await accounts.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    org = owner.organization.id
    admin = Principal(owner.user.id, org, Role.ADMIN, uuid.uuid4())
    await container.services.organizations.add_member(admin, member.user.email, Role.EDITOR, None)
    first = await accounts.log_in(member.user.email, PASSWORD, org, ORIGIN)
    first = await accounts.refresh(first.refresh_token, ORIGIN)
    second = await accounts.log_in(member.user.email, PASSWORD, org, ORIGIN)
    now = datetime.now(UTC)
    ending = uuid.uuid4()
    await insert_token(
        database,
        member.user.id,
        org,
        ending,
        started=now - timedelta(days=90),
        created=now - timedelta(minutes=2),
        expires=now - timedelta(minutes=1),
    )
    dead = [uuid.uuid4() for _ in range(DEAD_SESSIONS)]
    for number, family in enumerate(dead):
        started = now - timedelta(days=40 + number)
        used = started + timedelta(minutes=14)
        await insert_token(database, member.user.id, org, family, started, started, used, used=used)
        await insert_token(
            database, member.user.id, org, family, started, used, now - timedelta(days=10)
        )
    return History(admin, member.user.id, [first, second], ending, dead)


async def session_states(
    container: Container, settings: Settings, families: list[uuid.UUID]
) -> dict[uuid.UUID, str | None]:
    keys = [f"{settings.redis_key_prefix}session:{family}" for family in families]
    values = await container.redis.mget(keys)
    return {
        family: json.loads(value)["state"] if value is not None else None
        for family, value in zip(families, values, strict=True)
    }


async def live_families(container: Container, history: History) -> list[uuid.UUID]:
    sessions = [
        (await container.services.accounts.authenticate(s.access_token)).session_id
        for s in history.live
    ]
    return [*sessions, history.ending]


async def test_a_removal_revokes_only_the_sessions_that_can_still_act(
    container: Container,
    settings: Settings,
    counted: Counted,
    history: History,
    database: asyncpg.Connection,
) -> None:
    live = await live_families(container, history)

    await counted.service.remove_member(history.admin, history.member_id, ip=None)

    # The revocation and its announcement: two round trips, not one per session.
    assert counted.sends <= 2
    states = await session_states(container, settings, live + history.dead)
    assert {family: states[family] for family in live} == dict.fromkeys(live, "revoked")
    assert {states[family] for family in history.dead} == {None}
    for session in history.live:
        with pytest.raises(Unauthenticated):
            await container.services.accounts.authenticate(session.access_token)
    # Only the newest, unused tokens of those sessions were written to.
    revoked = await database.fetch(
        "SELECT family_id, used_at FROM refresh_tokens "
        "WHERE user_id = $1 AND revoked_at IS NOT NULL",
        history.member_id,
    )
    assert sorted(row["family_id"] for row in revoked) == sorted(live)
    assert {row["used_at"] for row in revoked} == {None}


async def test_a_role_change_refreshes_only_the_sessions_that_can_still_act(
    container: Container, settings: Settings, counted: Counted, history: History
) -> None:
    live = await live_families(container, history)

    await counted.service.change_role(history.admin, history.member_id, Role.VIEWER, ip=None)

    # Told before and after the commit, each in one round trip plus its announcement.
    assert counted.sends <= 4
    states = await session_states(container, settings, live + history.dead)
    assert {family: states[family] for family in live} == dict.fromkeys(live, "refresh")
    assert {states[family] for family in history.dead} == {None}
    for session in history.live:
        with pytest.raises(TokenExpired):
            await container.services.accounts.authenticate(session.access_token)


async def test_pruning_deletes_what_no_replay_needs_and_keeps_the_rest(
    container: Container, settings: Settings, database: asyncpg.Connection
) -> None:
    accounts = container.services.accounts
    user = await accounts.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    org, user_id = user.organization.id, user.user.id
    max_age = timedelta(seconds=settings.session_max_age_seconds)
    now = datetime.now(UTC)
    long_ago = now - max_age - timedelta(days=2)
    # Sessions past their maximum age whose tokens expired long ago: nothing can act.
    ended = [
        await insert_token(
            database, user_id, org, uuid.uuid4(), long_ago, long_ago, now - timedelta(days=1)
        )
        for _ in range(5)
    ]
    kept = [
        # Started as long ago, under a longer maximum age: its newest token still works.
        await insert_token(
            database, user_id, org, uuid.uuid4(), long_ago, now, now + timedelta(days=1)
        ),
        # Idle for a month, but within its maximum age: a session switched to from it
        # could still be live, so a replay of this token must still end it.
        await insert_token(
            database,
            user_id,
            org,
            uuid.uuid4(),
            now - timedelta(days=60),
            now - timedelta(days=60),
            now - timedelta(days=30),
        ),
    ]
    # A real session, refreshed: its first token is used.
    replayed = await accounts.log_in(user.user.email, PASSWORD, org, ORIGIN)
    current = await accounts.refresh(replayed.refresh_token, ORIGIN)

    pruned = await prune_refresh_tokens(
        container.uow_factory,
        now,
        session_max_age=max_age,
        access_token_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        batch=2,  # several rounds
    )

    assert pruned >= len(ended)
    remaining = {
        row["id"]
        for row in await database.fetch(
            "SELECT id FROM refresh_tokens WHERE id = ANY($1::uuid[])", ended + kept
        )
    }
    assert remaining == set(kept)
    with pytest.raises(RefreshTokenReused):
        await accounts.refresh(replayed.refresh_token, ORIGIN)
    with pytest.raises(Unauthenticated):
        await accounts.authenticate(current.access_token)


async def test_the_worker_prunes_once_an_interval(
    container: Container, settings: Settings, database: asyncpg.Connection
) -> None:
    user = await container.services.accounts.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    key = f"{settings.redis_key_prefix}refresh-token-prune"
    long_ago = datetime.now(UTC) - timedelta(seconds=settings.session_max_age_seconds, days=2)

    async def ended_session() -> uuid.UUID:
        return await insert_token(
            database,
            user.user.id,
            user.organization.id,
            uuid.uuid4(),
            long_ago,
            long_ago,
            long_ago + timedelta(days=1),
        )

    async def exists(token_id: uuid.UUID) -> bool:
        found = await database.fetchval("SELECT 1 FROM refresh_tokens WHERE id = $1", token_id)
        return found is not None

    await container.redis.delete(key)
    try:
        first = await ended_session()
        assert await prune_now_and_then(container) >= 1
        assert not await exists(first)
        second = await ended_session()
        assert await prune_now_and_then(container) == 0  # another worker's turn, later
        assert await exists(second)
    finally:
        await container.redis.delete(key)


async def test_the_service_counts_a_session_live_only_as_long_as_its_access_tokens(
    container: Container, settings: Settings, history: History, database: asyncpg.Connection
) -> None:
    """The container's service is told the access tokens' lifetime: a session whose last
    token expired well past it (but within the longest lifetime settings allow) is over."""
    now = datetime.now(UTC)
    ttl = timedelta(seconds=settings.access_token_ttl_seconds)
    assert ttl < timedelta(hours=2)
    over = uuid.uuid4()
    await insert_token(
        database,
        history.member_id,
        history.admin.organization_id,
        over,
        started=now - timedelta(days=3),
        created=now - timedelta(hours=2),
        expires=now - timedelta(hours=1),
    )

    await container.services.organizations.remove_member(history.admin, history.member_id, None)

    states = await session_states(container, settings, [over, history.ending])
    assert states == {over: None, history.ending: "revoked"}
