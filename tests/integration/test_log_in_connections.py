"""logIn verifies passwords (argon2, tens of milliseconds of CPU each) with no database
connection held: a burst of wrong passwords must not pin the pool's connections, and
open transactions, while it hashes. What was verified is read again before the session
starts."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from sqlalchemy import select, update
from sqlalchemy.pool import QueuePool

from domain.errors import InvalidCredentials
from domain.services.accounts import RequestOrigin
from infrastructure.auth.passwords import Argon2PasswordHasher
from infrastructure.container import Container
from infrastructure.database.models import AuditLogRow, UserRow
from tests.helpers import PASSWORD, unique_email


class HeldVerification:
    """Argon2PasswordHasher.verify, held until ``release`` is set (once ``started``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        original = Argon2PasswordHasher.verify

        async def held(hasher: Argon2PasswordHasher, password_hash: str, password: str) -> bool:
            self.started.set()
            await self.release.wait()
            return await original(hasher, password_hash, password)

        monkeypatch.setattr(Argon2PasswordHasher, "verify", held)

    async def checked_out(self, engine_pool: QueuePool) -> int:
        """The pool's connections checked out while a verification is held; then lets
        it go on (whatever the caller asserts, the log-in does not stay stuck)."""
        try:
            await self.started.wait()
            return engine_pool.checkedout()
        finally:
            self.release.set()


async def test_a_wrong_password_is_verified_with_no_connection_checked_out(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = unique_email()
    await container.services.accounts.sign_up(email, PASSWORD, None, RequestOrigin())
    held = HeldVerification(monkeypatch)
    pool = cast(QueuePool, container.engine.pool)
    task = asyncio.create_task(
        container.services.accounts.log_in(email, "wrong password!!", None, RequestOrigin())
    )
    assert await held.checked_out(pool) == 0
    with pytest.raises(InvalidCredentials):
        await task
    async with container.engine.connect() as conn:
        actions = list(
            await conn.scalars(
                select(AuditLogRow.action).where(AuditLogRow.target == f"email:{email}")
            )
        )
    assert actions == ["auth.login_failed"]


async def test_a_right_password_is_verified_with_no_connection_checked_out(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = unique_email()
    await container.services.accounts.sign_up(email, PASSWORD, None, RequestOrigin())
    held = HeldVerification(monkeypatch)
    pool = cast(QueuePool, container.engine.pool)
    task = asyncio.create_task(
        container.services.accounts.log_in(email, PASSWORD, None, RequestOrigin())
    )
    assert await held.checked_out(pool) == 0
    session = await task
    assert session.user.email == email


async def test_a_password_changed_while_verifying_is_verified_again(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = unique_email()
    await container.services.accounts.sign_up(email, PASSWORD, None, RequestOrigin())
    new_password = "a different passphrase entirely"
    new_hash = await Argon2PasswordHasher(1, 8, 1).hash(new_password)
    held = HeldVerification(monkeypatch)
    task = asyncio.create_task(
        container.services.accounts.log_in(email, PASSWORD, None, RequestOrigin())
    )
    await held.started.wait()
    # The password changes while the old one is being verified.
    async with container.engine.begin() as conn:
        await conn.execute(
            update(UserRow).where(UserRow.email == email).values(password_hash=new_hash)
        )
    held.release.set()
    with pytest.raises(InvalidCredentials):
        await task
    # The new one works.
    await container.services.accounts.log_in(email, new_password, None, RequestOrigin())
