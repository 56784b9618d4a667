"""API keys: created by admins and shown once, stored hashed, usable as bearer tokens over
HTTP and WebSocket, scoped to one organisation and role, revocable at once, expiring."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import cast

import httpx
from gql import gql
from sqlalchemy import select, update

from infrastructure.container import Container
from infrastructure.database.models import ApiKeyRow
from tests.api.test_members import ADD, CHANGE, REMOVE
from tests.api.test_review_regressions import refusal_code, socket
from tests.api.test_websocket import _close_code
from tests.conftest import ServerThread
from tests.helpers import JSON, Account, GraphQLClient, upload_outcomes

CREATE = """
mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) {
    key
    apiKey { id name prefix role createdById createdAt lastUsedAt expiresAt revokedAt }
  }
}
"""
REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }"
KEYS = """
query($first: Int!, $after: String) {
  apiKeys(first: $first, after: $after) {
    totalCount
    edges { cursor node { id name prefix role lastUsedAt revokedAt } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
WHO = "{ organization { id role } documents(first: 5) { totalCount } }"


async def create_key(
    api: GraphQLClient,
    admin: Account,
    role: str = "EDITOR",
    name: str = "ci uploader",
    expires_at: str | None = None,
) -> tuple[str, JSON]:
    """The plaintext key and its ApiKey object."""
    data = await api.data(
        CREATE,
        {"input": {"name": name, "role": role, "expiresAt": expires_at}},
        admin.access_token,
    )
    created = cast(JSON, data["createApiKey"])
    return cast(str, created["key"]), cast(JSON, created["apiKey"])


async def key_row(container: Container, key_id: str) -> ApiKeyRow:
    async with container.session_factory() as session:
        row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.id == uuid.UUID(key_id)))
    assert row is not None
    return row


async def test_a_key_works_like_a_token_for_its_organisation_and_role(
    api: GraphQLClient, container: Container
) -> None:
    admin = await api.sign_up()
    key, api_key = await create_key(api, admin, role="VIEWER", name="  nightly  report ")
    assert key.startswith("kf_") and len(key) > 40
    assert api_key["name"] == "nightly report"
    assert api_key["prefix"] == key[:12]
    assert api_key["role"] == "VIEWER"
    assert api_key["createdById"] == admin.user_id
    assert api_key["lastUsedAt"] is None and api_key["revokedAt"] is None

    data = await api.data(WHO, token=key)
    assert data["organization"] == {"id": admin.organization_id, "role": "VIEWER"}
    row = await key_row(container, cast(str, api_key["id"]))
    assert row.last_used_at is not None
    first_use = row.last_used_at
    # A second request within the interval does not write again.
    await api.data(WHO, token=key)
    assert (await key_row(container, cast(str, api_key["id"]))).last_used_at == first_use
    listed = await api.data(KEYS, {"first": 10}, admin.access_token)
    node = cast(list[JSON], cast(JSON, listed["apiKeys"])["edges"])[0]["node"]
    assert cast(JSON, node)["lastUsedAt"] is not None


async def test_the_plaintext_is_stored_nowhere_and_shown_only_once(
    api: GraphQLClient, container: Container
) -> None:
    admin = await api.sign_up()
    key, api_key = await create_key(api, admin)
    row = await key_row(container, cast(str, api_key["id"]))
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(
        [str(getattr(row, column.key)) for column in ApiKeyRow.__table__.columns]
    )
    assert len(row.key_prefix) == 12 and key.startswith(row.key_prefix)
    listing = await api.execute(KEYS, {"first": 10}, admin.access_token)
    audit = await api.execute(
        "{ auditLog(first: 50) { edges { node { action details { key value } } } } }",
        token=admin.access_token,
    )
    assert key not in json.dumps(listing) and key not in json.dumps(audit)
    # The schema has no way to ask for the key again.
    body = await api.execute(
        "{ apiKeys(first: 1) { edges { node { key } } } }", token=admin.access_token
    )
    assert cast(list[JSON], body["errors"])[0]["extensions"] == {
        "code": "GRAPHQL_VALIDATION_FAILED"
    }


async def test_revocation_takes_effect_on_the_next_request_over_http_and_websocket(
    api: GraphQLClient, server: ServerThread
) -> None:
    admin = await api.sign_up()
    key, api_key = await create_key(api, admin)
    async with socket(server, key) as session:
        result = await session.execute(gql("{ organization { id } }"))
        assert result["organization"]["id"] == admin.organization_id
        revoked = await api.data(REVOKE, {"id": api_key["id"]}, admin.access_token)
        assert cast(JSON, revoked["revokeApiKey"])["revokedAt"] is not None
        code = await refusal_code(session, gql("{ organization { id } }"))
    assert code == "UNAUTHENTICATED"
    assert await api.error_code(WHO, token=key) == "UNAUTHENTICATED"
    assert await _close_code(server, {"authorization": f"Bearer {key}"}) == 4403
    # Revoking again is a no-op that keeps the first revocation time.
    again = await api.data(REVOKE, {"id": api_key["id"]}, admin.access_token)
    assert again["revokeApiKey"] == revoked["revokeApiKey"]


async def test_expired_and_unknown_keys_are_unauthenticated(
    api: GraphQLClient, container: Container
) -> None:
    admin = await api.sign_up()
    # Sent with an offset, returned in UTC like every time the API gives.
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    offset = soon.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    key, api_key = await create_key(api, admin, expires_at=offset)
    assert api_key["expiresAt"] == soon.isoformat()
    await api.data(WHO, token=key)
    async with container.session_factory() as session:
        await session.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.id == uuid.UUID(cast(str, api_key["id"])))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    assert await api.error_code(WHO, token=key) == "UNAUTHENTICATED"
    for guess in (key[:-1] + ("A" if key[-1] != "A" else "B"), "kf_", "kf_" + "x" * 500):
        assert await api.error_code(WHO, token=guess) == "UNAUTHENTICATED"


