"""`foundry create-account`, run as an operator runs it (a child process on the test
server's database and Redis), with sign-up closed: the account it makes logs in through
the GraphQL API of a server whose sign-up is closed, and lands in the organisation the
command said with the role it said; without --organization-id that is a new organisation
it administers (what signUp makes), with it the organisation named and no other. Each is
audited in that organisation only, with no actor (the operator is not a user). Every
refusal exits 1 or 2 and writes nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import cast

from infrastructure.container import Container
from infrastructure.settings import Settings
from tests.api.test_rate_limits import log_in
from tests.api.test_signup_closed import account_row_counts
from tests.conftest import cli_env
from tests.helpers import JSON, LOG_IN, PASSWORD, Account, GraphQLClient, unique_email

NEW_PASSWORD = "a passphrase the operator chose"
TYPED = f"{NEW_PASSWORD}\n"
COMMAND = [sys.executable, "-m", "infrastructure.cli", "create-account"]
SIGNUP_CLOSED = {"FOUNDRY_SIGNUP": "closed"}
AUDIT = """
query($a: String) {
  auditLog(first: 50, action: $a) {
    edges { node { action target actor { userId email apiKeyId } details { key value } } }
  }
}
"""
WHERE = "query { me { id email organizations { id name role } } }"
MEMBERS = "query { organization { id name role members { user { email } role } } }"


async def _create(
    settings: Settings, *args: str, stdin: str | None = TYPED, **env: str
) -> subprocess.CompletedProcess[str]:
    """The command with ``args`` and --password-stdin, ``stdin`` its input, or (None)
    without that option and with no terminal; with sign-up closed unless ``env`` says
    otherwise."""
    password = ["--password-stdin"] if stdin is not None else []
    return await asyncio.to_thread(
        subprocess.run,
        [*COMMAND, *args, *password],
        input=stdin if stdin is not None else "",
        env={**cli_env(settings), **SIGNUP_CLOSED, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _created(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """What a successful run printed: its user_id, organization_id and role."""
    assert result.returncode == 0, result.stderr
    assert NEW_PASSWORD not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == ["user_id", "organization_id", "role"]
    return dict(line.split("=", 1) for line in lines)


def _grew(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {table: after[table] - before[table] for table in before}


async def _log_in(api: GraphQLClient, email: str) -> JSON:
    data = await api.data(LOG_IN, log_in(email, NEW_PASSWORD))
    return cast(JSON, data["logIn"])


async def _audit(api: GraphQLClient, token: str, action: str | None = None) -> list[JSON]:
    data = await api.data(AUDIT, {"a": action}, token=token)
    edges = cast(list[JSON], cast(JSON, data["auditLog"])["edges"])
    return [cast(JSON, edge["node"]) for edge in edges]


def _by_operator(action: str, user_id: str, **details: str) -> JSON:
    """The audit entry of an operator's command: no actor, ``by: operator``."""
    return {
        "action": action,
        "target": f"user:{user_id}",
        "actor": {"userId": None, "email": None, "apiKeyId": None},
        "details": [
            {"key": key, "value": value}
            for key, value in sorted({"by": "operator", **details}.items())
        ],
    }


async def _targets(api: GraphQLClient, other: Account) -> set[object]:
    return {entry["target"] for entry in await _audit(api, other.access_token)}


async def test_with_sign_up_closed_it_makes_an_account_and_an_organisation_it_administers(
    api: GraphQLClient, closed_api: GraphQLClient, container: Container, settings: Settings
) -> None:
    bystander = await api.sign_up()
    email = unique_email("made")
    before = await account_row_counts(container)

    # Normalised as sign-up normalises it; the name cleaned as sign-up cleans it.
    created = _created(
        await _create(
            settings, "--email", f" {email.upper()} ", "--organization-name", " Acme  R&D "
        )
    )

    assert created["role"] == "ADMIN"
    # One account, one organisation, one membership, one audit entry, and no session.
    assert _grew(before, await account_row_counts(container)) == {
        "users": 1,
        "organizations": 1,
        "memberships": 1,
        "refresh_tokens": 0,
        "audit_log": 1,
    }
    session = await _log_in(closed_api, email)
    assert cast(JSON, session["user"])["id"] == created["user_id"]
    assert session["organization"] == {"id": created["organization_id"], "role": "ADMIN"}
    token = cast(str, session["accessToken"])
    where = await closed_api.data(WHERE, token=token)
    assert cast(JSON, where["me"])["email"] == email
    assert cast(JSON, where["me"])["organizations"] == [
        {"id": created["organization_id"], "name": "Acme R&D", "role": "ADMIN"}
    ]
    # Audited as a sign-up in its organisation, as the operator's, and nowhere else.
    assert await _audit(closed_api, token, "auth.sign_up") == [
        _by_operator("auth.sign_up", created["user_id"])
    ]
    assert f"user:{created['user_id']}" not in await _targets(api, bystander)


async def test_the_new_organisation_is_named_as_sign_up_names_it(
    closed_api: GraphQLClient, settings: Settings
) -> None:
    email = unique_email("named")

    created = _created(await _create(settings, "--email", email))

    session = await _log_in(closed_api, email)
    where = await closed_api.data(MEMBERS, token=cast(str, session["accessToken"]))
    assert where["organization"] == {
        "id": created["organization_id"],
        "name": f"{email.split('@')[0]}'s organisation",
        "role": "ADMIN",
        "members": [{"user": {"email": email}, "role": "ADMIN"}],
    }


