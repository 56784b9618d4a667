"""Regression tests for holes found in review: sockets outliving sessions, secrets in logs,
refresh right after a role change, nested fields of other orgs/users, races."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import cast

import pytest
from gql import Client, GraphQLRequest, gql
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from sqlalchemy import func, select
from websockets.exceptions import ConnectionClosed

from infrastructure.container import Container
from infrastructure.database.models import MembershipRow
from tests.api.test_members import ADD, CHANGE, REMOVE
from tests.conftest import ServerThread
from tests.helpers import JSON, ME, PASSWORD, REFRESH, SIGN_UP, GraphQLClient, unique_email


def socket(server: ServerThread, token: str) -> Client:
    transport = WebsocketsTransport(
        url=server.base_url.replace("http://", "ws://") + "/graphql",
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    return Client(transport=transport)


def close_of(error: BaseException | None) -> tuple[int, str] | None:
    """The close frame the server sent, if ``error`` came of it."""
    while error is not None:
        if isinstance(error, ConnectionClosed) and error.rcvd is not None:
            return error.rcvd.code, error.rcvd.reason
        error = error.__cause__ or error.__context__
    return None


async def refusal_code(session: AsyncClientSession, request: GraphQLRequest) -> str:
    """The code an operation sent over a socket whose session has ended is refused with:
    its error's, or, once the server has closed the socket for the session's end (it
    does as soon as it hears of it), the close reason's (4403, as a refused token)."""
    with pytest.raises(TransportError) as refused:
        await session.execute(request)
    error = refused.value
    if isinstance(error, TransportQueryError):
        assert error.errors is not None, error
        return str(cast(JSON, error.errors[0]["extensions"])["code"])
    close = close_of(error)
    assert close is not None and close[0] == 4403, error
    return str(json.loads(close[1])["code"])


