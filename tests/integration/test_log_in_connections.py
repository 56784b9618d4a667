"""logIn verifies passwords (argon2, tens of milliseconds of CPU each) with no database
connection held: a burst of wrong passwords must not pin the pool's connections, and
open transactions, while it hashes. What was verified is read again before the session
starts."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TypeVar, cast

import asyncpg
import pytest
from sqlalchemy import select, update
from sqlalchemy.pool import QueuePool

from domain.errors import InvalidCredentials
from domain.services.accounts import RequestOrigin
from infrastructure.auth.passwords import Argon2PasswordHasher
from infrastructure.container import Container
from infrastructure.database.models import AuditLogRow, UserRow
from tests.helpers import PASSWORD, unique_email

T = TypeVar("T")


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


async def verified_unpooled(
    container: Container, monkeypatch: pytest.MonkeyPatch, work: Coroutine[object, object, T]
) -> T:
    """Run ``work`` with argon2 held until no pooled connection is seen checked out
    meanwhile (asserted); then its result, or what it raises."""
    held = HeldVerification(monkeypatch)
    task = asyncio.ensure_future(work)
    assert await held.checked_out(cast(QueuePool, container.engine.pool)) == 0
    return await task


async def test_a_wrong_password_is_verified_with_no_connection_checked_out(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = unique_email()
    await container.services.accounts.sign_up(email, PASSWORD, None, RequestOrigin())
    with pytest.raises(InvalidCredentials):
        await verified_unpooled(
            container,
            monkeypatch,
            container.services.accounts.log_in(email, "wrong password!!", None, RequestOrigin()),
        )
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
    session = await verified_unpooled(
        container,
        monkeypatch,
        container.services.accounts.log_in(email, PASSWORD, None, RequestOrigin()),
    )
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


async def test_a_log_in_finishing_while_the_password_changes_waits_and_is_refused(
    container: Container, admin_dsn: str
) -> None:
    """A password change and a log-in with the old password at the same moment: the
    log-in's last look at the user waits for the change, then sees the new hash and is
    refused (it does not open a session the change's revocation never saw)."""
    email = unique_email()
    session = await container.services.accounts.sign_up(email, PASSWORD, None, RequestOrigin())
    new_hash = await Argon2PasswordHasher(1, 1024, 1).hash("an entirely new passphrase 7")
    changing = await asyncpg.connect(admin_dsn)
    # Asked on a connection of its own: inside a transaction, pg_stat_activity stays as
    # first read.
    watching = await asyncpg.connect(admin_dsn)
    try:
        await changing.execute("BEGIN")
        await changing.execute(  # the change's UPDATE, not committed yet
            "UPDATE users SET password_hash = $1 WHERE id = $2", new_hash, session.user.id
        )
        log_in = asyncio.create_task(
            container.services.accounts.log_in(email, PASSWORD, None, RequestOrigin())
        )
        for _ in range(600):  # until the log-in waits for the row (after its verify)
            waiting = await watching.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND pid <> pg_backend_pid() AND query ILIKE '%FROM users%'"
            )
            if waiting or log_in.done():
                break
            await asyncio.sleep(0.05)
        await changing.execute("COMMIT")
        with pytest.raises(InvalidCredentials):
            await log_in
    finally:
        await changing.close()
        await watching.close()
