"""argon2id hashes are upgraded on log-in; unknown emails still pay for a verification."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from domain.errors import InvalidCredentials
from domain.services.accounts import RequestOrigin
from infrastructure.auth.passwords import Argon2PasswordHasher
from infrastructure.container import BackendUrls, Container
from infrastructure.database.models import UserRow
from infrastructure.settings import Settings
from tests.helpers import PASSWORD, unique_email


async def _stored_hash(container: Container, email: str) -> str:
    async with container.engine.connect() as conn:
        value = await conn.scalar(select(UserRow.password_hash).where(UserRow.email == email))
    assert isinstance(value, str)
    return value


async def test_hash_is_argon2id_and_rehashed_when_parameters_change(
    container: Container, settings: Settings, urls: BackendUrls
) -> None:
    email = unique_email()
    await container.services.accounts.sign_up(email, PASSWORD, None, RequestOrigin())
    before = await _stored_hash(container, email)
    assert before.startswith("$argon2id$") and "t=1" in before

    stronger = Container(settings.model_copy(update={"argon2_time_cost": 2}), urls)
    try:
        await stronger.services.accounts.log_in(email, PASSWORD, None, RequestOrigin())
        after = await _stored_hash(stronger, email)
        assert after.startswith("$argon2id$") and "t=2" in after
        # The upgraded hash still verifies.
        await stronger.services.accounts.log_in(email, PASSWORD, None, RequestOrigin())
    finally:
        await stronger.aclose()


async def test_unknown_email_runs_a_dummy_verification(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = Argon2PasswordHasher.verify_dummy

    async def counting(self: Argon2PasswordHasher, password: str) -> None:
        calls.append(password)
        await original(self, password)

    monkeypatch.setattr(Argon2PasswordHasher, "verify_dummy", counting)
    with pytest.raises(InvalidCredentials):
        await container.services.accounts.log_in(
            unique_email(), "whatever-password", None, RequestOrigin()
        )
    with pytest.raises(InvalidCredentials):
        await container.services.accounts.log_in(
            "not an email", "whatever-password", None, RequestOrigin()
        )
    assert calls == ["whatever-password", "whatever-password"]


async def test_audit_rows_for_auth_events(container: Container) -> None:
    from infrastructure.database.models import AuditLogRow

    email = unique_email()
    session = await container.services.accounts.sign_up(
        email, PASSWORD, None, RequestOrigin("10.0.0.9")
    )
    with pytest.raises(InvalidCredentials):
        await container.services.accounts.log_in(email, "wrong-password!!", None, RequestOrigin())
    await container.services.accounts.log_in(email, PASSWORD, None, RequestOrigin())
    await container.services.accounts.refresh(session.refresh_token, RequestOrigin())
    with pytest.raises(Exception, match="already used"):
        await container.services.accounts.refresh(session.refresh_token, RequestOrigin())
    async with container.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(AuditLogRow.action, AuditLogRow.ip)
                .where(AuditLogRow.actor_user_id == session.user.id)
                .order_by(AuditLogRow.created_at)
            )
        ).all()
    actions = [row.action for row in rows]
    assert actions == [
        "auth.sign_up",
        "auth.login_failed",
        "auth.login_succeeded",
        "auth.refresh_token_reused",
    ]
    assert rows[0].ip == "10.0.0.9"
