"""A refresh retried with the same token, over real HTTP: the answer to the first was lost
(the rotation committed, the client never saw the new pair). Within the reuse grace the
retry gets a new pair, and the pair it replaces counts as used, so replay detection still
ends the session whoever presents it; anything else is a replay, as before. The server
runs with the default grace (30 seconds); the grace's own settings are tested against the
service in tests/integration/test_refresh_retry_grace.py."""

from __future__ import annotations

import asyncio
import hashlib
from typing import cast

from sqlalchemy import text

from infrastructure.container import Container
from tests.api.test_audit_log import audit_nodes
from tests.helpers import JSON, ME, REFRESH, GraphQLClient

LOG_OUT = "mutation($t: String!) { logOut(refreshToken: $t) }"


async def refreshed(api: GraphQLClient, token: str) -> JSON:
    return cast(JSON, (await api.data(REFRESH, {"token": token}))["refreshSession"])


async def test_a_retry_gets_a_working_pair_and_the_lost_one_then_ends_the_session(
    api: GraphQLClient,
) -> None:
    account = await api.sign_up()
    lost = await refreshed(api, account.refresh_token)

    retried = await refreshed(api, account.refresh_token)

    assert retried["refreshToken"] not in (lost["refreshToken"], account.refresh_token)
    await api.data(ME, token=cast(str, retried["accessToken"]))
    # The retried pair carries on as any other.
    onward = await refreshed(api, cast(str, retried["refreshToken"]))
    await api.data(ME, token=cast(str, onward["accessToken"]))
    retries = await audit_nodes(api, cast(str, onward["accessToken"]), "auth.refresh_retried")
    assert [node["target"] for node in retries] == [retries[0]["target"]]
    assert str(retries[0]["target"]).startswith("session:")
    # The pair the retry replaced was superseded, never traded: whoever presents it (here
    # the original client, which got the answer after all) is caught, and the session ends.
    code = await api.error_code(REFRESH, {"token": lost["refreshToken"]})
    assert code == "REFRESH_TOKEN_REUSED"
    assert await api.error_code(ME, token=cast(str, onward["accessToken"])) == "UNAUTHENTICATED"
    code = await api.error_code(REFRESH, {"token": onward["refreshToken"]})
    assert code == "INVALID_REFRESH_TOKEN"


async def test_a_superseded_token_is_a_replay_even_within_the_grace(api: GraphQLClient) -> None:
    account = await api.sign_up()
    lost = await refreshed(api, account.refresh_token)
    retried = await refreshed(api, account.refresh_token)
    # Seconds after it was superseded, and its replacement unused: still no retry.
    code = await api.error_code(REFRESH, {"token": lost["refreshToken"]})
    assert code == "REFRESH_TOKEN_REUSED"
    code = await api.error_code(REFRESH, {"token": retried["refreshToken"]})
    assert code == "INVALID_REFRESH_TOKEN"


async def test_logging_out_with_the_superseded_token_ends_the_session(
    api: GraphQLClient,
) -> None:
    account = await api.sign_up()
    lost = await refreshed(api, account.refresh_token)
    retried = await refreshed(api, account.refresh_token)

    logged_out = await api.data(LOG_OUT, {"t": lost["refreshToken"]})

    assert logged_out["logOut"] is True
    assert await api.error_code(ME, token=cast(str, retried["accessToken"])) == "UNAUTHENTICATED"
    code = await api.error_code(REFRESH, {"token": retried["refreshToken"]})
    assert code == "INVALID_REFRESH_TOKEN"


async def test_a_second_retry_is_a_replay(api: GraphQLClient) -> None:
    account = await api.sign_up()
    await refreshed(api, account.refresh_token)
    retried = await refreshed(api, account.refresh_token)

    code = await api.error_code(REFRESH, {"token": account.refresh_token})

    assert code == "REFRESH_TOKEN_REUSED"
    assert await api.error_code(ME, token=cast(str, retried["accessToken"])) == "UNAUTHENTICATED"
    code = await api.error_code(REFRESH, {"token": retried["refreshToken"]})
    assert code == "INVALID_REFRESH_TOKEN"


async def test_a_retry_once_the_new_token_was_used_is_a_replay(api: GraphQLClient) -> None:
    account = await api.sign_up()
    first = await refreshed(api, account.refresh_token)
    second = await refreshed(api, cast(str, first["refreshToken"]))

    code = await api.error_code(REFRESH, {"token": account.refresh_token})

    assert code == "REFRESH_TOKEN_REUSED"
    assert await api.error_code(ME, token=cast(str, second["accessToken"])) == "UNAUTHENTICATED"
    code = await api.error_code(REFRESH, {"token": second["refreshToken"]})
    assert code == "INVALID_REFRESH_TOKEN"


async def test_a_retry_after_the_grace_is_a_replay(
    api: GraphQLClient, container: Container
) -> None:
    account = await api.sign_up()
    lost = await refreshed(api, account.refresh_token)
    # The first refresh as if it had happened 31 seconds ago.
    async with container.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE refresh_tokens SET used_at = used_at - interval '31 seconds' "
                "WHERE token_hash = :hash"
            ),
            {"hash": hashlib.sha256(account.refresh_token.encode()).hexdigest()},
        )

    code = await api.error_code(REFRESH, {"token": account.refresh_token})

    assert code == "REFRESH_TOKEN_REUSED"
    assert await api.error_code(ME, token=cast(str, lost["accessToken"])) == "UNAUTHENTICATED"
    code = await api.error_code(REFRESH, {"token": lost["refreshToken"]})
    assert code == "INVALID_REFRESH_TOKEN"


async def test_concurrent_retries_let_one_win(api: GraphQLClient) -> None:
    account = await api.sign_up()
    await refreshed(api, account.refresh_token)

    bodies = await asyncio.gather(
        *(api.execute(REFRESH, {"token": account.refresh_token}) for _ in range(4))
    )

    winners = [cast(JSON, b["data"])["refreshSession"] for b in bodies if "errors" not in b]
    codes = [
        cast(JSON, cast(list[JSON], b["errors"])[0]["extensions"])["code"]
        for b in bodies
        if "errors" in b
    ]
    # The first to lock the token is a retry; the others, after it, find it retried.
    assert len(winners) == 1
    assert codes == ["REFRESH_TOKEN_REUSED"] * 3
    # A replay ends the session, the winner's pair included.
    [winner] = cast(list[JSON], winners)
    assert await api.error_code(ME, token=cast(str, winner["accessToken"])) == "UNAUTHENTICATED"
    code = await api.error_code(REFRESH, {"token": winner["refreshToken"]})
    assert code == "INVALID_REFRESH_TOKEN"
