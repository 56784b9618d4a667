"""Budgets of write mutations (uploads, reprocessing, chats, members) over real HTTP,
against a server with tiny limits. Nobody spends a budget for a request their role
refuses, and budgets are per organisation or per user as named."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import cast

import pytest

from infrastructure.container import BackendUrls
from infrastructure.settings import Settings
from tests.api.test_chats_api import CREATE, DELETE, RENAME
from tests.api.test_members import ADD, CHANGE, REMOVE
from tests.api.test_rate_limits import (
    ClientFactory,
    assert_rate_limited,
    error_of,
    start_limited_server,
    text_file,
)
from tests.conftest import ServerThread
from tests.helpers import JSON, Account, GraphQLClient, unique_email, upload, upload_outcomes

# Spent at once and given back only after half an hour or more: within a test, a
# refusal can only mean the budget was spent.
LIMITS = {
    "upload_org": "2/3600",
    "reprocess_org": "1/3600",
    "chats_user": "2/3600",
    "members_user": "3/3600",  # setting up a viewer and an editor takes two
}
REPROCESS = "mutation($id: ID!) { reprocessDocument(id: $id) { id status } }"


@pytest.fixture(scope="module")
def budget_server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    server = start_limited_server(settings, urls, LIMITS)
    yield server
    server.stop()


@pytest.fixture
async def clients(budget_server: ServerThread) -> AsyncIterator[ClientFactory]:
    async with AsyncExitStack() as stack:
        yield ClientFactory(budget_server, stack)


async def member(client: GraphQLClient, admin: Account, role: str) -> Account:
    """A new account with ``role`` in ``admin``'s organisation, logged in there."""
    account = await client.sign_up()
    await client.add_member(admin, account.email, role)
    return await client.log_in(account.email, organization_id=admin.organization_id)


async def team(clients: ClientFactory) -> tuple[GraphQLClient, Account, Account, Account]:
    """A client, and an organisation's owner with a viewer and an editor."""
    client = await clients.new()
    owner = await client.sign_up()
    return (
        client,
        owner,
        await member(client, owner, "VIEWER"),
        await member(client, owner, "EDITOR"),
    )


async def test_a_viewer_cannot_spend_the_organisations_upload_budget(
    clients: ClientFactory,
) -> None:
    client, _, viewer, editor = await team(clients)
    # The whole burst's worth of files, refused for the role, again and again.
    for attempt in range(3):
        files = [text_file(2 * attempt), text_file(2 * attempt + 1)]
        refused = await upload(client.http, viewer.access_token, files)
        assert error_of(cast(JSON, refused.json()))["code"] == "FORBIDDEN", refused.text
    [outcome] = await upload_outcomes(client.http, editor.access_token, [text_file(6)])
    assert outcome["error"] is None, outcome


async def test_reprocessing_is_limited_per_organisation_after_the_role_check(
    clients: ClientFactory,
) -> None:
    client, owner, viewer, editor = await team(clients)
    [uploaded] = await upload_outcomes(client.http, owner.access_token, [text_file(0)])
    document = {"id": cast(JSON, uploaded["document"])["id"]}
    for _ in range(2):
        assert await client.error_code(REPROCESS, document, viewer.access_token) == "FORBIDDEN"
    reset = await client.data(REPROCESS, document, editor.access_token)
    assert cast(JSON, reset["reprocessDocument"])["status"] == "PENDING"
    # The budget is the organisation's: its admin finds it spent too.
    for token in (editor.access_token, owner.access_token):
        assert_rate_limited(error_of(await client.execute(REPROCESS, document, token)), 3_600)
    # Another organisation has its own.
    other = await client.sign_up()
    [theirs] = await upload_outcomes(client.http, other.access_token, [text_file(1)])
    again = {"id": cast(JSON, theirs["document"])["id"]}
    assert "errors" not in await client.execute(REPROCESS, again, other.access_token)


async def test_chat_mutations_share_a_budget_per_user(clients: ClientFactory) -> None:
    client = await clients.new()
    owner = await client.sign_up()
    colleague = await member(client, owner, "EDITOR")
    created = await client.data(CREATE, {"t": "Tides"}, owner.access_token)
    chat_id = cast(JSON, created["createChat"])["id"]
    await client.data(RENAME, {"id": chat_id, "t": "Currents"}, owner.access_token)
    for query, variables in (
        (CREATE, {"t": "One more"}),
        (RENAME, {"id": chat_id, "t": "Waves"}),
        (DELETE, {"id": chat_id}),
    ):
        refused = await client.execute(query, cast(JSON, variables), owner.access_token)
        assert_rate_limited(error_of(refused), 3_600)
    # Another address does not help; another user (same organisation) has their own.
    elsewhere = await clients.new()
    refused = await elsewhere.execute(CREATE, {"t": "From elsewhere"}, owner.access_token)
    assert_rate_limited(error_of(refused), 3_600)
    await client.data(CREATE, {"t": "Mine"}, colleague.access_token)


async def test_member_changes_are_limited_per_user_and_probes_count(
    clients: ClientFactory,
) -> None:
    client = await clients.new()
    admin = await client.sign_up()
    joiner = await client.sign_up()
    await client.data(ADD, {"e": joiner.email, "r": "VIEWER"}, admin.access_token)
    await client.data(CHANGE, {"u": joiner.user_id, "r": "EDITOR"}, admin.access_token)
    # An address with no account is a refused try, and it counts.
    probe: JSON = {"e": unique_email("nobody"), "r": "VIEWER"}
    assert await client.error_code(ADD, probe, admin.access_token) == "NOT_FOUND"
    newcomer = await client.sign_up()
    for query, variables in (
        (ADD, {"e": newcomer.email, "r": "VIEWER"}),
        (ADD, {"e": unique_email("nobody"), "r": "VIEWER"}),
        (CHANGE, {"u": joiner.user_id, "r": "VIEWER"}),
        (REMOVE, {"u": joiner.user_id}),
    ):
        refused = await client.execute(query, cast(JSON, variables), admin.access_token)
        assert_rate_limited(error_of(refused), 3_600)
    # Another admin has their own.
    outsider = await client.sign_up()
    await client.data(ADD, {"e": newcomer.email, "r": "VIEWER"}, outsider.access_token)