async def test_with_an_organisation_id_it_joins_that_one_and_has_none_of_its_own(
    api: GraphQLClient, closed_api: GraphQLClient, container: Container, settings: Settings
) -> None:
    admin = await api.sign_up()
    bystander = await api.sign_up()
    editor_email, viewer_email = unique_email("editor"), unique_email("viewer")
    before = await account_row_counts(container)

    joins = ["--organization-id", admin.organization_id]
    # --role as typed: any case.
    editor = _created(await _create(settings, "--email", editor_email, *joins, "--role", "editor"))
    # VIEWER unless --role says otherwise.
    viewer = _created(await _create(settings, "--email", viewer_email, *joins))

    assert (editor["organization_id"], editor["role"]) == (admin.organization_id, "EDITOR")
    assert (viewer["organization_id"], viewer["role"]) == (admin.organization_id, "VIEWER")
    # Two accounts and their memberships, audited; no organisation, no session.
    assert _grew(before, await account_row_counts(container)) == {
        "users": 2,
        "organizations": 0,
        "memberships": 2,
        "refresh_tokens": 0,
        "audit_log": 2,
    }
    for email, made, role in ((editor_email, editor, "EDITOR"), (viewer_email, viewer, "VIEWER")):
        # A log-in with no organisation named lands in the one the command named.
        session = await _log_in(closed_api, email)
        assert cast(JSON, session["user"])["id"] == made["user_id"]
        assert session["organization"] == {"id": admin.organization_id, "role": role}
        where = await closed_api.data(WHERE, token=cast(str, session["accessToken"]))
        [only] = cast(list[JSON], cast(JSON, where["me"])["organizations"])
        assert (only["id"], only["role"]) == (admin.organization_id, role)
    members = await api.data(MEMBERS, token=admin.access_token)
    assert {
        cast(str, cast(JSON, m["user"])["email"]): m["role"]
        for m in cast(list[JSON], cast(JSON, members["organization"])["members"])
    } == {admin.email: "ADMIN", editor_email: "EDITOR", viewer_email: "VIEWER"}
    # Audited in that organisation as member.added by the operator, newest first; the
    # other organisation sees none of it.
    assert await _audit(api, admin.access_token, "member.added") == [
        _by_operator("member.added", viewer["user_id"], role="viewer"),
        _by_operator("member.added", editor["user_id"], role="editor"),
    ]
    assert await _audit(api, bystander.access_token, "member.added") == []
    assert not {f"user:{editor['user_id']}", f"user:{viewer['user_id']}"} & await _targets(
        api, bystander
    )


async def test_every_refusal_exits_with_its_code_and_writes_nothing(
    api: GraphQLClient, container: Container, settings: Settings
) -> None:
    admin = await api.sign_up()
    taken = await api.sign_up()
    new = unique_email("refused")
    org = admin.organization_id
    before = await account_row_counts(container)

    for args, stdin, code, says in (
        (["--email", new], "short\n", 2, "Password refused (WEAK_PASSWORD): Passwords need"),
        (["--email", new, "--organization-id", org], f"{new}\n", 2, "not be your email"),
        (["--email", "not-an-email"], None, 2, "stdin is not a terminal"),
        (["--email", "not-an-email"], "", 2, "No password on stdin"),
        (["--email", "not-an-email"], TYPED, 2, "Refused (VALIDATION_FAILED): Enter a valid email"),
        (["--email", new, "--organization-name", "x" * 101], TYPED, 2, "organizationName must"),
        (["--email", taken.email.upper()], TYPED, 1, "already has an account"),
        (["--email", taken.email, "--organization-id", org], TYPED, 1, "adds it with addMember"),
        (["--email", new, "--organization-id", str(uuid.uuid4())], TYPED, 1, "No organisation has"),
        (["--email", new, "--organization-id", "not-a-uuid"], TYPED, 2, "not an organisation id"),
        (["--email", new, "--role", "ADMIN"], TYPED, 2, "--role needs --organization-id"),
        (["--email", new, "--organization-id", org, "--role", "OWNER"], TYPED, 2, "invalid choice"),
        (
            ["--email", new, "--organization-id", org, "--organization-name", "Mine"],
            TYPED,
            2,
            "not allowed with argument --organization-id",
        ),
    ):
        refused = await _create(settings, *args, stdin=stdin)
        assert (refused.returncode, refused.stdout) == (code, ""), (args, refused.stderr)
        assert says in refused.stderr, (args, refused.stderr)
        assert NEW_PASSWORD not in refused.stderr

    # The database cannot be reached: exit 1, try again.
    unreachable = await _create(
        settings,
        "--email",
        new,
        FOUNDRY_DATABASE_URL="postgresql+asyncpg://foundry@127.0.0.1:1/foundry",
    )
    assert (unreachable.returncode, unreachable.stdout) == (1, ""), unreachable.stderr
    assert "(SERVICE_UNAVAILABLE)" in unreachable.stderr
    assert "Nothing changed; try again." in unreachable.stderr

    assert await account_row_counts(container) == before
    assert await api.error_code(LOG_IN, log_in(new, NEW_PASSWORD)) == "INVALID_CREDENTIALS"
    # The taken account is as it was: its own password, its own organisation.
    kept = cast(JSON, (await api.data(LOG_IN, log_in(taken.email, PASSWORD)))["logIn"])
    assert kept["organization"] == {"id": taken.organization_id, "role": "ADMIN"}
