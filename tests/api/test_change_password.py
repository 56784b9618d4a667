"""changePassword over real HTTP: a leaked password or refresh token stops working once
the owner changes the password; only the caller's own session goes on."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import cast

from infrastructure.container import BackendUrls
from infrastructure.settings import Settings
from tests.api.test_api_keys import create_key
from tests.api.test_rate_limits import ClientFactory, error_of, log_in, start_limited_server
from tests.helpers import JSON, LOG_IN, ME, PASSWORD, REFRESH, Account, GraphQLClient

CHANGE_PASSWORD = """
mutation($current: String!, $new: String!) {
  changePassword(currentPassword: $current, newPassword: $new)
}
"""
NEW_PASSWORD = "a brand new passphrase, never leaked"


def change(current: str = PASSWORD, new: str = NEW_PASSWORD) -> JSON:
    return {"current": current, "new": new}


async def audit_actions(api: GraphQLClient, admin: Account, action: str) -> list[JSON]:
    data = await api.data(
        "query($a: String!) { auditLog(first: 20, action: $a) "
        "{ edges { node { action target } } } }",
        {"a": action},
        token=admin.access_token,
    )
    edges = cast(list[JSON], cast(JSON, data["auditLog"])["edges"])
    return [cast(JSON, edge["node"]) for edge in edges]


async def test_changing_the_password_ends_every_other_session_and_keeps_this_one(
    api: GraphQLClient,
) -> None:
    account = await api.sign_up()
    other_admin = await api.sign_up()
    await api.add_member(other_admin, account.email)
    # The attacker's sessions: one in each organisation the user belongs to.
    stolen_home = await api.log_in(account.email)
    stolen_elsewhere = await api.log_in(account.email, organization_id=other_admin.organization_id)
    assert stolen_elsewhere.organization_id == other_admin.organization_id

    data = await api.data(CHANGE_PASSWORD, change(), token=account.access_token)
    assert data == {"changePassword": True}

    for stolen in (stolen_home, stolen_elsewhere):
        assert await api.error_code(ME, token=stolen.access_token) in {
            "UNAUTHENTICATED",
            "TOKEN_EXPIRED",
        }
        assert (
            await api.error_code(REFRESH, {"token": stolen.refresh_token})
            == "INVALID_REFRESH_TOKEN"
        )
    # The caller's session: its access token, and its refresh token, still work.
    me = await api.data(ME, token=account.access_token)
    assert cast(JSON, me["me"])["email"] == account.email
    refreshed = cast(
        JSON, (await api.data(REFRESH, {"token": account.refresh_token}))["refreshSession"]
    )
    await api.data(ME, token=cast(str, refreshed["accessToken"]))
    # The old password no longer logs in; the new one does.
    assert await api.error_code(LOG_IN, log_in(account.email)) == "INVALID_CREDENTIALS"
    await api.data(LOG_IN, log_in(account.email, NEW_PASSWORD))
    assert await audit_actions(api, account, "auth.password_changed") == [
        {"action": "auth.password_changed", "target": f"user:{account.user_id}"}
    ]


async def test_a_wrong_current_password_changes_nothing(api: GraphQLClient) -> None:
    account = await api.sign_up()
    other = await api.log_in(account.email)
    code = await api.error_code(
        CHANGE_PASSWORD, change(current="not my password!"), token=account.access_token
    )
    assert code == "INVALID_CREDENTIALS"
    await api.data(ME, token=other.access_token)
    await api.data(REFRESH, {"token": other.refresh_token})
    await api.log_in(account.email)
    assert await audit_actions(api, account, "auth.password_change_failed") == [
        {"action": "auth.password_change_failed", "target": f"user:{account.user_id}"}
    ]


async def test_a_weak_or_unchanged_new_password_is_refused(api: GraphQLClient) -> None:
    account = await api.sign_up()
    for weak in ("short", account.email, "aaaaaaaaaaaaaa"):
        code = await api.error_code(CHANGE_PASSWORD, change(new=weak), token=account.access_token)
        assert code == "WEAK_PASSWORD", weak
    same = await api.error_code(CHANGE_PASSWORD, change(new=PASSWORD), token=account.access_token)
    assert same == "VALIDATION_FAILED"
    await api.log_in(account.email)


async def test_api_keys_and_anonymous_callers_cannot_change_a_password(
    api: GraphQLClient,
) -> None:
    account = await api.sign_up()
    key, _ = await create_key(api, account, role="ADMIN")
    assert await api.error_code(CHANGE_PASSWORD, change(), token=key) == "FORBIDDEN"
    assert await api.error_code(CHANGE_PASSWORD, change()) == "UNAUTHENTICATED"
    await api.log_in(account.email)


async def test_guesses_of_the_current_password_spend_the_log_in_budget(
    settings: Settings, urls: BackendUrls
) -> None:
    server = start_limited_server(settings, urls, {"login_email": "2/3600"})
    try:
        async with AsyncExitStack() as stack:
            clients = ClientFactory(server, stack)
            account = await clients.account()
            guesser = await clients.new()
            for _ in range(2):
                guess = await guesser.execute(
                    CHANGE_PASSWORD, change(current="a wrong guess!!"), token=account.access_token
                )
                assert error_of(guess)["code"] == "INVALID_CREDENTIALS", guess
            # The budget is the log-in's: spent here, a log-in from elsewhere is refused.
            owner = await clients.new()
            refused = await owner.execute(LOG_IN, log_in(account.email.upper()))
            assert error_of(refused)["code"] == "RATE_LIMITED", refused
            again = await guesser.execute(CHANGE_PASSWORD, change(), token=account.access_token)
            assert error_of(again)["code"] == "RATE_LIMITED", again
    finally:
        server.stop()
