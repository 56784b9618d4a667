"""The refresh reuse grace's bounds, against the service on the real database and Redis,
with a clock the test moves: how long a retry may come, a grace of zero, and the session's
maximum age, which a retry never extends."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from domain.errors import InvalidRefreshToken, RefreshTokenReused, Unauthenticated
from domain.services.accounts import AccountService, RequestOrigin
from infrastructure.auth.jwt_secret import resolve_jwt_secret
from infrastructure.auth.passwords import Argon2PasswordHasher
from infrastructure.auth.tokens import JwtAccessTokenCodec
from infrastructure.cache.session_revocations import RedisSessionRevocations
from infrastructure.container import BackendUrls, Container
from infrastructure.settings import Settings
from tests.helpers import PASSWORD, unique_email
from tests.integration.test_membership_races import after_waiting

ORIGIN = RequestOrigin()
GRACE = timedelta(seconds=30)


class MovedClock:
    """The wall clock, moved on by the test."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def accounts(
    container: Container,
    settings: Settings,
    clock: MovedClock,
    *,
    grace: timedelta = GRACE,
    max_age: timedelta = timedelta(days=90),
) -> AccountService:
    """The container's account service, on ``clock``, with its own grace and maximum age
    (access tokens and revocations keep the wall clock)."""
    return AccountService(
        uow_factory=container.uow_factory,
        hasher=Argon2PasswordHasher(1, 1024, 1),
        tokens=JwtAccessTokenCodec(
            secret=resolve_jwt_secret(settings),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=timedelta(seconds=settings.access_token_ttl_seconds),
            clock=container.clock,
        ),
        revocations=RedisSessionRevocations(
            container.redis,
            settings.redis_key_prefix,
            settings.access_token_ttl_seconds,
            container.clock,
            container.listener,
        ),
        clock=clock,
        refresh_token_ttl=timedelta(days=30),
        session_max_age=max_age,
        refresh_reuse_grace=grace,
    )


async def test_a_retry_just_within_the_grace_gets_a_new_pair(
    container: Container, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="foundry.accounts")
    clock = MovedClock()
    service = accounts(container, settings, clock)
    session = await service.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    await service.refresh(session.refresh_token, ORIGIN)
    clock.offset += GRACE - timedelta(seconds=1)

    retried = await service.refresh(session.refresh_token, ORIGIN)

    await service.authenticate(retried.access_token)
    await service.refresh(retried.refresh_token, ORIGIN)
    [logged] = [r for r in caplog.records if r.getMessage().startswith("auth.refresh_retried")]
    assert f"organization_id={session.organization.id}" in logged.getMessage()


async def test_a_retry_after_the_grace_is_a_replay(
    container: Container, settings: Settings
) -> None:
    clock = MovedClock()
    service = accounts(container, settings, clock)
    session = await service.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    lost = await service.refresh(session.refresh_token, ORIGIN)
    clock.offset += GRACE

    with pytest.raises(RefreshTokenReused):
        await service.refresh(session.refresh_token, ORIGIN)
    with pytest.raises(Unauthenticated):
        await service.authenticate(lost.access_token)
    with pytest.raises(InvalidRefreshToken):
        await service.refresh(lost.refresh_token, ORIGIN)


async def test_no_grace_makes_every_second_use_a_replay(
    container: Container, settings: Settings
) -> None:
    clock = MovedClock()
    service = accounts(container, settings, clock, grace=timedelta(0))
    session = await service.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    lost = await service.refresh(session.refresh_token, ORIGIN)

    with pytest.raises(RefreshTokenReused):
        await service.refresh(session.refresh_token, ORIGIN)
    with pytest.raises(Unauthenticated):
        await service.authenticate(lost.access_token)
    with pytest.raises(InvalidRefreshToken):
        await service.refresh(lost.refresh_token, ORIGIN)


async def test_a_retry_keeps_the_sessions_maximum_age(
    container: Container, settings: Settings
) -> None:
    clock = MovedClock()
    service = accounts(container, settings, clock, max_age=timedelta(minutes=10))
    session = await service.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    clock.offset += timedelta(minutes=9, seconds=30)
    await service.refresh(session.refresh_token, ORIGIN)
    clock.offset += timedelta(seconds=10)
    retried = await service.refresh(session.refresh_token, ORIGIN)
    # The retried pair ends with the session, ten minutes after sign-up.
    clock.offset += timedelta(seconds=21)

    with pytest.raises(InvalidRefreshToken):
        await service.refresh(retried.refresh_token, ORIGIN)


async def test_no_retry_once_the_session_is_over(container: Container, settings: Settings) -> None:
    clock = MovedClock()
    service = accounts(container, settings, clock, max_age=timedelta(minutes=10))
    session = await service.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    clock.offset += timedelta(minutes=9, seconds=50)
    lost = await service.refresh(session.refresh_token, ORIGIN)
    # Within the grace, but past the session's maximum age: what the token it lost would
    # answer now, and nothing issued.
    clock.offset += timedelta(seconds=15)

    with pytest.raises(InvalidRefreshToken):
        await service.refresh(session.refresh_token, ORIGIN)
    with pytest.raises(InvalidRefreshToken):
        await service.refresh(lost.refresh_token, ORIGIN)


async def test_a_retry_while_its_successor_is_traded_waits_and_is_a_replay(
    container: Container, settings: Settings, urls: BackendUrls
) -> None:
    # A bare connection plays a refresh with the token the retry would supersede, half
    # done (its row locked and used, not committed): the retry must wait for it, then see
    # the successor used. Without the successor's lock both would win, and two pairs live.
    service = accounts(container, settings, MovedClock())
    session = await service.sign_up(unique_email(), PASSWORD, None, ORIGIN)
    lost = await service.refresh(session.refresh_token, ORIGIN)
    other = await asyncpg.connect(urls.database_url.replace("+asyncpg", ""))
    try:
        await other.execute("BEGIN")
        await other.execute(
            "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1",
            hashlib.sha256(lost.refresh_token.encode()).hexdigest(),
        )
        waiting = await after_waiting(other, service.refresh(session.refresh_token, ORIGIN))
        await other.execute("COMMIT")
    finally:
        await other.close()

    with pytest.raises(RefreshTokenReused):
        await waiting
