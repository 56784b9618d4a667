"""`foundry reset-password`, run as an operator runs it (a child process on the test
server's database and Redis): the new password works and the old one does not, every
session of the account ends at once, the reset is audited, and a refusal changes nothing.
The password comes from stdin with --password-stdin, or is typed twice at a terminal (a
pseudo-terminal here). With --revoke-api-keys every API key the account made is revoked
too, in every organisation, and open streams authenticated by one end; a run that could
not revoke them all says so, and running it again finishes."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from typing import cast

import httpx
import pytest
from sqlalchemy import func
from sqlalchemy import select as sql_select

import resolvers.documents
from infrastructure.container import Container
from infrastructure.database.models import ApiKeyRow, AuditLogRow
from infrastructure.settings import Settings
from tests.api.test_api_keys import WHO, create_key
from tests.api.test_rate_limits import log_in
from tests.api.test_session_notices import _stream, subscribers, until_subscribers
from tests.conftest import ServerThread, cli_env
from tests.helpers import (
    JSON,
    LOG_IN,
    ME,
    PASSWORD,
    REFRESH,
    Account,
    GraphQLClient,
    unique_email,
    upload_outcomes,
)

NEW_PASSWORD = "a passphrase the operator set"
COMMAND = [sys.executable, "-m", "infrastructure.cli", "reset-password"]
AUDIT = """
query($a: String!) {
  auditLog(first: 20, action: $a) {
    edges { node { action target actor { userId email apiKeyId } details { key value } } }
  }
}
"""


async def _reset(
    settings: Settings, email: str, stdin: str | None, *options: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """The command with --password-stdin and ``stdin`` as its input, or (None) without
    that option and with no terminal, and ``options``; ``env`` overrides settings."""
    args = [
        *COMMAND,
        "--email",
        email,
        *(["--password-stdin"] if stdin is not None else []),
        *options,
    ]
    return await asyncio.to_thread(
        subprocess.run,
        args,
        input=stdin if stdin is not None else "",
        env={**cli_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _audit(api: GraphQLClient, token: str, action: str = "auth.password_reset") -> list[JSON]:
    data = await api.data(AUDIT, {"a": action}, token=token)
    edges = cast(list[JSON], cast(JSON, data["auditLog"])["edges"])
    return [cast(JSON, edge["node"]) for edge in edges]


async def _resets_recorded(container: Container) -> int:
    async with container.session_factory() as db:
        count = await db.scalar(
            sql_select(func.count())
            .select_from(AuditLogRow)
            .where(AuditLogRow.action == "auth.password_reset")
        )
    return int(count or 0)


async def _still_works(api: GraphQLClient, session: Account) -> None:
    """The session's access token is accepted and its refresh token redeemed, and the
    account's old password logs in."""
    await api.data(ME, token=session.access_token)
    await api.data(REFRESH, {"token": session.refresh_token})
    await api.data(LOG_IN, log_in(session.email, PASSWORD))


async def test_a_reset_ends_every_session_and_only_the_new_password_logs_in(
    api: GraphQLClient, settings: Settings
) -> None:
    account = await api.sign_up()  # the only admin of its organisation
    other_admin = await api.sign_up()
    await api.add_member(other_admin, account.email)
    elsewhere = await api.log_in(account.email, organization_id=other_admin.organization_id)

    reset = await _reset(settings, account.email.upper(), f"{NEW_PASSWORD}\n")

    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.splitlines() == [
        f"Password reset for {account.email}; 2 sessions ended (they must log in again)."
    ]
    assert NEW_PASSWORD not in reset.stdout + reset.stderr
    for session in (account, elsewhere):
        code = await api.error_code(ME, token=session.access_token)
        assert code in {"UNAUTHENTICATED", "TOKEN_EXPIRED"}, code
        refused = await api.error_code(REFRESH, {"token": session.refresh_token})
        assert refused == "INVALID_REFRESH_TOKEN"
    assert await api.error_code(LOG_IN, log_in(account.email)) == "INVALID_CREDENTIALS"
    # The trailing newline was not part of the password.
    assert (
        await api.error_code(LOG_IN, log_in(account.email, f"{NEW_PASSWORD}\n"))
        == "INVALID_CREDENTIALS"
    )
    data = await api.data(LOG_IN, log_in(account.email, NEW_PASSWORD))
    admin_again = cast(str, cast(JSON, data["logIn"])["accessToken"])
    await api.data(ME, token=admin_again)
    # Audited in each of the account's organisations, by no user (the operator).
    entry = {
        "action": "auth.password_reset",
        "target": f"user:{account.user_id}",
        "actor": {"userId": None, "email": None, "apiKeyId": None},
        "details": [{"key": "sessions_ended", "value": "2"}],
    }
    assert await _audit(api, admin_again) == [entry]
    assert await _audit(api, other_admin.access_token) == [entry]
    await _still_works(api, other_admin)  # other accounts keep their sessions


