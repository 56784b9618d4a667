"""WebSocket transports authenticate from the connection_init payload."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, cast

import httpx
import pytest
import websockets
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from infrastructure.container import BackendUrls
from infrastructure.http.draining import answer_drain_of
from infrastructure.settings import Settings
from tests.conftest import ServerThread, free_port
from tests.helpers import GraphQLClient


def ws_url(server: ServerThread) -> str:
    return server.base_url.replace("http://", "ws://") + "/graphql"


async def _legacy_ack(ws: ClientConnection, token: str) -> None:
    """connection_init on a graphql-ws socket, and its acknowledgement."""
    init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    await ws.send(json.dumps(init))
    assert json.loads(await ws.recv())["type"] == "connection_ack"


async def test_valid_token_in_connection_init(server: ServerThread, api: GraphQLClient) -> None:
    account = await api.sign_up()
    transport = WebsocketsTransport(
        url=ws_url(server),
        init_payload={"Authorization": f"Bearer {account.access_token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    async with Client(transport=transport) as session:
        result = await session.execute(gql("{ me { email } organization { role } }"))
    assert result == {"me": {"email": account.email}, "organization": {"role": "ADMIN"}}


async def test_legacy_graphql_ws_protocol_acknowledges_a_valid_token(
    server: ServerThread, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    async with websockets.connect(ws_url(server), subprotocols=[Subprotocol("graphql-ws")]) as ws:
        assert ws.subprotocol == "graphql-ws"
        await _legacy_ack(ws, account.access_token)


async def test_legacy_graphql_ws_protocol_runs_queries_and_mutations(
    server: ServerThread, api: GraphQLClient
) -> None:
    # subscriptions-transport-ws clients (Apollo Client 2) send every operation over the
    # socket: each gets its data, then complete (strawberry alone answered INTERNAL).
    account = await api.sign_up()
    async with websockets.connect(ws_url(server), subprotocols=[Subprotocol("graphql-ws")]) as ws:
        await _legacy_ack(ws, account.access_token)
        operations = {
            "q": "{ me { email } }",
            "m": 'mutation { createChat(title: "over graphql-ws") { title } }',
        }
        for operation_id, query in operations.items():
            start = {"type": "start", "id": operation_id, "payload": {"query": query}}
            await ws.send(json.dumps(start))
            received: list[dict[str, Any]] = []
            while len(received) < 2:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                if message["type"] != "ka":  # the keep-alive, sent at any time
                    received.append(message)
            assert [message["type"] for message in received] == ["data", "complete"]
            assert received[0]["id"] == operation_id
            assert "errors" not in received[0]["payload"]
            data = received[0]["payload"]["data"]
            if operation_id == "q":
                assert data == {"me": {"email": account.email}}
            else:
                assert data == {"createChat": {"title": "over graphql-ws"}}


def _masked_text_frame(text: str) -> bytes:
    """One client text frame (RFC 6455: masked), short enough for a one-byte length."""
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def test_a_graphql_ws_operation_replaced_before_it_ran_still_ends(
    server: ServerThread, api: GraphQLClient
) -> None:
    """Two starts under one id in one write: strawberry cancels the first before it ran,
    which alone sends no "complete", so the client never heard of its end and the
    shutdown drain kept counting it until the socket closed."""
    account = await api.sign_up()
    drain = answer_drain_of(cast(Starlette, server.server.config.app))
    async with websockets.connect(ws_url(server), subprotocols=[Subprotocol("graphql-ws")]) as ws:
        await _legacy_ack(ws, account.access_token)
        frames = [
            json.dumps(
                {
                    "type": "start",
                    "id": "1",
                    "payload": {"query": f'mutation{{createChat(title:"{t}"){{title}}}}'},
                },
                separators=(",", ":"),
            )
            for t in ("a", "b")
        ]
        ws.transport.write(b"".join(_masked_text_frame(frame) for frame in frames))
        received: list[dict[str, Any]] = []
        while [m["type"] for m in received].count("complete") < 2:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            if message["type"] != "ka":
                received.append(message)
        assert [(m["type"], m["id"]) for m in received] == [
            ("complete", "1"),  # the first, stopped before it began
            ("data", "1"),
            ("complete", "1"),
        ]
        assert received[1]["payload"]["data"] == {"createChat": {"title": "b"}}
        for _ in range(100):  # the socket is still open: nothing of it is in flight
            if drain.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert drain.in_flight == 0


async def test_legacy_graphql_ws_protocol_refuses_a_missing_token(server: ServerThread) -> None:
    async with websockets.connect(ws_url(server), subprotocols=[Subprotocol("graphql-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        error = json.loads(await ws.recv())
        assert error == {"type": "connection_error", "payload": {"code": "UNAUTHENTICATED"}}
        with pytest.raises(ConnectionClosed):
            await ws.recv()


async def _close(server: ServerThread, payload: dict[str, object]) -> tuple[int, str]:
    """The close code and reason of a graphql-transport-ws socket refused at connection_init."""
    protocols = [Subprotocol("graphql-transport-ws")]
    async with websockets.connect(ws_url(server), subprotocols=protocols) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def _close_code(server: ServerThread, payload: dict[str, object]) -> int:
    return (await _close(server, payload))[0]


def refused(code: str) -> tuple[int, str]:
    """A refusal as the client sees it: 4403 and the code as a JSON reason."""
    return 4403, json.dumps({"code": code})


async def test_connection_without_valid_token_is_refused_with_its_code(
    server: ServerThread, api: GraphQLClient
) -> None:
    assert await _close(server, {}) == refused("UNAUTHENTICATED")
    assert await _close(server, {"authorization": "Bearer forged.token.value"}) == refused(
        "UNAUTHENTICATED"
    )
    assert await _close(server, {"authorization": "Basic dXNlcjpwYXNz"}) == refused(
        "UNAUTHENTICATED"
    )


async def test_connection_with_a_revoked_token_is_refused_with_its_code(
    server: ServerThread, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    await api.data(
        "mutation($t: String!) { logOut(refreshToken: $t) }", {"t": account.refresh_token}
    )
    code, reason = await _close(server, {"authorization": f"Bearer {account.access_token}"})
    assert code == 4403
    assert json.loads(reason)["code"] in {"UNAUTHENTICATED", "TOKEN_EXPIRED"}


async def test_a_socket_whose_session_cannot_be_checked_is_told_to_come_back(
    settings: Settings, urls: BackendUrls, api: GraphQLClient
) -> None:
    """Redis down: the token may be good, so no 4403 (clients would refresh for nothing)
    but 1013, try again later, which graphql-ws clients retry."""
    account = await api.sign_up()
    cut_off = ServerThread(
        settings, BackendUrls(urls.database_url, f"redis://127.0.0.1:{free_port()}/0")
    )
    cut_off.start()
    try:
        init: dict[str, object] = {"authorization": f"Bearer {account.access_token}"}
        assert await _close(cut_off, init) == (1013, json.dumps({"code": "SERVICE_UNAVAILABLE"}))
    finally:
        cut_off.stop()


async def test_per_message_deflate_is_offered_only_when_configured(
    server: ServerThread, settings: Settings, urls: BackendUrls, api: GraphQLClient
) -> None:
    """Off by default (each compressed connection holds ~50 KB of zlib state); a client
    offering it still connects, uncompressed. FOUNDRY_WS_PER_MESSAGE_DEFLATE turns it on."""
    account = await api.sign_up()
    init = {
        "type": "connection_init",
        "payload": {"authorization": f"Bearer {account.access_token}"},
    }
    protocols = [Subprotocol("graphql-transport-ws")]
    compressing = ServerThread(settings.model_copy(update={"ws_per_message_deflate": True}), urls)
    compressing.start()
    try:
        for target, expected in ((server, None), (compressing, "permessage-deflate")):
            async with websockets.connect(
                ws_url(target), subprotocols=protocols, compression="deflate"
            ) as ws:
                assert ws.response is not None
                extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
                assert (extensions.split(";")[0] if extensions else None) == expected
                await ws.send(json.dumps(init))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
    finally:
        compressing.stop()


async def test_a_socket_that_never_sends_connection_init_is_closed_on_both_protocols(
    settings: Settings, urls: BackendUrls
) -> None:
    """Until connection_init a socket is unauthenticated and counts against no user's
    budget; FOUNDRY_WS_CONNECTION_INIT_TIMEOUT_SECONDS bounds how long it may idle."""
    hasty = ServerThread(
        settings.model_copy(update={"ws_connection_init_timeout_seconds": 1}), urls
    )
    hasty.start()
    try:
        for protocol in ("graphql-transport-ws", "graphql-ws"):
            async with websockets.connect(
                ws_url(hasty), subprotocols=[Subprotocol(protocol)]
            ) as ws:
                async with asyncio.timeout(30):
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.recv()
            assert closed.value.rcvd is not None, protocol
            assert closed.value.rcvd.code == 4408, protocol
    finally:
        hasty.stop()


async def test_legacy_graphql_ws_protocol_refuses_a_second_connection_init(
    server: ServerThread, api: GraphQLClient
) -> None:
    """A second init would swap the socket's principal under its running subscriptions."""
    first, second = await api.sign_up(), await api.sign_up()
    async with websockets.connect(ws_url(server), subprotocols=[Subprotocol("graphql-ws")]) as ws:
        for account in (first, second):
            init = {
                "type": "connection_init",
                "payload": {"authorization": f"Bearer {account.access_token}"},
            }
            await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        refused = json.loads(await ws.recv())
        assert refused == {"type": "connection_error", "payload": {"code": "VALIDATION_FAILED"}}
        with pytest.raises(ConnectionClosed):
            await ws.recv()


