"""Accounts over real HTTP: sign-up, log-in, refresh rotation and reuse, log-out."""

from __future__ import annotations

from typing import cast

from tests.helpers import JSON, LOG_IN, ME, PASSWORD, REFRESH, SIGN_UP, GraphQLClient, unique_email


async def test_sign_up_creates_admin_of_personal_organization_and_me_works(
    api: GraphQLClient,
) -> None:
    account = await api.sign_up(organization_name="Acme Research")
    data = await api.data(ME, token=account.access_token)
    assert cast(JSON, data["me"])["email"] == account.email
    assert data["organization"] == {
        "id": account.organization_id,
        "name": "Acme Research",
        "role": "ADMIN",
    }


async def test_sign_up_normalises_email_and_refuses_duplicates(api: GraphQLClient) -> None:
    email = unique_email()
    await api.sign_up(email=email.upper())
    code = await api.error_code(SIGN_UP, {"input": {"email": email, "password": PASSWORD}})
    assert code == "EMAIL_TAKEN"


async def test_password_policy(api: GraphQLClient) -> None:
    email = unique_email()
    for password in ("short", email, email.split("@")[0], "aaaaaaaaaaaaaa", "x" * 300):
        code = await api.error_code(SIGN_UP, {"input": {"email": email, "password": password}})
        assert code == "WEAK_PASSWORD", password


async def test_invalid_email_and_organization_name(api: GraphQLClient) -> None:
    assert (
        await api.error_code(SIGN_UP, {"input": {"email": "not-an-email", "password": PASSWORD}})
        == "VALIDATION_FAILED"
    )
    bad_name = {"email": unique_email(), "password": PASSWORD, "organizationName": "x\u0000y"}
    assert await api.error_code(SIGN_UP, {"input": bad_name}) == "VALIDATION_FAILED"


async def test_log_in_failures_look_the_same(api: GraphQLClient) -> None:
    account = await api.sign_up()
    wrong_password = await api.execute(
        LOG_IN, {"input": {"email": account.email, "password": "wrong password!"}}
    )
    unknown_email = await api.execute(
        LOG_IN, {"input": {"email": unique_email(), "password": "wrong password!"}}
    )
    first = cast(list[JSON], wrong_password["errors"])[0]
    second = cast(list[JSON], unknown_email["errors"])[0]
    assert first["message"] == second["message"]
    assert first["extensions"] == second["extensions"] == {"code": "INVALID_CREDENTIALS"}


async def test_log_in_picks_an_organization_the_user_belongs_to(api: GraphQLClient) -> None:
    owner = await api.sign_up(organization_name="Team")
    member = await api.sign_up()
    await api.add_member(owner, member.email)
    default = await api.log_in(member.email)
    assert default.organization_id == member.organization_id
    chosen = await api.log_in(member.email, organization_id=owner.organization_id)
    assert chosen.organization_id == owner.organization_id
    data = await api.data(ME, token=chosen.access_token)
    assert cast(JSON, data["organization"])["role"] == "EDITOR"
    stranger = await api.sign_up()
    code = await api.error_code(
        LOG_IN,
        {
            "input": {
                "email": stranger.email,
                "password": PASSWORD,
                "organizationId": owner.organization_id,
            }
        },
    )
    # Another organisation's id is simply not found (API.md: never hint it exists).
    assert code == "NOT_FOUND"


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(api: GraphQLClient) -> None:
    account = await api.sign_up()
    first = cast(
        JSON, (await api.data(REFRESH, {"token": account.refresh_token}))["refreshSession"]
    )
    assert first["refreshToken"] != account.refresh_token
    second = cast(
        JSON, (await api.data(REFRESH, {"token": first["refreshToken"]}))["refreshSession"]
    )
    # Replaying an already used token is theft: the whole session dies.
    assert await api.error_code(REFRESH, {"token": account.refresh_token}) == "REFRESH_TOKEN_REUSED"
    assert (
        await api.error_code(REFRESH, {"token": second["refreshToken"]}) == "INVALID_REFRESH_TOKEN"
    )
    assert await api.error_code(ME, token=cast(str, second["accessToken"])) == "UNAUTHENTICATED"
    # Another session of the same user is untouched.
    other = await api.log_in(account.email)
    await api.data(ME, token=other.access_token)


async def test_refresh_with_garbage(api: GraphQLClient) -> None:
    for token in ("", "nope", "x" * 5_000):
        assert await api.error_code(REFRESH, {"token": token}) == "INVALID_REFRESH_TOKEN"


async def test_log_out_revokes_refresh_and_access_tokens(api: GraphQLClient) -> None:
    account = await api.sign_up()
    logout = "mutation($t: String!) { logOut(refreshToken: $t) }"
    assert (await api.data(logout, {"t": account.refresh_token}))["logOut"] is True
    assert (
        await api.error_code(REFRESH, {"token": account.refresh_token}) == "INVALID_REFRESH_TOKEN"
    )
    assert await api.error_code(ME, token=account.access_token) == "UNAUTHENTICATED"
    assert (await api.data(logout, {"t": account.refresh_token}))["logOut"] is False


async def test_protected_fields_need_a_token(api: GraphQLClient) -> None:
    assert await api.error_code(ME) == "UNAUTHENTICATED"
