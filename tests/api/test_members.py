"""Admins manage members; roles are enforced; the last admin stays; orgs never cross."""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import select

from infrastructure.container import Container
from infrastructure.database.models import AuditLogRow
from tests.helpers import JSON, ME, REFRESH, GraphQLClient

ADD = (
    "mutation($e: String!, $r: Role!) { addMember(email: $e, role: $r) { user { id email } role } }"
)
CHANGE = "mutation($u: ID!, $r: Role!) { changeMemberRole(userId: $u, role: $r) { role } }"
REMOVE = "mutation($u: ID!) { removeMember(userId: $u) }"
MEMBERS = "{ organization { members { user { email } role } } }"


async def test_admin_adds_changes_and_removes_members(api: GraphQLClient) -> None:
    admin = await api.sign_up()
    other = await api.sign_up()
    added = cast(
        JSON,
        (await api.data(ADD, {"e": other.email, "r": "VIEWER"}, admin.access_token))["addMember"],
    )
    assert added["role"] == "VIEWER"
    members = cast(JSON, (await api.data(MEMBERS, token=admin.access_token))["organization"])[
        "members"
    ]
    assert {cast(JSON, m["user"])["email"]: m["role"] for m in cast(list[JSON], members)} == {
        admin.email: "ADMIN",
        other.email: "VIEWER",
    }
    assert (
        await api.error_code(ADD, {"e": other.email, "r": "EDITOR"}, admin.access_token)
        == "ALREADY_MEMBER"
    )
    changed = await api.data(CHANGE, {"u": other.user_id, "r": "EDITOR"}, admin.access_token)
    assert cast(JSON, changed["changeMemberRole"])["role"] == "EDITOR"
    assert (await api.data(REMOVE, {"u": other.user_id}, admin.access_token))[
        "removeMember"
    ] is True
    assert await api.error_code(REMOVE, {"u": other.user_id}, admin.access_token) == "NOT_FOUND"


async def test_adding_an_unknown_email_is_not_found(api: GraphQLClient) -> None:
    admin = await api.sign_up()
    code = await api.error_code(
        ADD, {"e": "nobody-here@example.com", "r": "VIEWER"}, admin.access_token
    )
    assert code == "NOT_FOUND"


async def test_non_admins_cannot_manage_or_list_members(api: GraphQLClient) -> None:
    admin = await api.sign_up()
    for role in ("VIEWER", "EDITOR"):
        member = await api.sign_up()
        await api.data(ADD, {"e": member.email, "r": role}, admin.access_token)
        session = await api.log_in(member.email, organization_id=admin.organization_id)
        token = session.access_token
        assert await api.error_code(MEMBERS, token=token) == "FORBIDDEN"
        assert await api.error_code(ADD, {"e": member.email, "r": "ADMIN"}, token) == "FORBIDDEN"
        assert (
            await api.error_code(CHANGE, {"u": member.user_id, "r": "ADMIN"}, token) == "FORBIDDEN"
        )
        assert await api.error_code(REMOVE, {"u": admin.user_id}, token) == "FORBIDDEN"


async def test_the_last_admin_cannot_be_demoted_or_removed(api: GraphQLClient) -> None:
    admin = await api.sign_up()
    assert (
        await api.error_code(CHANGE, {"u": admin.user_id, "r": "EDITOR"}, admin.access_token)
        == "LAST_ADMIN"
    )
    assert await api.error_code(REMOVE, {"u": admin.user_id}, admin.access_token) == "LAST_ADMIN"
    second = await api.sign_up()
    await api.data(ADD, {"e": second.email, "r": "ADMIN"}, admin.access_token)
    # With two admins, one may step down.
    await api.data(CHANGE, {"u": admin.user_id, "r": "EDITOR"}, admin.access_token)


async def test_role_change_makes_old_tokens_refresh_and_removal_ends_sessions(
    api: GraphQLClient,
) -> None:
    admin = await api.sign_up()
    member = await api.sign_up()
    await api.data(ADD, {"e": member.email, "r": "VIEWER"}, admin.access_token)
    session = await api.log_in(member.email, organization_id=admin.organization_id)
    await api.data(CHANGE, {"u": member.user_id, "r": "EDITOR"}, admin.access_token)
    # The old token carries the old role: it must be refreshed before it works again.
    assert await api.error_code(ME, token=session.access_token) == "TOKEN_EXPIRED"
    refreshed = cast(
        JSON, (await api.data(REFRESH, {"token": session.refresh_token}))["refreshSession"]
    )
    assert cast(JSON, refreshed["organization"])["role"] == "EDITOR"

    await api.data(REMOVE, {"u": member.user_id}, admin.access_token)
    assert await api.error_code(ME, token=cast(str, refreshed["accessToken"])) == "UNAUTHENTICATED"
    assert (
        await api.error_code(REFRESH, {"token": refreshed["refreshToken"]})
        == "INVALID_REFRESH_TOKEN"
    )


async def test_membership_changes_are_audited(api: GraphQLClient, container: Container) -> None:
    admin = await api.sign_up()
    member = await api.sign_up()
    await api.data(ADD, {"e": member.email, "r": "VIEWER"}, admin.access_token)
    await api.data(CHANGE, {"u": member.user_id, "r": "EDITOR"}, admin.access_token)
    await api.data(REMOVE, {"u": member.user_id}, admin.access_token)
    async with container.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(AuditLogRow.action, AuditLogRow.target, AuditLogRow.details)
                .where(
                    AuditLogRow.organization_id == uuid.UUID(admin.organization_id),
                    AuditLogRow.action.like("member.%"),
                )
                .order_by(AuditLogRow.created_at)
            )
        ).all()
    assert [(r.action, r.target) for r in rows] == [
        ("member.added", f"user:{member.user_id}"),
        ("member.role_changed", f"user:{member.user_id}"),
        ("member.removed", f"user:{member.user_id}"),
    ]
    assert rows[1].details == {"from": "viewer", "to": "editor"}


async def test_admins_cannot_touch_other_organizations_members(api: GraphQLClient) -> None:
    org_a = await api.sign_up()
    org_b = await api.sign_up()
    b_member = await api.sign_up()
    await api.data(ADD, {"e": b_member.email, "r": "VIEWER"}, org_b.access_token)
    for user_id in (org_b.user_id, b_member.user_id, "not-a-uuid"):
        assert (
            await api.error_code(CHANGE, {"u": user_id, "r": "ADMIN"}, org_a.access_token)
            == "NOT_FOUND"
        )
        assert await api.error_code(REMOVE, {"u": user_id}, org_a.access_token) == "NOT_FOUND"
    members = cast(JSON, (await api.data(MEMBERS, token=org_a.access_token))["organization"])[
        "members"
    ]
    assert [cast(JSON, m["user"])["email"] for m in cast(list[JSON], members)] == [org_a.email]
    me = await api.data("{ me { organizations { id } } }", token=b_member.access_token)
    ids = {o["id"] for o in cast(list[JSON], cast(JSON, me["me"])["organizations"])}
    assert ids == {b_member.organization_id, org_b.organization_id}
