"""switchOrganization over real HTTP: a member moves between their organisations with
the refresh token alone; the old session ends; nobody reaches an organisation they are
not in."""

from __future__ import annotations

from typing import cast

import asyncpg

from domain.services.accounts import hash_refresh_token
from infrastructure.container import BackendUrls
from tests.api.test_audit_log import audit_nodes
from tests.helpers import JSON, ME, REFRESH, Account, GraphQLClient

SWITCH = """
mutation($token: String!, $org: ID!) {
  switchOrganization(refreshToken: $token, organizationId: $org) {
    accessToken refreshToken organization { id name role }
  }
}
"""


async def team_with_editor(api: GraphQLClient) -> tuple[Account, Account]:
    owner = await api.sign_up(organization_name="Team")
    member = await api.sign_up()
    await api.add_member(owner, member.email)
    return owner, member


async def started_at(urls: BackendUrls, refresh_token: str) -> object:
    connection = await asyncpg.connect(urls.database_url.replace("+asyncpg", ""))
    try:
        return await connection.fetchval(
            "SELECT session_started_at FROM refresh_tokens WHERE token_hash = $1",
            hash_refresh_token(refresh_token),
        )
    finally:
        await connection.close()


async def test_a_member_switches_into_another_organisation(
    api: GraphQLClient, urls: BackendUrls
) -> None:
    owner, member = await team_with_editor(api)
    variables: JSON = {"token": member.refresh_token, "org": owner.organization_id}
    switched = cast(JSON, (await api.data(SWITCH, variables))["switchOrganization"])
    assert switched["organization"] == {
        "id": owner.organization_id,
        "name": "Team",
        "role": "EDITOR",
    }
    access, refresh = cast(str, switched["accessToken"]), cast(str, switched["refreshToken"])
    data = await api.data(ME, token=access)
    assert cast(JSON, data["organization"])["id"] == owner.organization_id
    # The new session keeps the old one's start: switching never extends its age.
    assert await started_at(urls, refresh) == await started_at(urls, member.refresh_token)
    # The old session is over, its access token at once.
    assert await api.error_code(ME, token=member.access_token) == "UNAUTHENTICATED"
    # (Its refresh token, traded, is a replay from now on: see the test after the next.)
    # The new one refreshes in the organisation it switched to, and switches back.
    again = cast(JSON, (await api.data(REFRESH, {"token": refresh}))["refreshSession"])
    assert cast(JSON, again["organization"])["id"] == owner.organization_id
    back: JSON = {"token": again["refreshToken"], "org": member.organization_id}
    home = cast(JSON, (await api.data(SWITCH, back))["switchOrganization"])
    assert cast(JSON, home["organization"])["role"] == "ADMIN"


async def test_an_organisation_the_user_is_not_in_is_not_found(api: GraphQLClient) -> None:
    owner, member = await team_with_editor(api)
    stranger = await api.sign_up()
    for org in (stranger.organization_id, "not-an-id", "00000000-0000-0000-0000-000000000000"):
        code = await api.error_code(SWITCH, {"token": owner.refresh_token, "org": org})
        assert code == "NOT_FOUND", org
    # Refused switches leave the session as it was.
    assert (await api.data(ME, token=owner.access_token))["me"]
    await api.data(REFRESH, {"token": owner.refresh_token})
    # A removed member cannot switch back in.
    await api.data(
        "mutation($u: ID!) { removeMember(userId: $u) }",
        {"u": member.user_id},
        token=owner.access_token,
    )
    code = await api.error_code(
        SWITCH, {"token": member.refresh_token, "org": owner.organization_id}
    )
    assert code == "NOT_FOUND"


async def test_switching_with_a_bad_or_used_token(api: GraphQLClient) -> None:
    owner, member = await team_with_editor(api)
    for token in ("", "nope", "x" * 5_000):
        code = await api.error_code(SWITCH, {"token": token, "org": owner.organization_id})
        assert code == "INVALID_REFRESH_TOKEN"
    await api.data(REFRESH, {"token": member.refresh_token})
    # A used token is a replay: refused, and its whole session revoked.
    code = await api.error_code(
        SWITCH, {"token": member.refresh_token, "org": owner.organization_id}
    )
    assert code == "REFRESH_TOKEN_REUSED"


async def test_replaying_a_traded_token_ends_the_sessions_it_led_to(api: GraphQLClient) -> None:
    # A stolen copy of the token, traded by the thief, then presented by its owner: both
    # sessions end, as within one family.
    owner, member = await team_with_editor(api)
    stolen: JSON = {"token": member.refresh_token, "org": owner.organization_id}
    thief = cast(JSON, (await api.data(SWITCH, stolen))["switchOrganization"])
    # Two more switches away, the session still descends from the stolen token.
    onward: JSON = {"token": thief["refreshToken"], "org": member.organization_id}
    moved = cast(JSON, (await api.data(SWITCH, onward))["switchOrganization"])
    back: JSON = {"token": moved["refreshToken"], "org": owner.organization_id}
    last = cast(JSON, (await api.data(SWITCH, back))["switchOrganization"])
    await api.data(ME, token=cast(str, last["accessToken"]))

    code = await api.error_code(REFRESH, {"token": member.refresh_token})
    assert code == "REFRESH_TOKEN_REUSED"
    assert await api.error_code(ME, token=cast(str, last["accessToken"])) == "UNAUTHENTICATED"
    code = await api.error_code(REFRESH, {"token": last["refreshToken"]})
    assert code == "INVALID_REFRESH_TOKEN"
    # The owner's own session, in the organisation the chain passed through, is untouched.
    await api.data(ME, token=owner.access_token)


async def test_a_switch_is_audited_in_both_organisations_naming_neither(
    api: GraphQLClient,
) -> None:
    owner, member = await team_with_editor(api)
    variables: JSON = {"token": member.refresh_token, "org": owner.organization_id}
    await api.data(SWITCH, variables)
    arrived = await audit_nodes(api, owner.access_token, "auth.organization_switched")
    assert [node["target"] for node in arrived] == [f"user:{member.user_id}"]
    home = await api.log_in(member.email)
    left = await audit_nodes(api, home.access_token, "auth.organization_switched")
    assert len(left) == 1
    assert cast(str, left[0]["target"]).startswith("session:")
    assert owner.organization_id not in str(left) and member.organization_id not in str(arrived)


async def test_a_replay_is_caught_after_the_old_session_was_ended_by_a_removal(
    api: GraphQLClient,
) -> None:
    # The member, signed in to the team, switches home; then the team removes them, which
    # ends every session of theirs there, the traded one included. Replaying the traded
    # token must still count as a replay, and end the session it led to.
    owner, member = await team_with_editor(api)
    in_team = await api.log_in(member.email, organization_id=owner.organization_id)
    home: JSON = {"token": in_team.refresh_token, "org": member.organization_id}
    switched = cast(JSON, (await api.data(SWITCH, home))["switchOrganization"])
    await api.data(
        "mutation($u: ID!) { removeMember(userId: $u) }",
        {"u": member.user_id},
        token=owner.access_token,
    )
    await api.data(ME, token=cast(str, switched["accessToken"]))  # another organisation's
    code = await api.error_code(REFRESH, {"token": in_team.refresh_token})
    assert code == "REFRESH_TOKEN_REUSED"
    assert await api.error_code(ME, token=cast(str, switched["accessToken"])) == "UNAUTHENTICATED"