async def test_a_key_never_outlives_its_creators_authority(api: GraphQLClient) -> None:
    owner = await api.sign_up()
    colleague = await api.sign_up()
    await api.data(ADD, {"e": colleague.email, "r": "ADMIN"}, owner.access_token)
    here = await api.log_in(colleague.email, organization_id=owner.organization_id)
    keys = {role: await create_key(api, here, role=role) for role in ("ADMIN", "EDITOR", "VIEWER")}
    owners_key, _ = await create_key(api, owner, role="ADMIN")
    # The colleague's own organisation: a key made there must not be touched.
    elsewhere, _ = await create_key(api, colleague, role="ADMIN")

    # Lowered to editor: the admin key goes, the editor and viewer keys stay.
    await api.data(CHANGE, {"u": colleague.user_id, "r": "EDITOR"}, owner.access_token)
    assert await api.error_code(WHO, token=keys["ADMIN"][0]) == "UNAUTHENTICATED"
    for role in ("EDITOR", "VIEWER"):
        data = await api.data(WHO, token=keys[role][0])
        assert cast(JSON, data["organization"])["role"] == role
    # Raised again: nothing comes back to life.
    await api.data(CHANGE, {"u": colleague.user_id, "r": "ADMIN"}, owner.access_token)
    assert await api.error_code(WHO, token=keys["ADMIN"][0]) == "UNAUTHENTICATED"

    # Removed: every key the colleague made here goes; other people's and other
    # organisations' keys stay.
    assert (await api.data(REMOVE, {"u": colleague.user_id}, owner.access_token))["removeMember"]
    for role in ("EDITOR", "VIEWER"):
        assert await api.error_code(WHO, token=keys[role][0]) == "UNAUTHENTICATED", role
    assert cast(JSON, (await api.data(WHO, token=owners_key))["organization"])["role"] == "ADMIN"
    assert cast(JSON, (await api.data(WHO, token=elsewhere))["organization"])["id"] == (
        colleague.organization_id
    )

    listed = await api.data(KEYS, {"first": 10}, owner.access_token)
    revoked = {
        cast(str, cast(JSON, e["node"])["id"]): cast(JSON, e["node"])["revokedAt"]
        for e in cast(list[JSON], cast(JSON, listed["apiKeys"])["edges"])
    }
    assert all(revoked[cast(str, key["id"])] is not None for _, key in keys.values())
    audit = await api.data(
        '{ auditLog(first: 20, action: "api_key.revoked") '
        "{ edges { node { target details { key value } } } } }",
        token=owner.access_token,
    )
    reasons = {
        cast(str, cast(JSON, e["node"])["target"]): {
            cast(str, d["key"]): d["value"]
            for d in cast(list[JSON], cast(JSON, e["node"])["details"])
        }["reason"]
        for e in cast(list[JSON], cast(JSON, audit["auditLog"])["edges"])
    }
    assert reasons == {
        f"api_key:{keys['ADMIN'][1]['id']}": "creator_role_lowered",
        f"api_key:{keys['EDITOR'][1]['id']}": "creator_removed",
        f"api_key:{keys['VIEWER'][1]['id']}": "creator_removed",
    }


