"""A WebSocket closes once its session has ended: logged out, ended by a password change,
its member removed, its API key revoked, its access token expired. Its client is told
(4403 and the code, as for a refused token), its operations end, and its slot of the
user's connections budget (shared with uploads and downloads) is free at once.

Before, a socket opened with a stolen access token stayed open, idle, after its session
ended, kept its slot, and the real user could open no socket and upload nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import cast

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from infrastructure.container import BackendUrls
from infrastructure.settings import Settings
from tests.api.test_api_keys import REVOKE, create_key
from tests.api.test_change_password import CHANGE_PASSWORD, NEW_PASSWORD, change
from tests.api.test_members import ADD, CHANGE, REMOVE
from tests.api.test_rate_limits import start_limited_server
from tests.api.test_session_notices import subscribers, until_subscribers
from tests.api.test_websocket import _close, ws_url
from tests.conftest import ServerThread
from tests.helpers import JSON, LOG_IN, PASSWORD, Account, GraphQLClient, upload

LOG_OUT = "mutation($t: String!) { logOut(refreshToken: $t) }"
TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
# Generous: the notice is heard within milliseconds; a loaded machine may take longer.
CLOSE_WITHIN_SECONDS = 30.0


async def open_socket(
    server: ServerThread, token: str, protocol: str = TRANSPORT_WS
) -> ClientConnection:
    """A socket acknowledged for ``token``, with no operation."""
    ws = await websockets.connect(ws_url(server), subprotocols=[Subprotocol(protocol)])
    init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    await ws.send(json.dumps(init))
    reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert reply["type"] == "connection_ack", reply
    return ws


async def until_closed(ws: ClientConnection) -> tuple[list[JSON], int, str]:
    """The frames the server sends (graphql-ws keep-alives left out) until it closes the
    socket, then the close code and reason; fails when it does not close in time."""
    frames: list[JSON] = []
    ended: ConnectionClosed | None = None
    async with asyncio.timeout(CLOSE_WITHIN_SECONDS):
        while ended is None:
            try:
                frame = cast(JSON, json.loads(await ws.recv()))
            except ConnectionClosed as closed:
                ended = closed
            else:
                if frame.get("type") != "ka":
                    frames.append(frame)
    assert ended.rcvd is not None, ended
    return frames, ended.rcvd.code, ended.rcvd.reason


def refused(code: str) -> tuple[int, JSON]:
    return 4403, {"code": code}


async def still_serves(ws: ClientConnection, email: str) -> None:
    """The (graphql-transport-ws) socket runs a query for ``email``'s account."""
    subscribe = {"id": "me", "type": "subscribe", "payload": {"query": "{ me { email } }"}}
    await ws.send(json.dumps(subscribe))
    reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert reply == {"id": "me", "type": "next", "payload": {"data": {"me": {"email": email}}}}


@pytest.fixture(scope="module")
def three_sockets_server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    """Three open connections per user (WebSockets, uploads and downloads together)."""
    server = start_limited_server(settings, urls, {"ws_connections_user": "3"})
    yield server
    server.stop()


async def _end(
    api: GraphQLClient, ending: str, owner: Account, user: Account, session: Account
) -> str:
    """End ``user``'s ``session`` as ``ending`` says; the password to log in with next."""
    if ending == "log_out":
        await api.data(LOG_OUT, {"t": session.refresh_token})
    elif ending == "change_password":
        # From the owner's other session, which goes on; every other one ends.
        await api.data(CHANGE_PASSWORD, change(), owner.access_token)
        return NEW_PASSWORD
    else:
        await api.data(REMOVE, {"u": user.user_id}, owner.access_token)
    return PASSWORD


@pytest.mark.parametrize("ending", ["log_out", "change_password", "removal"])
async def test_idle_sockets_close_and_give_their_slots_back_when_their_session_ends(
    three_sockets_server: ServerThread, ending: str
) -> None:
    server = three_sockets_server
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        api = GraphQLClient(http)
        owner = await api.sign_up()
        user = owner
        if ending == "removal":
            user = await api.sign_up()
            await api.data(ADD, {"e": user.email, "r": "EDITOR"}, owner.access_token)
        session = await api.log_in(user.email, organization_id=owner.organization_id)
        sockets = [await open_socket(server, session.access_token) for _ in range(3)]
        try:
            # They hold the user's three slots.
            init: dict[str, object] = {"authorization": f"Bearer {session.access_token}"}
            code, reason = await _close(server, init)
            assert (code, json.loads(reason)["code"]) == (4429, "RATE_LIMITED")

            password = await _end(api, ending, owner, user, session)

            for ws in sockets:
                frames, code, reason = await until_closed(ws)
                assert (code, json.loads(reason)) == refused("UNAUTHENTICATED")
                assert frames == []
            # The slots are free: logged in again, the user opens a socket and uploads.
            logged_in = await api.data(
                LOG_IN, {"input": {"email": user.email, "password": password}}
            )
            token = str(cast(JSON, logged_in["logIn"])["accessToken"])
            fresh = await open_socket(server, token)
            content = f"Uploaded once the old session ended {uuid.uuid4()}.".encode()
            response = await upload(http, token, [("after.txt", content, "text/plain")])
            await fresh.close()
        finally:
            for ws in sockets:
                await ws.close()
    assert response.status_code == 200, response.text
    outcome = cast(list[JSON], response.json()["data"]["uploadDocuments"])
    assert outcome[0]["error"] is None, outcome


