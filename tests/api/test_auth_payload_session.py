"""An AuthPayload's nested fields answer as for the session the mutation just started,
not for the request's Authorization header (none on a refresh or log-in, the old
session's on a switch): a refused nested field would lose the only copy of tokens that
were already rotated."""

from __future__ import annotations

from typing import cast

from tests.helpers import JSON, ME, PASSWORD, REFRESH, Account, GraphQLClient, unique_email

NESTED = """
  accessToken refreshToken
  user { id organizations { id role } }
  organization { id role members { user { id organizations { id } } role } }
"""
REFRESH_NESTED = f"""
mutation($t: String!) {{ refreshSession(refreshToken: $t) {{ {NESTED} }} }}
"""
LOG_IN_NESTED = f"""
mutation($input: LogInInput!) {{ logIn(input: $input) {{ {NESTED} }} }}
"""
SIGN_UP_NESTED = f"""
mutation($input: SignUpInput!) {{ signUp(input: $input) {{ {NESTED} }} }}
"""
SWITCH_NESTED = f"""
mutation($t: String!, $org: ID!) {{
  switchOrganization(refreshToken: $t, organizationId: $org) {{ {NESTED} }}
}}
"""
# An editor's payload: everything but the admin-only members.
SWITCH_EDITOR = """
mutation($t: String!, $org: ID!) {
  switchOrganization(refreshToken: $t, organizationId: $org) {
    accessToken refreshToken
    user { id organizations { id role } }
    organization { id role }
  }
}
"""


def payload(data: JSON, field: str) -> JSON:
    return cast(JSON, data[field])


def organization_ids(session: JSON) -> set[str]:
    organizations = cast(list[JSON], cast(JSON, session["user"])["organizations"])
    return {cast(str, organization["id"]) for organization in organizations}


def member_ids(session: JSON) -> set[str]:
    members = cast(list[JSON], cast(JSON, session["organization"])["members"])
    return {cast(str, cast(JSON, member["user"])["id"]) for member in members}


async def still_refreshes(api: GraphQLClient, session: JSON) -> None:
    """The payload's refresh token is live, and its access token works."""
    await api.data(ME, token=cast(str, session["accessToken"]))
    await api.data(REFRESH, {"token": session["refreshToken"]})


async def test_refresh_session_nested_fields_without_authorization(api: GraphQLClient) -> None:
    account = await api.sign_up()
    session = payload(
        await api.data(REFRESH_NESTED, {"t": account.refresh_token}), "refreshSession"
    )
    assert cast(JSON, session["user"])["id"] == account.user_id
    assert organization_ids(session) == {account.organization_id}
    assert member_ids(session) == {account.user_id}
    await still_refreshes(api, session)


async def test_refresh_session_nested_fields_answer_for_the_new_session_not_the_header(
    api: GraphQLClient,
) -> None:
    account = await api.sign_up()
    other = await api.sign_up()
    # Another user's valid token in the header changes nothing.
    session = payload(
        await api.data(REFRESH_NESTED, {"t": account.refresh_token}, token=other.access_token),
        "refreshSession",
    )
    assert organization_ids(session) == {account.organization_id}
    assert member_ids(session) == {account.user_id}
    await still_refreshes(api, session)


async def test_log_in_and_sign_up_nested_fields_without_authorization(
    api: GraphQLClient,
) -> None:
    email = unique_email()
    signed_up = payload(
        await api.data(SIGN_UP_NESTED, {"input": {"email": email, "password": PASSWORD}}),
        "signUp",
    )
    user_id = cast(str, cast(JSON, signed_up["user"])["id"])
    assert member_ids(signed_up) == {user_id}
    logged_in = payload(
        await api.data(LOG_IN_NESTED, {"input": {"email": email, "password": PASSWORD}}),
        "logIn",
    )
    assert organization_ids(logged_in) == organization_ids(signed_up)
    assert member_ids(logged_in) == {user_id}
    await still_refreshes(api, logged_in)


