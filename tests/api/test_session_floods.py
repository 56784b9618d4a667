"""Sessions that refresh or switch a great deal, over real HTTP: each exchange of a good
refresh token spends its user's session_user budget (and a refused one leaves the token
good), a switch into the session's own organisation is refused and writes nothing, and
a session however many used tokens it left behind still ends at once on logOut or on a
replay."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import cast

import asyncpg
import pytest

from domain.services.accounts import hash_refresh_token
from infrastructure.container import BackendUrls
from infrastructure.settings import Settings
from tests.api.test_audit_log import audit_nodes
from tests.api.test_rate_limits import (
    ClientFactory,
    assert_rate_limited,
    error_of,
    start_limited_server,
)
from tests.helpers import JSON, ME, REFRESH, Account, GraphQLClient
from tests.integration.test_membership_races import after_waiting

SWITCH = """
mutation($token: String!, $org: ID!) {
  switchOrganization(refreshToken: $token, organizationId: $org) {
    accessToken refreshToken organization { id }
  }
}
"""
LOG_OUT = "mutation($t: String!) { logOut(refreshToken: $t) }"
# Used tokens a long-lived session that refreshed very often would have left behind.
USED_ROWS = 200_000

log = logging.getLogger(__name__)


@pytest.fixture
async def database(urls: BackendUrls) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(urls.database_url.replace("+asyncpg", ""))
    yield connection
    await connection.close()


async def token_row(database: asyncpg.Connection, refresh_token: str) -> asyncpg.Record:
    row = await database.fetchrow(
        "SELECT * FROM refresh_tokens WHERE token_hash = $1", hash_refresh_token(refresh_token)
    )
    assert row is not None
    return row


async def add_used_tokens(database: asyncpg.Connection, refresh_token: str, count: int) -> None:
    """``count`` used tokens in the session of ``refresh_token``, as that many refreshes
    would have left them (used, never revoked, expiring with the session)."""
    row = await token_row(database, refresh_token)
    await database.execute(
        """
        INSERT INTO refresh_tokens (id, organization_id, user_id, family_id,
            session_started_at, token_hash, created_at, expires_at, used_at)
        SELECT gen_random_uuid(), $1, $2, $3::uuid, $4,
               md5(g::text || $3::uuid::text) || md5(g::text),
               now(), now() + interval '30 days', now()
        FROM generate_series(1, $5) g
        """,
        row["organization_id"],
        row["user_id"],
        row["family_id"],
        row["session_started_at"],
        count,
    )
    await database.execute("ANALYZE refresh_tokens")


async def revoked_in(database: asyncpg.Connection, family_id: uuid.UUID) -> int:
    count = await database.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NOT NULL",
        family_id,
    )
    return cast(int, count)


async def switch(api: GraphQLClient, refresh_token: object, organization_id: str) -> JSON:
    body = await api.data(SWITCH, {"token": refresh_token, "org": organization_id})
    return cast(JSON, body["switchOrganization"])


async def team_with_editor(api: GraphQLClient) -> tuple[Account, Account]:
    owner = await api.sign_up(organization_name="Team")
    member = await api.sign_up()
    await api.add_member(owner, member.email)
    return owner, member


# --- the session_user budget -------------------------------------------------------------


@pytest.fixture
async def limited(settings: Settings, urls: BackendUrls) -> AsyncIterator[ClientFactory]:
    # A burst of 3, then one every 3 s: a refusal's wait is short, and a burst sent at
    # once is counted whole however slowly a loaded machine serves it.
    server = start_limited_server(settings, urls, {"session_user": "3/9"})
    try:
        async with AsyncExitStack() as stack:
            yield ClientFactory(server, stack)
    finally:
        server.stop()


async def test_refreshes_and_switches_spend_a_budget_per_user_and_a_refusal_keeps_the_token(
    limited: ClientFactory,
) -> None:
    client = await limited.new()
    owner, member = await team_with_editor(client)
    token = member.refresh_token
    # Refreshes until the user's budget is spent (a slow machine may refill one).
    for _ in range(10):
        body = await client.execute(REFRESH, {"token": token})
        if "errors" in body:
            break
        token = cast(str, cast(JSON, cast(JSON, body["data"])["refreshSession"])["refreshToken"])
    refused = error_of(body)
    assert_rate_limited(refused, at_most=3)
    # A switch is an exchange too, from any address: the budget is the user's.
    elsewhere = await limited.new()
    switched = await elsewhere.execute(SWITCH, {"token": token, "org": owner.organization_id})
    assert_rate_limited(error_of(switched), at_most=3)
    # Another user's budget is their own.
    await client.data(REFRESH, {"token": owner.refresh_token})

    # Neither refusal used the token up: once the budget allows, it refreshes.
    await asyncio.sleep(cast(int, error_of(switched)["retryAfter"]))
    renewed = cast(JSON, (await client.data(REFRESH, {"token": token}))["refreshSession"])
    await client.data(ME, token=cast(str, renewed["accessToken"]))
    # A refused token is refused as such, not rate limited, budget or not: the token
    # refreshed above is a replay now, which ends the session.
    for _ in range(3):
        assert error_of(await client.execute(REFRESH, {"token": token}))["code"] == (
            "REFRESH_TOKEN_REUSED"
        )
    replayed = await client.execute(REFRESH, {"token": renewed["refreshToken"]})
    assert error_of(replayed)["code"] == "INVALID_REFRESH_TOKEN"


# --- a switch into the session's own organisation -----------------------------------------


async def test_a_switch_into_the_current_organisation_is_refused_and_writes_nothing(
    api: GraphQLClient, database: asyncpg.Connection
) -> None:
    owner, member = await team_with_editor(api)
    org = member.organization_id
    for spelling in (org, org.upper(), "{" + org + "}", f"urn:uuid:{org}"):
        body = await api.execute(SWITCH, {"token": member.refresh_token, "org": spelling})
        extensions = error_of(body)
        assert extensions["code"] == "VALIDATION_FAILED", (spelling, body)
        assert extensions["field"] == "organizationId"
    # Nothing rotated or written: the session's only token is unused, its session live,
    # and neither organisation audited a switch.
    row = await token_row(database, member.refresh_token)
    rows = await database.fetch(
        "SELECT used_at, revoked_at FROM refresh_tokens WHERE family_id = $1", row["family_id"]
    )
    assert [(r["used_at"], r["revoked_at"]) for r in rows] == [(None, None)]
    assert await audit_nodes(api, member.access_token, "auth.organization_switched") == []
    assert await audit_nodes(api, owner.access_token, "auth.organization_switched") == []
    await api.data(ME, token=member.access_token)
    # The token still switches elsewhere, and the new session cannot switch to where it is.
    moved = await switch(api, member.refresh_token, owner.organization_id)
    code = await api.error_code(
        SWITCH, {"token": moved["refreshToken"], "org": owner.organization_id}
    )
    assert code == "VALIDATION_FAILED"
    await api.data(REFRESH, {"token": moved["refreshToken"]})


# --- ending a session with a long history -------------------------------------------------


async def test_log_out_ends_a_session_with_many_used_tokens_touching_only_the_live_one(
    api: GraphQLClient, database: asyncpg.Connection
) -> None:
    account = await api.sign_up()
    renewed = cast(
        JSON, (await api.data(REFRESH, {"token": account.refresh_token}))["refreshSession"]
    )
    current = cast(str, renewed["refreshToken"])
    family = (await token_row(database, current))["family_id"]
    await add_used_tokens(database, current, USED_ROWS)

    started = time.monotonic()
    assert (await api.data(LOG_OUT, {"t": current}))["logOut"] is True
    log.info("log_out used_tokens=%d seconds=%.3f", USED_ROWS + 1, time.monotonic() - started)

    # Only the token that could still be redeemed was written to.
    assert await revoked_in(database, family) == 1
    assert await api.error_code(ME, token=cast(str, renewed["accessToken"])) == "UNAUTHENTICATED"
    assert await api.error_code(REFRESH, {"token": current}) == "INVALID_REFRESH_TOKEN"
    # The session is over for its used tokens as well: logging out again with one ends
    # nothing, and presenting one is a replay.
    assert (await api.data(LOG_OUT, {"t": current}))["logOut"] is False
    assert (await api.data(LOG_OUT, {"t": account.refresh_token}))["logOut"] is False
    code = await api.error_code(REFRESH, {"token": account.refresh_token})
    assert code == "REFRESH_TOKEN_REUSED"
    assert await revoked_in(database, family) == 1
    # Nothing but the log-out was audited.
    other = await api.log_in(account.email)
    assert await audit_nodes(api, other.access_token, "auth.refresh_token_reused") == []
    assert len(await audit_nodes(api, other.access_token, "auth.logout")) == 1


async def test_a_replay_ends_a_session_with_many_used_tokens_and_those_switched_to(
    api: GraphQLClient, database: asyncpg.Connection
) -> None:
    # A thief trades a stolen copy of the member's token for a session in the team, and
    # refreshes there a great deal; the member's own copy is then presented.
    owner, member = await team_with_editor(api)
    stolen = member.refresh_token
    thief = await switch(api, stolen, owner.organization_id)
    thief_token = cast(str, thief["refreshToken"])
    thief_family = (await token_row(database, thief_token))["family_id"]
    await add_used_tokens(database, thief_token, USED_ROWS)

    started = time.monotonic()
    assert await api.error_code(REFRESH, {"token": stolen}) == "REFRESH_TOKEN_REUSED"
    log.info("replay used_tokens=%d seconds=%.3f", USED_ROWS, time.monotonic() - started)

    assert await revoked_in(database, thief_family) == 1
    assert await api.error_code(ME, token=cast(str, thief["accessToken"])) == "UNAUTHENTICATED"
    assert await api.error_code(REFRESH, {"token": thief_token}) == "INVALID_REFRESH_TOKEN"
    # The traded token's log-out finds nothing left to end.
    assert (await api.data(LOG_OUT, {"t": stolen}))["logOut"] is False
    # Audited once, in the organisation of the session the replayed token belonged to.
    home = await api.log_in(member.email)
    assert len(await audit_nodes(api, home.access_token, "auth.refresh_token_reused")) == 1
    # The owner's session in the team is untouched.
    await api.data(ME, token=owner.access_token)


async def test_log_out_with_a_traded_token_ends_the_session_it_led_to(
    api: GraphQLClient,
) -> None:
    owner, member = await team_with_editor(api)
    moved = await switch(api, member.refresh_token, owner.organization_id)
    back = await switch(api, moved["refreshToken"], member.organization_id)
    # The first session's used token still names a live lineage: logging out with it
    # ends the session two switches on, once.
    assert (await api.data(LOG_OUT, {"t": member.refresh_token}))["logOut"] is True
    assert await api.error_code(ME, token=cast(str, back["accessToken"])) == "UNAUTHENTICATED"
    assert await api.error_code(REFRESH, {"token": back["refreshToken"]}) == (
        "INVALID_REFRESH_TOKEN"
    )
    for token in (member.refresh_token, moved["refreshToken"], back["refreshToken"]):
        assert (await api.data(LOG_OUT, {"t": token}))["logOut"] is False


@pytest.mark.parametrize("ending", ["logOut", "replay"])
async def test_a_refresh_committed_while_a_session_ends_does_not_survive_it(
    api: GraphQLClient, database: asyncpg.Connection, urls: BackendUrls, ending: str
) -> None:
    # A refresh holds the session's newest token locked (here a bare connection plays it,
    # half done) while a log-out or replay with an older token of the session revokes the
    # session: the revocation waits for it, finds the token it waited for used, and must
    # go on to the token the refresh committed, which it never saw.
    account = await api.sign_up()
    renewed = cast(
        JSON, (await api.data(REFRESH, {"token": account.refresh_token}))["refreshSession"]
    )
    tip = await token_row(database, cast(str, renewed["refreshToken"]))
    newer = f"newer-{uuid.uuid4().hex}"
    refresh = await asyncpg.connect(urls.database_url.replace("+asyncpg", ""))
    try:
        await refresh.execute("BEGIN")
        await refresh.execute("SELECT 1 FROM refresh_tokens WHERE id = $1 FOR UPDATE", tip["id"])
        call = (
            api.execute(LOG_OUT, {"t": account.refresh_token})
            if ending == "logOut"
            else api.execute(REFRESH, {"token": account.refresh_token})
        )
        waiting = await after_waiting(refresh, call)
        await refresh.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = $1", tip["id"])
        await refresh.execute(
            """
            INSERT INTO refresh_tokens (id, organization_id, user_id, family_id,
                session_started_at, token_hash, created_at, expires_at)
            VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, now(), now() + interval '1 day')
            """,
            tip["organization_id"],
            tip["user_id"],
            tip["family_id"],
            tip["session_started_at"],
            hash_refresh_token(newer),
        )
        await refresh.execute("COMMIT")
        body = await waiting
    finally:
        await refresh.close()
    if ending == "logOut":
        assert body == {"data": {"logOut": True}}, body
    else:
        assert error_of(body)["code"] == "REFRESH_TOKEN_REUSED"
    assert await api.error_code(REFRESH, {"token": newer}) == "INVALID_REFRESH_TOKEN"


async def test_a_replay_ends_the_session_it_led_to_however_many_switches_away(
    api: GraphQLClient, database: asyncpg.Connection
) -> None:
    # More switches than one statement can carry parameters (32,767): a revocation that
    # fetched the lineage and sent it back as a list failed, and the last session lived.
    switches = 40_000
    victim = await api.sign_up()
    thief = cast(JSON, (await api.data(REFRESH, {"token": victim.refresh_token}))["refreshSession"])
    traded = await token_row(database, cast(str, thief["refreshToken"]))
    # The thief's token traded, then each session switched on from the one before; the
    # last one's token is live.
    live = f"live-{uuid.uuid4().hex}"
    await database.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = $1", traded["id"])
    await database.execute(
        """
        INSERT INTO refresh_tokens (id, organization_id, user_id, family_id,
            previous_family_id, session_started_at, token_hash, created_at, expires_at,
            used_at)
        SELECT gen_random_uuid(), $1, $2, md5($6 || g::text)::uuid,
               CASE WHEN g = 1 THEN $3 ELSE md5($6 || (g - 1)::text)::uuid END, $4,
               CASE WHEN g = $5 THEN $7 ELSE md5($6 || g::text) || md5(g::text) END,
               now(), now() + interval '1 day', CASE WHEN g < $5 THEN now() END
        FROM generate_series(1, $5) g
        """,
        traded["organization_id"],
        traded["user_id"],
        traded["family_id"],
        traded["session_started_at"],
        switches,
        uuid.uuid4().hex,
        hash_refresh_token(live),
    )
    await database.execute("ANALYZE refresh_tokens")

    assert await api.error_code(REFRESH, {"token": victim.refresh_token}) == (
        "REFRESH_TOKEN_REUSED"
    )
    assert await api.error_code(REFRESH, {"token": live}) == "INVALID_REFRESH_TOKEN"