async def test_bad_input_is_refused_with_codes(api: GraphQLClient) -> None:
    admin = await api.sign_up()
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    for variables in (
        {"name": "", "role": "VIEWER"},
        {"name": "x" * 101, "role": "VIEWER"},
        {"name": "bell\u0007", "role": "VIEWER"},
        {"name": "old", "role": "VIEWER", "expiresAt": past},
        # In the future, but past year 9999 once in UTC.
        {"name": "far", "role": "VIEWER", "expiresAt": "9999-12-31T23:00:00-05:00"},
    ):
        code = await api.error_code(CREATE, {"input": variables}, admin.access_token)
        assert code == "VALIDATION_FAILED", variables
    assert (
        await api.error_code(CREATE, {"input": {"name": "n", "role": "OWNER"}}, admin.access_token)
        == "GRAPHQL_VALIDATION_FAILED"
    )


async def test_only_admin_users_manage_keys(api: GraphQLClient) -> None:
    admin = await api.sign_up()
    editor = await api.sign_up()
    await api.data(ADD, {"e": editor.email, "r": "EDITOR"}, admin.access_token)
    editor_here = await api.log_in(editor.email, organization_id=admin.organization_id)
    _, api_key = await create_key(api, admin)
    admin_key, _ = await create_key(api, admin, role="ADMIN")
    variables: JSON = {"input": {"name": "mine", "role": "ADMIN"}}
    for token in (editor_here.access_token, admin_key):
        assert await api.error_code(CREATE, variables, token) == "FORBIDDEN"
        assert await api.error_code(REVOKE, {"id": api_key["id"]}, token) == "FORBIDDEN"
    assert await api.error_code(KEYS, {"first": 5}, editor_here.access_token) == "FORBIDDEN"
    assert (
        await api.error_code("{ auditLog { edges { cursor } } }", token=editor_here.access_token)
        == "FORBIDDEN"
    )
    # An admin key may read the key list (it never shows keys) but not mint or revoke keys.
    listed = await api.data(KEYS, {"first": 5}, admin_key)
    assert cast(JSON, listed["apiKeys"])["totalCount"] == 2
    assert await api.error_code(KEYS, {"first": 5}) == "UNAUTHENTICATED"


