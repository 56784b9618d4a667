"""changePassword verifies the current password (argon2) with no database connection
held, as logIn does, and replaces the hash only if it is still the one it verified."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text, update

from domain.errors import InvalidCredentials
from domain.services.accounts import IssuedSession, RequestOrigin
from infrastructure.auth.passwords import Argon2PasswordHasher
from infrastructure.container import Container
from infrastructure.database.models import AuditLogRow, RefreshTokenRow, UserRow
from tests.helpers import PASSWORD, unique_email
from tests.integration.test_log_in_connections import HeldVerification, verified_unpooled

NEW_PASSWORD = "a brand new passphrase, never leaked"


async def sign_up(container: Container) -> tuple[str, IssuedSession]:
    email = unique_email()
    session = await container.services.accounts.sign_up(email, PASSWORD, None, RequestOrigin())
    return email, session


async def actions_on(container: Container, session: IssuedSession) -> list[str]:
    async with container.engine.connect() as conn:
        return list(
            await conn.scalars(
                select(AuditLogRow.action)
                .where(
                    AuditLogRow.target == f"user:{session.user.id}",
                    AuditLogRow.action.like("auth.password%"),
                )
                .order_by(AuditLogRow.created_at)
            )
        )


async def test_the_current_password_is_verified_with_no_connection_checked_out(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    email, session = await sign_up(container)
    await verified_unpooled(
        container,
        monkeypatch,
        container.services.passwords.change(
            session.principal, PASSWORD, NEW_PASSWORD, RequestOrigin()
        ),
    )
    await container.services.accounts.log_in(email, NEW_PASSWORD, None, RequestOrigin())
    assert await actions_on(container, session) == ["auth.password_changed"]


async def test_a_wrong_current_password_is_verified_with_no_connection_checked_out(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    email, session = await sign_up(container)
    with pytest.raises(InvalidCredentials):
        await verified_unpooled(
            container,
            monkeypatch,
            container.services.passwords.change(
                session.principal, "not my password!", NEW_PASSWORD, RequestOrigin()
            ),
        )
    await container.services.accounts.log_in(email, PASSWORD, None, RequestOrigin())
    assert await actions_on(container, session) == ["auth.password_change_failed"]


async def test_a_password_changed_while_verifying_is_not_overwritten(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    email, session = await sign_up(container)
    elsewhere = "changed meanwhile, elsewhere"
    elsewhere_hash = await Argon2PasswordHasher(1, 8, 1).hash(elsewhere)
    held = HeldVerification(monkeypatch)
    task = asyncio.create_task(
        container.services.passwords.change(
            session.principal, PASSWORD, NEW_PASSWORD, RequestOrigin()
        )
    )
    await held.started.wait()
    async with container.engine.begin() as conn:
        await conn.execute(
            update(UserRow).where(UserRow.email == email).values(password_hash=elsewhere_hash)
        )
    held.release.set()
    with pytest.raises(InvalidCredentials):
        await task
    # The hash set meanwhile stands; the new password was never stored.
    await container.services.accounts.log_in(email, elsewhere, None, RequestOrigin())
    with pytest.raises(InvalidCredentials):
        await container.services.accounts.log_in(email, NEW_PASSWORD, None, RequestOrigin())
    assert await actions_on(container, session) == ["auth.password_change_failed"]


async def test_a_session_refreshed_while_the_change_revokes_it_is_revoked_too(
    container: Container,
) -> None:
    """A refresh that locked the session's newest token before the change reached it
    commits a new token the change's first update cannot see: it is revoked all the same."""
    email, session = await sign_up(container)
    other = await container.services.accounts.log_in(email, PASSWORD, None, RequestOrigin())
    family = other.principal.session_id
    new_token = uuid.uuid4()
    async with container.engine.connect() as refresh:
        # A refresh in flight: the tip locked, then used, and a new tip written.
        await refresh.begin()
        tip = (
            await refresh.execute(
                select(
                    RefreshTokenRow.id,
                    RefreshTokenRow.organization_id,
                    RefreshTokenRow.user_id,
                    RefreshTokenRow.session_started_at,
                    RefreshTokenRow.expires_at,
                )
                .where(RefreshTokenRow.family_id == family, RefreshTokenRow.used_at.is_(None))
                .with_for_update()
            )
        ).one()
        task = asyncio.create_task(
            container.services.passwords.change(
                session.principal, PASSWORD, NEW_PASSWORD, RequestOrigin()
            )
        )
        async with container.engine.connect() as watcher:
            while not await watcher.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
                assert not task.done(), task
                await asyncio.sleep(0.01)
        now = datetime.now(UTC)
        await refresh.execute(
            update(RefreshTokenRow).where(RefreshTokenRow.id == tip.id).values(used_at=now)
        )
        await refresh.execute(
            insert(RefreshTokenRow).values(
                id=new_token,
                organization_id=tip.organization_id,
                user_id=tip.user_id,
                family_id=family,
                session_started_at=tip.session_started_at,
                token_hash=uuid.uuid4().hex,
                created_at=now,
                expires_at=tip.expires_at,
            )
        )
        await refresh.commit()
    await task
    async with container.engine.connect() as conn:
        revoked_at = await conn.scalar(
            select(RefreshTokenRow.revoked_at).where(RefreshTokenRow.id == new_token)
        )
    assert revoked_at is not None
