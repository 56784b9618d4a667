"""A user removed from their last organisation is not locked out: their next log-in
(without an organizationId) gets them a new personal organisation, as sign-up does, that
holds nothing of the old one; later log-ins, even two at once, come back to it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import asyncpg
import httpx
import pytest

from infrastructure.container import BackendUrls
from infrastructure.settings import Settings
from tests.api.test_rate_limits import start_limited_server
from tests.helpers import JSON, LOG_IN, PASSWORD, Account, GraphQLClient, upload_outcomes

REMOVE = "mutation($u: ID!) { removeMember(userId: $u) }"
WHO = "{ me { organizations { id name role } } organization { id name role } }"
DOCUMENTS = "{ documents { totalCount edges { node { id } } } }"
CHATS = "{ chats { edges { node { id } } } }"
DOCUMENT = "query($id: ID!) { document(id: $id) { id } }"
CHAT = "query($id: ID!) { chat(id: $id) { id } }"
SWITCH = """
mutation($token: String!, $org: ID!) {
  switchOrganization(refreshToken: $token, organizationId: $org) { organization { id } }
}
"""
AUDIT = "{ auditLog(first: 50) { edges { node { action target } } } }"
SIGN_UP = "mutation($i: SignUpInput!) { signUp(input: $i) { user { id } } }"


@dataclass
class Removed:
    """C, removed by D (whom C made an admin) from the organisation C signed up with,
    which holds a document and a chat of C's."""

    member: Account
    remover: Account
    document_id: str
    chat_id: str


async def removed_from_their_only_organisation(
    api: GraphQLClient, http: httpx.AsyncClient
) -> Removed:
    member = await api.sign_up()
    other = await api.sign_up()
    await api.add_member(member, other.email, "ADMIN")
    remover = await api.log_in(other.email, member.organization_id)
    [outcome] = await upload_outcomes(
        http, member.access_token, [("notes.txt", f"notes {uuid.uuid4()}".encode(), "text/plain")]
    )
    document_id = str(cast(JSON, outcome["document"])["id"])
    chat = await api.data("mutation { createChat { id } }", token=member.access_token)
    chat_id = str(cast(JSON, chat["createChat"])["id"])
    assert (await api.data(REMOVE, {"u": member.user_id}, remover.access_token))["removeMember"]
    return Removed(member, remover, document_id, chat_id)


async def test_a_member_removed_from_their_last_organisation_logs_in_to_a_new_one(
    api: GraphQLClient, http: httpx.AsyncClient
) -> None:
    removed = await removed_from_their_only_organisation(api, http)
    old = removed.member
    # The organisation they were removed from stays refused, and makes none.
    named = {"email": old.email, "password": PASSWORD, "organizationId": old.organization_id}
    assert await api.error_code(LOG_IN, {"input": named}) == "NOT_FOUND"
    # The email still names their account.
    assert (
        await api.error_code(SIGN_UP, {"i": {"email": old.email, "password": PASSWORD}})
        == "EMAIL_TAKEN"
    )

    fresh = await api.log_in(old.email)
    assert fresh.user_id == old.user_id
    assert fresh.organization_id != old.organization_id
    who = await api.data(WHO, token=fresh.access_token)
    organization = {
        "id": fresh.organization_id,
        "name": f"{old.email.split('@', maxsplit=1)[0]}'s organisation",
        "role": "ADMIN",
    }
    assert who["organization"] == organization
    assert cast(JSON, who["me"])["organizations"] == [organization]

    # Nothing of the old organisation is in the new one, or reachable from it.
    token = fresh.access_token
    documents = cast(JSON, (await api.data(DOCUMENTS, token=token))["documents"])
    assert documents == {"totalCount": 0, "edges": []}
    assert cast(JSON, (await api.data(CHATS, token=token))["chats"])["edges"] == []
    await api.assert_not_found(DOCUMENT, {"id": removed.document_id}, token, "document")
    await api.assert_not_found(CHAT, {"id": removed.chat_id}, token, "chat")
    switch: JSON = {"token": fresh.refresh_token, "org": old.organization_id}
    assert await api.error_code(SWITCH, switch) == "NOT_FOUND"
    # ... which still has them, for its remaining admin.
    kept = await api.data(DOCUMENT, {"id": removed.document_id}, removed.remover.access_token)
    assert cast(JSON, kept["document"])["id"] == removed.document_id

    # Audited in the new organisation as sign-up audits its own, newest first.
    audit = cast(JSON, (await api.data(AUDIT, token=token))["auditLog"])
    assert [cast(JSON, edge["node"]) for edge in cast(list[JSON], audit["edges"])] == [
        {"action": "auth.login_succeeded", "target": f"user:{old.user_id}"},
        {"action": "auth.organization_created", "target": f"user:{old.user_id}"},
    ]

    # The next log-in finds that organisation: it makes no other.
    again = await api.log_in(old.email)
    assert again.organization_id == fresh.organization_id
    who = await api.data(WHO, token=again.access_token)
    assert cast(JSON, who["me"])["organizations"] == [organization]