async def test_a_socket_of_another_session_of_the_same_user_stays_open(
    server: ServerThread, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    other = await api.log_in(account.email)
    ending = await open_socket(server, other.access_token)
    kept = await open_socket(server, account.access_token)
    try:
        await api.data(LOG_OUT, {"t": other.refresh_token})
        frames, code, reason = await until_closed(ending)
        assert (code, json.loads(reason)) == refused("UNAUTHENTICATED")
        assert frames == []
        await still_serves(kept, account.email)
    finally:
        await kept.close()


async def test_a_socket_authenticated_by_an_api_key_closes_when_the_key_is_revoked(
    server: ServerThread, api: GraphQLClient
) -> None:
    admin = await api.sign_up()
    key, api_key = await create_key(api, admin)
    by_key = await open_socket(server, key)
    by_token = await open_socket(server, admin.access_token)
    try:
        await api.data(REVOKE, {"id": api_key["id"]}, admin.access_token)
        frames, code, reason = await until_closed(by_key)
        assert (code, json.loads(reason)) == refused("UNAUTHENTICATED")
        assert frames == []
        await still_serves(by_token, admin.email)
    finally:
        await by_token.close()


async def test_a_socket_whose_user_changed_role_closes_as_for_an_expired_token(
    server: ServerThread, api: GraphQLClient
) -> None:
    """A role change outdates the member's access tokens (TOKEN_EXPIRED: refresh, and get
    the new role); their idle sockets close with that code, as a stream on them ends."""
    owner = await api.sign_up()
    member = await api.sign_up()
    await api.data(ADD, {"e": member.email, "r": "EDITOR"}, owner.access_token)
    session = await api.log_in(member.email, organization_id=owner.organization_id)
    ws = await open_socket(server, session.access_token)
    await api.data(CHANGE, {"u": member.user_id, "r": "VIEWER"}, owner.access_token)
    frames, code, reason = await until_closed(ws)
    assert (code, json.loads(reason)) == refused("TOKEN_EXPIRED")
    assert frames == []


EVENTS = "subscription { documentEvents { progress } }"


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_stream_ends_with_the_code_then_the_socket_closes(
    server: ServerThread, api: GraphQLClient, http: httpx.AsyncClient, protocol: str
) -> None:
    """The socket's operations end as a stream that found its session ended does (its
    error, then complete); then the socket closes as a refused connection_init does: 4403
    and the code, or on the legacy protocol connection_error with the code."""
    account = await api.sign_up()
    session = await api.log_in(account.email)
    before = await subscribers(http)
    ws = await open_socket(server, session.access_token, protocol)
    start = "subscribe" if protocol == TRANSPORT_WS else "start"
    await ws.send(json.dumps({"id": "e", "type": start, "payload": {"query": EVENTS}}))
    await until_subscribers(http, lambda count: count >= before + 1, [])

    await api.data(LOG_OUT, {"t": session.refresh_token})
    frames, code, reason = await until_closed(ws)

    ended, complete, *rest = frames
    assert ended["type"] == ("next" if protocol == TRANSPORT_WS else "data")
    payload = cast(JSON, ended["payload"])
    assert payload["data"] is None
    [error] = cast(list[JSON], payload["errors"])
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert complete == {"id": "e", "type": "complete"}
    if protocol == TRANSPORT_WS:
        assert rest == []
        assert (code, json.loads(reason)) == refused("UNAUTHENTICATED")
    else:
        assert rest == [{"type": "connection_error", "payload": {"code": "UNAUTHENTICATED"}}]
        assert code == 1011  # as a refused connection_init on that protocol
    await until_subscribers(http, lambda count: count <= before, [])


# The shortest lifetime the tests can wait for (the setting's minimum is 30 s; model_copy
# does not validate). The codec accepts a token 5 s past its expiry.
SHORT_TOKEN_SECONDS = 2


@pytest.fixture(scope="module")
def short_token_server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    server = ServerThread(
        settings.model_copy(update={"access_token_ttl_seconds": SHORT_TOKEN_SECONDS}), urls
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_an_idle_socket_closes_when_its_access_token_expires(
    short_token_server: ServerThread, protocol: str
) -> None:
    async with httpx.AsyncClient(base_url=short_token_server.base_url, timeout=30) as http:
        account = await GraphQLClient(http).sign_up()
    ws = await open_socket(short_token_server, account.access_token, protocol)
    frames, code, reason = await until_closed(ws)
    if protocol == TRANSPORT_WS:
        assert frames == []
        assert (code, json.loads(reason)) == refused("TOKEN_EXPIRED")
    else:
        assert frames == [{"type": "connection_error", "payload": {"code": "TOKEN_EXPIRED"}}]
        assert code == 1011
