"""WebSocket transports authenticate from the connection_init payload."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest
import websockets
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from infrastructure.container import BackendUrls
from infrastructure.settings import Settings
from tests.conftest import ServerThread, free_port
from tests.helpers import GraphQLClient


def ws_url(server: ServerThread) -> str:
    return server.base_url.replace("http://", "ws://") + "/graphql"


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
        init = {
            "type": "connection_init",
            "payload": {"authorization": f"Bearer {account.access_token}"},
        }
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"


async def test_legacy_graphql_ws_protocol_runs_queries_and_mutations(
    server: ServerThread, api: GraphQLClient
) -> None:
    # subscriptions-transport-ws clients (Apollo Client 2) send every operation over the
    # socket: each gets its data, then complete (strawberry alone answered INTERNAL).
    account = await api.sign_up()
    async with websockets.connect(ws_url(server), subprotocols=[Subprotocol("graphql-ws")]) as ws:
        init = {
            "type": "connection_init",
            "payload": {"authorization": f"Bearer {account.access_token}"},
        }
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
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


async def test_an_over_long_operation_over_websocket_gets_a_code(
    server: ServerThread, api: GraphQLClient
) -> None:
    account = await api.sign_up()
    protocols = [Subprotocol("graphql-transport-ws")]
    async with websockets.connect(ws_url(server), subprotocols=protocols) as ws:
        init = {
            "type": "connection_init",
            "payload": {"authorization": f"Bearer {account.access_token}"},
        }
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription { documentEvents { progress" + " " * 8_000 + "} }"
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": query}}))
        reply = json.loads(await ws.recv())
    assert reply["type"] == "error" and reply["id"] == "1"
    assert reply["payload"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"


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