async def test_open_socket_stops_working_after_log_out(
    server: ServerThread, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    async with socket(server, account.access_token) as session:
        assert (await session.execute(gql("{ me { email } }")))["me"]["email"] == account.email
        await api.data(
            "mutation($t: String!) { logOut(refreshToken: $t) }", {"t": account.refresh_token}
        )
        assert await refusal_code(session, gql("{ me { email } }")) == "UNAUTHENTICATED"


async def test_removed_admin_cannot_act_over_an_open_socket(
    server: ServerThread, api: GraphQLClient
) -> None:
    owner = await api.sign_up()
    other_admin = await api.sign_up()
    bystander = await api.sign_up()
    await api.data(ADD, {"e": other_admin.email, "r": "ADMIN"}, owner.access_token)
    await api.data(ADD, {"e": bystander.email, "r": "VIEWER"}, owner.access_token)
    session_b = await api.log_in(other_admin.email, organization_id=owner.organization_id)
    async with socket(server, session_b.access_token) as session:
        await api.data(REMOVE, {"u": other_admin.user_id}, owner.access_token)
        request = gql("mutation($u: ID!) { removeMember(userId: $u) }")
        request.variable_values = {"u": bystander.user_id}
        assert await refusal_code(session, request) == "UNAUTHENTICATED"
    members = cast(
        JSON,
        (
            await api.data(
                "{ organization { members { user { email } } } }", token=owner.access_token
            )
        )["organization"],
    )
    assert bystander.email in json.dumps(members)


async def test_demoted_admin_with_a_stale_token_is_refused_even_without_redis_revocation(
    api: GraphQLClient, container: Container
) -> None:
    owner = await api.sign_up()
    other = await api.sign_up()
    await api.data(ADD, {"e": other.email, "r": "ADMIN"}, owner.access_token)
    stale = await api.log_in(other.email, organization_id=owner.organization_id)
    await api.data(CHANGE, {"u": other.user_id, "r": "VIEWER"}, owner.access_token)
    # Even if the revocation entry were lost, the service re-reads the role under lock.
    await container.redis.delete(
        f"{container.settings.redis_key_prefix}session:{_sid(stale.access_token)}"
    )
    code = await api.error_code(ADD, {"e": unique_email(), "r": "ADMIN"}, stale.access_token)
    assert code in ("FORBIDDEN", "NOT_FOUND")
    code = await api.error_code(REMOVE, {"u": owner.user_id}, stale.access_token)
    assert code == "FORBIDDEN"


def _sid(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["sid"])


async def test_refresh_right_after_a_role_change_gives_a_working_token(api: GraphQLClient) -> None:
    owner = await api.sign_up()
    member = await api.sign_up()
    await api.data(ADD, {"e": member.email, "r": "VIEWER"}, owner.access_token)
    session = await api.log_in(member.email, organization_id=owner.organization_id)
    await api.data(CHANGE, {"u": member.user_id, "r": "EDITOR"}, owner.access_token)
    refreshed = cast(
        JSON, (await api.data(REFRESH, {"token": session.refresh_token}))["refreshSession"]
    )
    data = await api.data(ME, token=cast(str, refreshed["accessToken"]))
    assert cast(JSON, data["organization"])["role"] == "EDITOR"


async def test_nested_fields_never_answer_for_another_org_or_user(api: GraphQLClient) -> None:
    owner = await api.sign_up()
    member = await api.sign_up()
    await api.data(ADD, {"e": member.email, "r": "ADMIN"}, owner.access_token)
    # member is admin in two orgs, session in their own: owner's org must not list members.
    query = "{ me { organizations { id members { user { email } } } } }"
    body = await api.execute(query, token=member.access_token)
    errors = cast(list[JSON], body["errors"])
    assert {cast(JSON, e["extensions"])["code"] for e in errors} == {"FORBIDDEN"}
    body = await api.execute(
        "{ organization { members { user { id organizations { id } } } } }",
        token=owner.access_token,
    )
    # owner sees all of their own organisations, and of the member's only the one they
    # share: never the member's own (another tenant).
    members = cast(list[JSON], cast(JSON, cast(JSON, body["data"])["organization"])["members"])
    listed = {
        cast(str, cast(JSON, m["user"])["id"]): {
            cast(str, o["id"]) for o in cast(list[JSON], cast(JSON, m["user"])["organizations"])
        }
        for m in members
    }
    assert listed == {
        owner.user_id: {owner.organization_id},
        member.user_id: {owner.organization_id},
    }
    assert member.organization_id not in str(body)


async def test_concurrent_sign_ups_with_one_email(api: GraphQLClient) -> None:
    email = unique_email()
    variables: JSON = {"input": {"email": email, "password": PASSWORD}}
    bodies = await asyncio.gather(*(api.execute(SIGN_UP, variables) for _ in range(5)))
    outcomes = sorted(
        "ok"
        if "errors" not in body
        else str(cast(JSON, cast(list[JSON], body["errors"])[0]["extensions"])["code"])
        for body in bodies
    )
    assert outcomes == ["EMAIL_TAKEN"] * 4 + ["ok"]


async def test_concurrent_refresh_with_one_token_lets_one_win(api: GraphQLClient) -> None:
    account = await api.sign_up()
    bodies = await asyncio.gather(
        *(api.execute(REFRESH, {"token": account.refresh_token}) for _ in range(4))
    )
    winners = [b for b in bodies if "errors" not in b]
    assert len(winners) <= 1
    # Any concurrent replay counts as reuse: the whole family is revoked.
    codes = {
        cast(JSON, cast(list[JSON], b["errors"])[0]["extensions"])["code"]
        for b in bodies
        if "errors" in b
    }
    assert codes <= {"REFRESH_TOKEN_REUSED", "INVALID_REFRESH_TOKEN"}


async def test_concurrent_demotions_keep_one_admin(
    api: GraphQLClient, container: Container
) -> None:
    owner = await api.sign_up()
    other = await api.sign_up()
    await api.data(ADD, {"e": other.email, "r": "ADMIN"}, owner.access_token)
    second = await api.log_in(other.email, organization_id=owner.organization_id)
    results = await asyncio.gather(
        api.execute(CHANGE, {"u": owner.user_id, "r": "VIEWER"}, owner.access_token),
        api.execute(CHANGE, {"u": other.user_id, "r": "VIEWER"}, second.access_token),
    )
    assert sum("errors" not in body for body in results) == 1
    async with container.session_factory() as session:
        admins = await session.scalar(
            select(func.count())
            .select_from(MembershipRow)
            .where(
                MembershipRow.organization_id == uuid.UUID(owner.organization_id),
                MembershipRow.role == "admin",
            )
        )
    assert admins == 1


async def test_passwords_and_tokens_never_reach_the_logs(
    api: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_password = "Sup3r-Secret-Passw0rd-XYZ"
    await api.execute(
        'mutation { logIn(input: {email: "nobody@example.com", password: "'
        + secret_password
        + '"}) { accessToken } }'
    )
    await api.execute(REFRESH, {"token": "RT-SECRET-VALUE-123456"})
    await api.execute(SIGN_UP, {"input": {"email": "bad", "password": secret_password}})
    assert secret_password not in caplog.text
    assert "RT-SECRET-VALUE-123456" not in caplog.text
