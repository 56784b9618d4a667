"""Every sensitive action leaves an audit entry; admins read their organisation's entries
(and only those) through the paged `auditLog` query."""

from __future__ import annotations

import uuid
from typing import cast

import httpx
from sqlalchemy import select

from infrastructure.container import Container
from infrastructure.database.models import AuditLogRow
from tests.api.test_api_keys import REVOKE, create_key
from tests.api.test_members import ADD, CHANGE, REMOVE
from tests.helpers import JSON, LOG_IN, REFRESH, GraphQLClient, unique_email, upload_outcomes

AUDIT = """
query($first: Int!, $after: String, $action: String) {
  auditLog(first: $first, after: $after, action: $action) {
    edges {
      cursor
      node { id action actor { userId email apiKeyId } target ip details { key value } createdAt }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def audit_nodes(
    api: GraphQLClient, token: str, action: str | None = None, first: int = 100
) -> list[JSON]:
    data = await api.data(AUDIT, {"first": first, "action": action}, token)
    edges = cast(list[JSON], cast(JSON, data["auditLog"])["edges"])
    return [cast(JSON, edge["node"]) for edge in edges]


async def test_every_sensitive_action_is_in_the_audit_log(
    http: httpx.AsyncClient, api: GraphQLClient, container: Container
) -> None:
    admin = await api.sign_up()
    member = await api.sign_up()
    second = await api.log_in(admin.email)
    assert await api.error_code(
        LOG_IN, {"input": {"email": admin.email, "password": "wrong password!"}}
    ) == ("INVALID_CREDENTIALS")
    await api.data(ADD, {"e": member.email, "r": "VIEWER"}, admin.access_token)
    await api.data(CHANGE, {"u": member.user_id, "r": "EDITOR"}, admin.access_token)
    await api.data(REFRESH, {"token": second.refresh_token})
    assert await api.error_code(REFRESH, {"token": second.refresh_token}) == "REFRESH_TOKEN_REUSED"
    third = await api.log_in(admin.email)
    await api.data("mutation($t: String!) { logOut(refreshToken: $t) }", {"t": third.refresh_token})
    [outcome] = await upload_outcomes(
        http, admin.access_token, [("audit.txt", b"audited words " * 30, "text/plain")]
    )
    document_id = cast(JSON, outcome["document"])["id"]
    await api.data(
        "mutation($id: ID!) { reprocessDocument(id: $id) { id } }",
        {"id": document_id},
        admin.access_token,
    )
    await api.data(
        "mutation($id: ID!) { deleteDocument(id: $id) }", {"id": document_id}, admin.access_token
    )
    _, api_key = await create_key(api, admin, name="audited key")
    await api.data(REVOKE, {"id": api_key["id"]}, admin.access_token)
    await api.data(REMOVE, {"u": member.user_id}, admin.access_token)

    nodes = await audit_nodes(api, admin.access_token)
    assert [(n["action"], n["target"]) for n in reversed(nodes)] == [
        ("auth.sign_up", f"user:{admin.user_id}"),
        ("auth.login_succeeded", f"user:{admin.user_id}"),
        ("member.added", f"user:{member.user_id}"),
        ("member.role_changed", f"user:{member.user_id}"),
        ("auth.refresh_token_reused", nodes[-5]["target"]),
        ("auth.login_succeeded", f"user:{admin.user_id}"),
        ("auth.logout", nodes[-7]["target"]),
        ("document.uploaded", f"document:{document_id}"),
        ("document.reprocessed", f"document:{document_id}"),
        ("document.deleted", f"document:{document_id}"),
        ("api_key.created", f"api_key:{api_key['id']}"),
        ("api_key.revoked", f"api_key:{api_key['id']}"),
        ("member.removed", f"user:{member.user_id}"),
    ]
    assert str(nodes[-5]["target"]).startswith("session:")
    for node in nodes:
        assert node["actor"] == {"userId": admin.user_id, "email": admin.email, "apiKeyId": None}
        assert node["ip"] == "127.0.0.1"
    role_change = next(n for n in nodes if n["action"] == "member.role_changed")
    assert role_change["details"] == [
        {"key": "from", "value": "viewer"},
        {"key": "to", "value": "editor"},
    ]
    created = next(n for n in nodes if n["action"] == "api_key.created")
    assert {d["key"] for d in cast(list[JSON], created["details"])} == {"name", "prefix", "role"}

    # A failed log-in belongs to no organisation (the caller proved nothing), so it is
    # recorded with the account it named but shown in no organisation's log.
    async with container.engine.connect() as conn:
        failed = (
            await conn.execute(
                select(AuditLogRow.organization_id, AuditLogRow.target).where(
                    AuditLogRow.action == "auth.login_failed",
                    AuditLogRow.actor_user_id == uuid.UUID(admin.user_id),
                )
            )
        ).all()
    assert [(row.organization_id, row.target) for row in failed] == [(None, f"email:{admin.email}")]


async def test_the_audit_log_is_for_admins_of_the_organisation_only(
    api: GraphQLClient,
) -> None:
    org_a = await api.sign_up()
    org_b = await api.sign_up()
    editor = await api.sign_up()
    await api.data(ADD, {"e": editor.email, "r": "EDITOR"}, org_a.access_token)
    editor_in_a = await api.log_in(editor.email, organization_id=org_a.organization_id)
    assert await api.error_code(AUDIT, {"first": 5}, editor_in_a.access_token) == "FORBIDDEN"
    assert await api.error_code(AUDIT, {"first": 5}) == "UNAUTHENTICATED"
    viewer_key, _ = await create_key(api, org_a, role="VIEWER")
    assert await api.error_code(AUDIT, {"first": 5}, viewer_key) == "FORBIDDEN"

    a_targets = {n["target"] for n in await audit_nodes(api, org_a.access_token)}
    b_nodes = await audit_nodes(api, org_b.access_token)
    assert [n["action"] for n in b_nodes] == ["auth.sign_up"]
    assert f"user:{editor.user_id}" in a_targets
    assert not a_targets & {n["target"] for n in b_nodes}
    # The emails of people who are not members of the organisation are not shown.
    assert {cast(JSON, n["actor"])["email"] for n in b_nodes} == {org_b.email}


async def test_the_audit_log_pages_newest_first_and_filters_by_action(
    api: GraphQLClient,
) -> None:
    admin = await api.sign_up(unique_email("auditor"))
    key_ids = [(await create_key(api, admin, name=f"k{i}"))[1]["id"] for i in range(5)]
    seen: list[str] = []
    after: str | None = None
    while True:
        data = await api.data(
            AUDIT, {"first": 2, "after": after, "action": "api_key.created"}, admin.access_token
        )
        connection = cast(JSON, data["auditLog"])
        edges = cast(list[JSON], connection["edges"])
        assert len(edges) <= 2
        seen += [str(cast(JSON, e["node"])["target"]) for e in edges]
        page_info = cast(JSON, connection["pageInfo"])
        if not page_info["hasNextPage"]:
            break
        after = cast(str, page_info["endCursor"])
    assert seen == [f"api_key:{key_id}" for key_id in reversed(key_ids)]
    assert await audit_nodes(api, admin.access_token, action="no.such_action") == []
    invalid: list[JSON] = [{"first": 101}, {"first": -1}, {"first": 5, "after": "not a cursor"}]
    for variables in invalid:
        assert await api.error_code(AUDIT, variables, admin.access_token) == "VALIDATION_FAILED"
    assert (
        await api.error_code(AUDIT, {"first": 5, "action": "x" * 65}, admin.access_token)
        == "VALIDATION_FAILED"
    )