async def test_an_unknown_email_exits_1_and_changes_nothing(
    api: GraphQLClient, settings: Settings, container: Container
) -> None:
    bystander = await api.sign_up()
    before = await _resets_recorded(container)
    missing = unique_email("nobody")

    reset = await _reset(settings, missing, f"{NEW_PASSWORD}\n")

    assert reset.returncode == 1, reset.stderr
    assert f"No account uses {missing}. Nothing changed." in reset.stderr
    assert reset.stdout == ""
    assert await _resets_recorded(container) == before
    await _still_works(api, bystander)


async def test_a_password_the_policy_refuses_exits_2_and_changes_nothing(
    api: GraphQLClient, settings: Settings, container: Container
) -> None:
    account = await api.sign_up()
    before = await _resets_recorded(container)

    for weak, why in (
        ("short\n", "Passwords need at least 10 characters."),
        (f"{account.email}\n", "The password must not be your email address."),
        ("\n", "Passwords need at least 10 characters."),
    ):
        reset = await _reset(settings, account.email, weak)
        assert reset.returncode == 2, reset.stderr
        assert f"Password refused (WEAK_PASSWORD): {why} Nothing changed." in reset.stderr
        assert reset.stdout == ""

    assert await _resets_recorded(container) == before
    await _still_works(api, account)


async def test_without_a_terminal_it_asks_for_password_stdin(
    api: GraphQLClient, settings: Settings
) -> None:
    account = await api.sign_up()
    reset = await _reset(settings, account.email, None)
    assert reset.returncode == 2
    assert "stdin is not a terminal" in reset.stderr and "--password-stdin" in reset.stderr
    nothing = await _reset(settings, account.email, "")  # --password-stdin, no line
    assert nothing.returncode == 2
    assert "No password on stdin" in nothing.stderr
    await _still_works(api, account)


def _at_a_terminal(settings: Settings, email: str, answers: list[str]) -> tuple[int, str]:
    """The command at a (pseudo-)terminal, each answer typed after a prompt: its exit
    code and everything it wrote there."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*COMMAND, "--email", email],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=cli_env(settings),
        start_new_session=True,  # no controlling terminal: getpass prompts on stdin's
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        for typed, answer in enumerate(answers, start=1):
            while seen.count(b"New password") < typed:
                if not (chunk := _read(controller, deadline)):
                    raise AssertionError(f"ended before prompt {typed}: {seen.decode()}")
                seen += chunk
            os.write(controller, f"{answer}\n".encode())
        while chunk := _read(controller, deadline):
            seen += chunk
        return process.wait(timeout=max(deadline - time.monotonic(), 1)), seen.decode()
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()


def _read(controller: int, deadline: float) -> bytes:
    """What the terminal shows next; b"" once the command has closed it."""
    ready, _, _ = select.select([controller], [], [], max(deadline - time.monotonic(), 0))
    assert ready, "the command neither prompted nor ended in time"
    try:
        return os.read(controller, 4096)
    except OSError:  # EIO: every process holding the terminal has ended
        return b""


async def test_at_a_terminal_the_password_is_typed_twice(
    api: GraphQLClient, settings: Settings
) -> None:
    account = await api.sign_up()

    code, shown = await asyncio.to_thread(
        _at_a_terminal, settings, account.email, [NEW_PASSWORD, "not the same one at all"]
    )
    assert code == 2, shown
    assert "The two passwords differ: nothing changed." in shown
    await _still_works(api, account)

    code, shown = await asyncio.to_thread(
        _at_a_terminal, settings, account.email, [NEW_PASSWORD, NEW_PASSWORD]
    )
    assert code == 0, shown
    assert f"Password reset for {account.email}; 2 sessions ended" in shown
    assert NEW_PASSWORD not in shown  # not echoed
    await api.data(LOG_IN, log_in(account.email, NEW_PASSWORD))
    assert await api.error_code(LOG_IN, log_in(account.email)) == "INVALID_CREDENTIALS"


async def test_sessions_that_cannot_be_ended_fail_the_reset_and_change_nothing(
    api: GraphQLClient, settings: Settings
) -> None:
    """Redis refuses: the sessions could not be ended, so nothing is changed, and the
    operator is told to try again (exit 1), not that the password was refused."""
    account = await api.sign_up()

    reset = await _reset(
        settings, account.email, f"{NEW_PASSWORD}\n", FOUNDRY_REDIS_URL="redis://127.0.0.1:1/0"
    )

    assert reset.returncode == 1, reset.stderr
    assert "Password refused" not in reset.stderr
    assert "Nothing changed" in reset.stderr and "try again" in reset.stderr, reset.stderr
    await _still_works(api, account)


REVOKE_KEYS = "--revoke-api-keys"


def _revoked_by_reset(key: JSON) -> JSON:
    """The audit entry of ``key`` revoked by a reset: no actor, reason password_reset."""
    return {
        "action": "api_key.revoked",
        "target": f"api_key:{key['id']}",
        "actor": {"userId": None, "email": None, "apiKeyId": None},
        "details": [
            {"key": "name", "value": key["name"]},
            {"key": "prefix", "value": key["prefix"]},
            {"key": "reason", "value": "password_reset"},
        ],
    }


def _sorted(entries: list[JSON]) -> list[JSON]:
    return sorted(entries, key=lambda entry: str(entry["target"]))


async def _in_two_organisations(api: GraphQLClient) -> tuple[Account, Account, Account]:
    """An account that administers its own organisation and, as an admin, another one's:
    the account in its own, the other organisation's admin, and the account there."""
    account = await api.sign_up()
    other_admin = await api.sign_up()
    await api.add_member(other_admin, account.email, role="ADMIN")
    there = await api.log_in(account.email, organization_id=other_admin.organization_id)
    return account, other_admin, there