async def test_switch_organization_nested_fields_use_the_new_session(
    api: GraphQLClient,
) -> None:
    owner = await api.sign_up(organization_name="Team")
    member: Account = await api.sign_up()
    await api.add_member(owner, member.email)
    # To the organisation the member is an editor in, with the old session's token in
    # the header (which the switch ends): organisations answer for the new session...
    to_team = payload(
        await api.data(
            SWITCH_EDITOR,
            {"t": member.refresh_token, "org": owner.organization_id},
            token=member.access_token,
        ),
        "switchOrganization",
    )
    assert organization_ids(to_team) == {owner.organization_id, member.organization_id}
    # ... and members as for an editor there: refused, though the request's session
    # (at home) is admin.
    at_home = await api.log_in(member.email)
    body = await api.execute(
        SWITCH_NESTED,
        {"t": at_home.refresh_token, "org": owner.organization_id},
        token=at_home.access_token,
    )
    errors = cast(list[JSON], body["errors"])
    assert [cast(JSON, e["extensions"])["code"] for e in errors] == ["FORBIDDEN"]
    assert errors[0]["path"] == ["switchOrganization", "organization", "members"]
    # The refusal stops at members (nullable): the payload, and the new tokens the
    # switch rotated to, still arrive, and they work.
    in_team = payload(cast(JSON, body["data"]), "switchOrganization")
    assert cast(JSON, in_team["organization"])["members"] is None
    await still_refreshes(api, in_team)
    # Back home, where the member is admin, with no header at all.
    again = await api.log_in(member.email, organization_id=owner.organization_id)
    home = payload(
        await api.data(SWITCH_NESTED, {"t": again.refresh_token, "org": member.organization_id}),
        "switchOrganization",
    )
    assert member_ids(home) == {member.user_id}
    assert organization_ids(home) == {owner.organization_id, member.organization_id}
    await still_refreshes(api, home)


async def test_a_refresh_payload_with_colleagues_in_members_keeps_its_tokens(
    api: GraphQLClient,
) -> None:
    """NESTED on an organisation with a second member: a colleague's
    `user.organizations` lists only the organisation the session shares with them (their
    others belong to other tenants), and never refuses, which would null the payload and
    lose the refresh token the call had just rotated."""
    admin = await api.sign_up(organization_name="Harbour office")
    colleague = await api.sign_up(organization_name="Colleague's own")
    await api.add_member(admin, colleague.email, "VIEWER")
    session = payload(await api.data(REFRESH_NESTED, {"t": admin.refresh_token}), "refreshSession")
    members = cast(list[JSON], cast(JSON, session["organization"])["members"])
    seen = {
        cast(str, cast(JSON, member["user"])["id"]): {
            cast(str, organization["id"])
            for organization in cast(list[JSON], cast(JSON, member["user"])["organizations"])
        }
        for member in members
    }
    assert seen == {
        admin.user_id: {admin.organization_id},
        colleague.user_id: {admin.organization_id},  # not "Colleague's own"
    }
    await still_refreshes(api, session)


async def test_members_of_another_organisation_are_null_not_the_whole_answer(
    api: GraphQLClient,
) -> None:
    """An admin of two organisations lists members of each through `me`: the one the
    session is not in answers null with FORBIDDEN, and the rest of `me` arrives."""
    first = await api.sign_up()
    second = await api.sign_up()
    await api.add_member(second, first.email, "ADMIN")
    body = await api.execute(
        "{ me { id organizations { id members { role } } } }", token=first.access_token
    )
    me = cast(JSON, cast(JSON, body["data"])["me"])
    members = {
        cast(str, organization["id"]): organization["members"]
        for organization in cast(list[JSON], me["organizations"])
    }
    assert members[second.organization_id] is None
    assert members[first.organization_id] == [{"role": "ADMIN"}]
    errors = cast(list[JSON], body["errors"])
    assert [cast(JSON, e["extensions"])["code"] for e in errors] == ["FORBIDDEN"]