async def test_a_key_has_no_user_profile_and_no_chats(api: GraphQLClient) -> None:
    admin = await api.sign_up()
    key, _ = await create_key(api, admin, role="ADMIN")
    for query in (
        "{ me { id } }",
        "{ chats(first: 5) { edges { cursor } } }",
        'mutation { createChat(title: "from a key") { id } }',
    ):
        assert await api.error_code(query, token=key) == "FORBIDDEN", query
    chat = await api.data('mutation { createChat(title: "mine") { id } }', token=admin.access_token)
    chat_id = cast(JSON, chat["createChat"])["id"]
    for query in (
        "query($id: ID!) { chat(id: $id) { id } }",
        'mutation($id: ID!) { renameChat(id: $id, title: "x") { id } }',
        "mutation($id: ID!) { deleteChat(id: $id) }",
        'mutation($id: ID!) { ask(chatId: $id, question: "what?") { id } }',
    ):
        assert await api.error_code(query, {"id": chat_id}, token=key) == "FORBIDDEN", query


async def test_a_key_sees_only_its_own_organisation(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    org_a = await api.sign_up()
    org_b = await api.sign_up()
    key_a, _ = await create_key(api, org_a, role="EDITOR")
    [mine] = await upload_outcomes(http, key_a, [("a.txt", b"alpha notes " * 20, "text/plain")])
    [theirs] = await upload_outcomes(
        http, org_b.access_token, [("b.txt", b"bravo notes " * 20, "text/plain")]
    )
    mine_id = cast(JSON, mine["document"])["id"]
    theirs_id = cast(JSON, theirs["document"])["id"]
    listed = await api.data("{ documents(first: 10) { edges { node { id } } } }", token=key_a)
    ids = [
        cast(JSON, e["node"])["id"]
        for e in cast(list[JSON], cast(JSON, listed["documents"])["edges"])
    ]
    assert ids == [mine_id]
    await api.assert_not_found(
        "query($id: ID!) { document(id: $id) { id } }", {"id": theirs_id}, key_a, "document"
    )
    for mutation in (
        "mutation($id: ID!) { deleteDocument(id: $id) }",
        "mutation($id: ID!) { reprocessDocument(id: $id) { id } }",
    ):
        assert await api.error_code(mutation, {"id": theirs_id}, key_a) == "NOT_FOUND"
    _, b_key = await create_key(api, org_b)
    assert await api.error_code(REVOKE, {"id": b_key["id"]}, org_a.access_token) == "NOT_FOUND"
    # An upload by a key has no user as uploader and names the key in the audit log.
    audit = await api.data(
        '{ auditLog(first: 5, action: "document.uploaded") '
        "{ edges { node { actor { userId apiKeyId } target } } } }",
        token=org_a.access_token,
    )
    [edge] = cast(list[JSON], cast(JSON, audit["auditLog"])["edges"])
    assert cast(JSON, edge["node"])["target"] == f"document:{mine_id}"
    actor = cast(JSON, cast(JSON, edge["node"])["actor"])
    assert actor["userId"] is None and actor["apiKeyId"] is not None


async def test_keys_are_listed_newest_first_in_pages(api: GraphQLClient) -> None:
    admin = await api.sign_up()
    created = [
        cast(str, (await create_key(api, admin, name=f"key {i}"))[1]["id"]) for i in range(3)
    ]
    seen: list[str] = []
    after: str | None = None
    while True:
        data = await api.data(KEYS, {"first": 2, "after": after}, admin.access_token)
        connection = cast(JSON, data["apiKeys"])
        assert connection["totalCount"] == 3
        seen += [
            cast(str, cast(JSON, e["node"])["id"]) for e in cast(list[JSON], connection["edges"])
        ]
        page_info = cast(JSON, connection["pageInfo"])
        if not page_info["hasNextPage"]:
            break
        after = cast(str, page_info["endCursor"])
    assert seen == created[::-1]
    assert await api.error_code(KEYS, {"first": 101}, admin.access_token) == "VALIDATION_FAILED"
    assert (
        await api.error_code(KEYS, {"first": 2, "after": "bogus"}, admin.access_token)
        == "VALIDATION_FAILED"
    )