async def _organisation_of(api: GraphQLClient, key: str) -> str:
    """The organisation the key acts for: a request that must succeed."""
    return cast(str, cast(JSON, (await api.data(WHO, token=key))["organization"])["id"])


async def test_revoke_api_keys_revokes_every_key_the_account_made_in_every_organisation(
    api: GraphQLClient,
    http: httpx.AsyncClient,
    server: ServerThread,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the notice, the stream below would only re-check its key every hour.
    monkeypatch.setattr(resolvers.documents, "SESSION_RECHECK_SECONDS", 3600.0)
    account, other_admin, there = await _in_two_organisations(api)
    home_keys = [
        await create_key(api, account, role="EDITOR", name="home editor"),
        await create_key(api, account, role="VIEWER", name="home viewer"),
    ]
    there_key = await create_key(api, there, role="ADMIN", name="there admin")
    # Another user's key in the same organisation: not the account's, so it stays.
    bystanders_key, _ = await create_key(api, other_admin, role="EDITOR", name="bystander")
    outsider = await api.sign_up()  # a third organisation, which must see none of it

    ended: list[str] = []
    kept: list[str] = []
    opened = [asyncio.Event(), asyncio.Event()]
    before = await subscribers(http)
    ended_task = asyncio.create_task(_stream(server, there_key[0], ended, opened[0]))
    kept_task = asyncio.create_task(_stream(server, bystanders_key, kept, opened[1]))
    try:
        await until_subscribers(http, lambda count: count >= before + 2, [ended_task, kept_task])

        reset = await _reset(settings, account.email, f"{NEW_PASSWORD}\n", REVOKE_KEYS)

        assert reset.returncode == 0, reset.stderr
        assert reset.stdout.splitlines() == [
            f"Password reset for {account.email}; 2 sessions ended (they must log in again).",
            "3 API keys revoked, in 2 organisations.",
        ]
        # An event in the key's organisation after the revocation: the stream that the
        # key opened ends before it, with UNAUTHENTICATED; the bystander's gets it.
        text = b"After the keys were revoked. " * 20
        [outcome] = await upload_outcomes(
            http, other_admin.access_token, [("revoked.txt", text, "text/plain")]
        )
        document_id = str(cast(JSON, outcome["document"])["id"])
        ended_with = await asyncio.wait_for(ended_task, timeout=30)
        for _ in range(300):
            if document_id in kept:
                break
            await asyncio.sleep(0.05)
    finally:
        # Both: should the command fail, the key's stream would never end by itself.
        for task in (ended_task, kept_task):
            task.cancel()
        await asyncio.gather(ended_task, kept_task, return_exceptions=True)
    await until_subscribers(http, lambda count: count <= before, [])
    assert ended_with == "UNAUTHENTICATED"
    assert document_id in kept and document_id not in ended

    # Refused over HTTP in both organisations; the other user's key still works.
    for key, _ in [*home_keys, there_key]:
        assert await api.error_code(WHO, token=key) == "UNAUTHENTICATED"
    assert await _organisation_of(api, bystanders_key) == other_admin.organization_id

    # Each revocation is audited in the key's own organisation, by no user.
    data = await api.data(LOG_IN, log_in(account.email, NEW_PASSWORD))
    home_admin = cast(str, cast(JSON, data["logIn"])["accessToken"])
    home_entries = await _audit(api, home_admin, "api_key.revoked")
    assert _sorted(home_entries) == _sorted([_revoked_by_reset(key) for _, key in home_keys])
    there_entries = await _audit(api, other_admin.access_token, "api_key.revoked")
    assert there_entries == [_revoked_by_reset(there_key[1])]
    assert await _audit(api, outsider.access_token, "api_key.revoked") == []


async def test_without_revoke_api_keys_the_accounts_keys_keep_working(
    api: GraphQLClient, settings: Settings
) -> None:
    account, other_admin, there = await _in_two_organisations(api)
    home_key, _ = await create_key(api, account)
    there_key, _ = await create_key(api, there)

    reset = await _reset(settings, account.email, f"{NEW_PASSWORD}\n")

    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.splitlines() == [
        f"Password reset for {account.email}; 2 sessions ended (they must log in again)."
    ]
    assert await _organisation_of(api, home_key) == account.organization_id
    assert await _organisation_of(api, there_key) == other_admin.organization_id
    assert await _audit(api, other_admin.access_token, "api_key.revoked") == []


async def test_keys_that_could_not_be_revoked_fail_the_run_and_running_it_again_finishes(
    api: GraphQLClient, settings: Settings, container: Container
) -> None:
    """One organisation's key stays locked by another transaction past the command's
    statement timeout: the password is reset and the other organisation's keys revoked,
    and the command says the job is unfinished (exit 1). Run again, it revokes only
    what was left."""
    account, other_admin, there = await _in_two_organisations(api)
    home_key, home = await create_key(api, account)
    there_key, held = await create_key(api, there)

    async with container.session_factory() as db, db.begin():
        await db.execute(
            sql_select(ApiKeyRow.id)
            .where(ApiKeyRow.id == uuid.UUID(cast(str, held["id"])))
            .with_for_update()
        )
        failed = await _reset(
            settings,
            account.email,
            f"{NEW_PASSWORD}\n",
            REVOKE_KEYS,
            FOUNDRY_DATABASE_STATEMENT_TIMEOUT_MS="1000",
        )

    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.splitlines() == [
        f"Password reset for {account.email}; 2 sessions ended (they must log in again)."
    ]
    assert "But not every API key could be revoked (SERVICE_UNAVAILABLE)" in failed.stderr
    assert "in 1 of the account's organisations" in failed.stderr
    assert "1 API key revoked, in 1 organisation." in failed.stderr
    assert "Run it again" in failed.stderr, failed.stderr
    # Not silently half-done: the reset stands, one key is revoked, the other works.
    await api.data(LOG_IN, log_in(account.email, NEW_PASSWORD))
    assert await api.error_code(WHO, token=home_key) == "UNAUTHENTICATED"
    assert await _organisation_of(api, there_key) == other_admin.organization_id

    again = await _reset(settings, account.email, f"{NEW_PASSWORD}\n", REVOKE_KEYS)

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        # The session of the log-in above.
        f"Password reset for {account.email}; 1 session ended (they must log in again).",
        "1 API key revoked, in 1 organisation.",
    ]
    assert await api.error_code(WHO, token=there_key) == "UNAUTHENTICATED"
    # Each key revoked once: the second run skipped the one the first had revoked.
    assert await _audit(api, other_admin.access_token, "api_key.revoked") == [
        _revoked_by_reset(held)
    ]
    data = await api.data(LOG_IN, log_in(account.email, NEW_PASSWORD))
    home_admin = cast(str, cast(JSON, data["logIn"])["accessToken"])
    assert await _audit(api, home_admin, "api_key.revoked") == [_revoked_by_reset(home)]