@pytest.fixture
async def database(urls: BackendUrls) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection (row-level security does not apply to it)."""
    connection = await asyncpg.connect(urls.database_url.replace("+asyncpg", ""))
    yield connection
    await connection.close()


# Log-ins waiting for the user's row, which this connection's transaction holds: the
# first in line waits for the transaction, the others for the row's tuple lock.
_WAITERS = """
SELECT count(*) FROM pg_locks
WHERE NOT granted
  AND ((locktype = 'tuple' AND relation = 'users'::regclass
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
       OR (locktype = 'transactionid' AND transactionid = pg_current_xact_id()::xid))
"""


async def test_two_log_ins_at_once_make_one_organisation(
    api: GraphQLClient, http: httpx.AsyncClient, database: asyncpg.Connection
) -> None:
    removed = await removed_from_their_only_organisation(api, http)
    user_id = uuid.UUID(removed.member.user_id)
    # Both log-ins are let through at the same moment: each has checked the password and
    # waits for the user's row, which this transaction holds until both are waiting.
    await database.execute("BEGIN")
    try:
        await database.execute("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id)
        log_ins = [asyncio.ensure_future(api.log_in(removed.member.email)) for _ in range(2)]
        for _ in range(600):
            if any(task.done() for task in log_ins) or await database.fetchval(_WAITERS) >= 2:
                break
            await asyncio.sleep(0.05)
        assert not any(task.done() for task in log_ins), "a log-in did not wait for the user"
        assert await database.fetchval(_WAITERS) == 2, "the log-ins never both waited"
    finally:
        await database.execute("COMMIT")
    first, second = await asyncio.gather(*log_ins)

    assert first.organization_id == second.organization_id != removed.member.organization_id
    memberships = await database.fetch(
        "SELECT organization_id, role FROM memberships WHERE user_id = $1", user_id
    )
    assert [(str(m["organization_id"]), m["role"]) for m in memberships] == [
        (first.organization_id, "admin")
    ]
    created = await database.fetchval(
        "SELECT count(*) FROM audit_log WHERE actor_user_id = $1 AND action = $2",
        user_id,
        "auth.organization_created",
    )
    assert created == 1


async def test_a_log_in_that_makes_an_organisation_spends_the_sign_up_budget(
    api: GraphQLClient,
    http: httpx.AsyncClient,
    settings: Settings,
    urls: BackendUrls,
    database: asyncpg.Connection,
) -> None:
    """Otherwise being removed and logging in again would make organisations faster than
    signUp may: with one sign-up an hour per address, the second such log-in is refused
    and makes nothing."""
    first = await removed_from_their_only_organisation(api, http)
    second = await removed_from_their_only_organisation(api, http)
    limited = start_limited_server(settings, urls, {"signup_ip": "1/3600"})
    try:
        async with httpx.AsyncClient(base_url=limited.base_url, timeout=30) as client:
            limited_api = GraphQLClient(client)
            for removed in (first, second):
                credentials = {"email": removed.member.email, "password": PASSWORD}
                body = await limited_api.execute(LOG_IN, {"input": credentials})
                outcomes = [
                    cast(JSON, error["extensions"])["code"]
                    for error in cast(list[JSON], body.get("errors") or [])
                ]
                if removed is first:
                    assert outcomes == [], body
                else:
                    assert outcomes == ["RATE_LIMITED"], body
    finally:
        limited.stop()
    # The refused one still has no organisation: nothing was made for it.
    memberships = await database.fetchval(
        "SELECT count(*) FROM memberships WHERE user_id = $1", uuid.UUID(second.member.user_id)
    )
    assert memberships == 0