async def _first_reply(server: ServerThread, token: str, payload: object) -> dict[str, Any]:
    """The first frame answering a graphql-transport-ws subscribe with ``payload``."""
    protocols = [Subprotocol("graphql-transport-ws")]
    async with websockets.connect(ws_url(server), subprotocols=protocols) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
        reply = cast(dict[str, Any], json.loads(await ws.recv()))
    assert reply["id"] == "1"
    return reply


async def test_an_over_long_operation_over_websocket_gets_a_code(
    server: ServerThread, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    query = "subscription { documentEvents { progress" + " " * 8_000 + "} }"
    reply = await _first_reply(server, account.access_token, {"query": query})
    assert reply["type"] == "error"
    assert reply["payload"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
    named = "subscription Events { documentEvents { progress" + " " * 8_000 + "} }"
    payload = {"query": named, "operationName": "Events"}
    reply = await _first_reply(server, account.access_token, payload)
    assert reply["type"] == "error"
    assert reply["payload"][0]["extensions"] == {"code": "REQUEST_TOO_LARGE", "maxChars": 8_000}


async def test_operations_that_name_nothing_to_run_are_bad_requests_over_websocket(
    server: ServerThread, api: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown operationName or no query at all is the client's mistake: BAD_REQUEST,
    not a masked INTERNAL logged as a server error."""
    account = await api.sign_up()
    payloads: list[object] = [
        {"query": "query Known { __typename }", "operationName": "Unknown"},
        {"query": None},
    ]
    for payload in payloads:
        reply = await _first_reply(server, account.access_token, payload)
        assert reply["type"] == "error", payload
        assert reply["payload"][0]["extensions"] == {"code": "BAD_REQUEST"}, payload
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


async def _subscribe_beyond_the_limit(
    server: ServerThread, token: str, protocol: str, start: str, limit: int
) -> dict[str, object]:
    """Opens ``limit`` documentEvents subscriptions on one socket, then one more; the
    answer to that one."""
    query = "subscription { documentEvents { progress } }"
    async with websockets.connect(ws_url(server), subprotocols=[Subprotocol(protocol)]) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for number in range(limit + 1):
            message = {"type": start, "id": str(number), "payload": {"query": query}}
            await ws.send(json.dumps(message))
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("type") == "error":
                return cast(dict[str, object], reply)


async def test_operations_over_the_per_socket_limit_are_refused_with_a_code(
    server: ServerThread, settings: Settings, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    limit = settings.ws_max_subscriptions_per_connection
    refused = await _subscribe_beyond_the_limit(
        server, account.access_token, "graphql-transport-ws", "subscribe", limit
    )
    assert refused["id"] == str(limit)
    assert refused["payload"] == [
        {"message": "Subscription limit reached", "extensions": {"code": "TOO_MANY_OPERATIONS"}}
    ]
    legacy = await _subscribe_beyond_the_limit(
        server, account.access_token, "graphql-ws", "start", limit
    )
    assert legacy["payload"] == {
        "message": "Subscription limit reached",
        "extensions": {"code": "TOO_MANY_OPERATIONS"},
    }


async def _handshake(server: ServerThread, origin: str, token: str) -> str:
    """The first frame a graphql-transport-ws socket opened from ``origin`` receives."""
    protocols = [Subprotocol("graphql-transport-ws")]
    async with websockets.connect(
        ws_url(server), subprotocols=protocols, origin=Origin(origin)
    ) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        return str(json.loads(await ws.recv())["type"])


async def test_sockets_from_the_allowed_cors_origins_are_accepted(
    settings: Settings, urls: BackendUrls, api: GraphQLClient
) -> None:
    """A browser app on an origin in FOUNDRY_CORS_ALLOW_ORIGINS subscribes as it queries;
    a page on any other origin is still refused at the handshake."""
    account = await api.sign_up()
    allowed = "https://app.example.com"
    cross = ServerThread(settings.model_copy(update={"cors_allow_origins": [allowed]}), urls)
    cross.start()
    try:
        assert await _handshake(cross, allowed, account.access_token) == "connection_ack"
        with pytest.raises(InvalidStatus) as refused:
            await _handshake(cross, "https://evil.example.com", account.access_token)
        assert refused.value.response.status_code == 403
        # Apollo Client's own headers pass the preflight of its queries and mutations.
        async with httpx.AsyncClient(base_url=cross.base_url) as http:
            preflight = await http.options(
                "/graphql",
                headers={
                    "origin": allowed,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": (
                        "apollographql-client-name, apollographql-client-version"
                    ),
                },
            )
        assert preflight.status_code == 200
    finally:
        cross.stop()


async def _close_after(
    server: ServerThread, protocol: str, token: str | None, frame: object
) -> int:
    """The close code of a socket sent ``frame`` (after a connection_init with ``token``)."""
    async with websockets.connect(ws_url(server), subprotocols=[Subprotocol(protocol)]) as ws:
        if token is not None:
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            await ws.send(json.dumps(init))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps(frame))
        async with asyncio.timeout(10):
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()  # keep-alives until the close
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_malformed_frames_close_the_socket_with_4400(
    server: ServerThread, api: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A frame of the wrong shape is the client's error (4400, as the protocol says), not
    a crash of the connection's handler (1006 and a traceback), signed in or not."""
    token = (await api.sign_up()).access_token
    malformed: list[tuple[str, str | None, object]] = [
        ("graphql-transport-ws", None, []),
        ("graphql-transport-ws", None, 1),
        ("graphql-transport-ws", None, {"type": "complete", "id": ["x"]}),
        ("graphql-transport-ws", token, {"type": "subscribe", "id": "9", "payload": "x"}),
        ("graphql-transport-ws", token, {"type": "subscribe", "id": 9, "payload": {}}),
        (
            "graphql-transport-ws",
            token,
            {
                "type": "subscribe",
                "id": "9",
                "payload": {"query": "{ me { id } }", "variables": []},
            },
        ),
        ("graphql-ws", None, {}),
        ("graphql-ws", None, []),
        ("graphql-ws", None, {"type": "stop"}),
        ("graphql-ws", token, {"type": "start", "id": "1", "payload": "x"}),
        ("graphql-ws", token, {"type": "start", "id": "1", "payload": {}}),
        ("graphql-ws", token, {"type": "start", "id": "1"}),
    ]
    for protocol, signed_in, frame in malformed:
        assert await _close_after(server, protocol, signed_in, frame) == 4400, (protocol, frame)
    crashes = [record for record in caplog.records if record.levelname == "ERROR"]
    assert not crashes, crashes[0].getMessage()
