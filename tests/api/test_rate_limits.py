"""Rate limits over real HTTP and WebSocket transports, against a server with low limits.

Clients are told apart by X-Forwarded-For (uvicorn trusts it from 127.0.0.1 here), so
each test bursts from its own addresses and several clients run at once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import cast

import httpx
import pytest
import websockets
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from infrastructure.container import BackendUrls
from infrastructure.ratelimit.limiter import hashed
from infrastructure.settings import Settings
from tests.api.test_answers_api import ANSWER, transport
from tests.api.test_websocket import ws_url
from tests.conftest import ServerThread
from tests.helpers import (
    JSON,
    LOG_IN,
    PASSWORD,
    REFRESH,
    SIGN_UP,
    Account,
    GraphQLClient,
    unique_email,
    upload,
)

# Bursts refill slowly (a request back every few seconds at the most), so a burst sent at
# once is counted whole, however slowly a loaded machine serves it.
LIMITS = {
    "login_ip": "10/600",
    "login_email": "3/60",
    "signup_ip": "4/60",
    "signup_email": "2/60",
    "session_ip": "3/60",
    "upload_org": "4/60",
    "ask_user": "1/60",
    "ask_user:admin": "3/60",  # everyone here is the admin of their own organisation
    "search_user": "3/60",
    "ws_connections_user": "2",
    "subscriptions_user": "2",
}
ASK = 'mutation($c: ID!) { ask(chatId: $c, question: "Who built it?") { id } }'
SEARCH_TWICE = """query {
  first: search(query: "lighthouse") { score }
  second: search(query: "keeper") { score } }"""
SEARCH_ONCE = '{ search(query: "lighthouse") { score } }'
EVENTS = "subscription { documentEvents { progress } }"


def start_limited_server(
    settings: Settings, urls: BackendUrls, limits: Mapping[str, str]
) -> ServerThread:
    """A running test server with these rate limits and budgets of its own (apart from
    the main test server's and every other limited server's); stop it when done."""
    configured = settings.model_copy(
        update={
            "rate_limits": dict(limits),
            "redis_key_prefix": f"{settings.redis_key_prefix}limits-{uuid.uuid4().hex[:6]}:",
        }
    )
    server = ServerThread(configured, urls)
    _PREFIXES[server.port] = configured.redis_key_prefix
    server.start()
    return server


@pytest.fixture(scope="module")
def limited_server(settings: Settings, urls: BackendUrls) -> Iterator[ServerThread]:
    server = start_limited_server(settings, urls, LIMITS)
    yield server
    server.stop()


_PREFIXES: dict[int, str] = {}


def server_prefix(server: ServerThread) -> str:
    return _PREFIXES[server.port]


def new_ip() -> str:
    raw = uuid.uuid4().bytes
    return f"10.{raw[0]}.{raw[1]}.{raw[2]}"


@pytest.fixture
async def clients(limited_server: ServerThread) -> AsyncIterator[ClientFactory]:
    async with AsyncExitStack() as stack:
        yield ClientFactory(limited_server, stack)


class ClientFactory:
    """GraphQL clients on the limited server, each from its own address."""

    def __init__(self, server: ServerThread, stack: AsyncExitStack) -> None:
        self.server = server
        self._stack = stack

    async def new(self, ip: str | None = None) -> GraphQLClient:
        http = httpx.AsyncClient(
            base_url=self.server.base_url,
            timeout=30,
            headers={"x-forwarded-for": ip or new_ip()},
        )
        await self._stack.enter_async_context(http)
        return GraphQLClient(http)

    async def account(self) -> Account:
        return await (await self.new()).sign_up()


def error_of(body: JSON) -> JSON:
    errors = cast(list[JSON], body.get("errors"))
    assert errors, body
    return cast(JSON, errors[0]["extensions"])


async def codes(calls: Sequence[Awaitable[JSON]]) -> list[str]:
    """ "OK" or the error code of each call, run all at once."""
    bodies = await asyncio.gather(*calls)
    return [str(error_of(body)["code"]) if "errors" in body else "OK" for body in bodies]


def assert_rate_limited(extensions: JSON, at_most: int) -> None:
    assert extensions["code"] == "RATE_LIMITED"
    retry_after = extensions["retryAfter"]
    assert isinstance(retry_after, int) and 1 <= retry_after <= at_most, extensions


def log_in(email: str, password: str = PASSWORD) -> JSON:
    return {"input": {"email": email, "password": password}}


async def test_login_bursts_are_limited_per_ip_and_each_ip_has_its_own_budget(
    clients: ClientFactory,
) -> None:
    attackers = [await clients.new() for _ in range(3)]
    # Many accounts tried from each address at once (credential stuffing).
    calls = [
        attacker.execute(LOG_IN, log_in(unique_email(), "wrong password"))
        for attacker in attackers
        for _ in range(14)
    ]
    seen = await codes(calls)
    for i in range(3):
        per_ip = seen[i * 14 : (i + 1) * 14]
        assert per_ip.count("INVALID_CREDENTIALS") == 10, per_ip
        assert per_ip.count("RATE_LIMITED") == 4, per_ip
    refused = await attackers[0].execute(LOG_IN, log_in(unique_email()))
    assert_rate_limited(error_of(refused), at_most=60)
    # Someone else, elsewhere, still logs in.
    account = await clients.account()
    await (await clients.new()).log_in(account.email)


async def test_login_brute_force_on_one_account_is_limited_across_ips(
    clients: ClientFactory,
) -> None:
    account = await clients.account()
    local = account.email.split("@")[0]
    # Spellings of one mailbox (case, spaces, fullwidth letters in the domain) share it.
    spellings = [
        account.email,
        account.email.upper(),
        f"  {account.email} ",
        f"{local}@\uff45xample.com",
        f"{local}@EXAMPLE.\uff43\uff4f\uff4d",
        f"{local}@ex\uff41mple.com",
    ]
    guesses = [
        (await clients.new()).execute(LOG_IN, log_in(email, f"guess {i}"))
        for i, email in enumerate(spellings)
    ]
    seen = await codes(guesses)
    assert seen.count("INVALID_CREDENTIALS") == 3 and seen.count("RATE_LIMITED") == 3, seen
    # Even the right password waits for the budget (an attacker cannot tell it worked).
    owner = await clients.new()
    refused = await owner.execute(LOG_IN, log_in(account.email))
    assert_rate_limited(error_of(refused), at_most=20)


async def test_a_refused_login_gets_in_once_its_retry_after_has_passed(
    settings: Settings, urls: BackendUrls
) -> None:
    # Its own server: one login per email every 3 s, so the wait below is short.
    server = start_limited_server(settings, urls, {"login_email": "1/3"})
    try:
        async with AsyncExitStack() as stack:
            clients = ClientFactory(server, stack)
            account = await clients.account()
            owner = await clients.new()
            # Wrong guesses until one is refused: a guess that a slow machine lets in after
            # a refill just spends the budget again.
            for _ in range(10):
                guess = await owner.execute(LOG_IN, log_in(account.email, "wrong password"))
                if error_of(guess)["code"] == "RATE_LIMITED":
                    break
                assert error_of(guess)["code"] == "INVALID_CREDENTIALS", guess
            extensions = error_of(guess)
            assert_rate_limited(extensions, at_most=3)
            await asyncio.sleep(cast(int, extensions["retryAfter"]))
            await owner.log_in(account.email)
    finally:
        server.stop()


async def test_sign_ups_are_limited_per_ip(clients: ClientFactory) -> None:
    client = await clients.new()
    calls = [
        client.execute(SIGN_UP, {"input": {"email": unique_email(), "password": PASSWORD}})
        for _ in range(7)
    ]
    seen = await codes(calls)
    assert seen.count("OK") == 4 and seen.count("RATE_LIMITED") == 3, seen
    await (await clients.new()).sign_up()


async def test_sign_ups_are_limited_per_email(clients: ClientFactory) -> None:
    email = unique_email()
    variables: JSON = {"input": {"email": email.upper(), "password": PASSWORD}}
    first = await (await clients.new()).execute(
        SIGN_UP, {"input": {"email": email, "password": PASSWORD}}
    )
    assert "errors" not in first, first
    taken = await (await clients.new()).execute(SIGN_UP, variables)
    assert error_of(taken)["code"] == "EMAIL_TAKEN"
    refused = await (await clients.new()).execute(SIGN_UP, variables)
    assert_rate_limited(error_of(refused), at_most=1_800)


async def test_refused_refresh_tokens_spend_a_budget_per_ip_and_good_ones_never_do(
    clients: ClientFactory,
) -> None:
    """Tokens cannot be guessed, but each try costs a lookup: an address that keeps
    sending refused tokens (to refreshSession or switchOrganization) is told to wait. A
    good token from the same address (an office behind one NAT) still refreshes, and a
    log-out is never refused."""
    address = new_ip()
    client = await clients.new(address)
    account = await clients.account()
    switch = (
        "mutation($t: String!, $o: ID!) { switchOrganization(refreshToken: $t, "
        "organizationId: $o) { accessToken } }"
    )
    seen = [
        await client.execute(REFRESH, {"token": "not-a-token"}),
        await client.execute(switch, {"t": "not-a-token", "o": str(uuid.uuid4())}),
        await client.execute(REFRESH, {"token": "still-not-a-token"}),
        await client.execute(REFRESH, {"token": "not-a-token-either"}),
    ]
    assert [error_of(b)["code"] for b in seen[:3]] == ["INVALID_REFRESH_TOKEN"] * 3, seen
    assert_rate_limited(error_of(seen[3]), at_most=60)
    colleague = await clients.new(address)
    refreshed = await colleague.execute(REFRESH, {"token": account.refresh_token})
    assert "errors" not in refreshed, refreshed
    logged_out = await colleague.execute(
        "mutation($t: String!) { logOut(refreshToken: $t) }", {"t": "junk"}
    )
    assert logged_out == {"data": {"logOut": False}}, logged_out


def text_file(i: int) -> tuple[str, bytes, str]:
    return (f"note-{i}.txt", f"Note {i}: {uuid.uuid4()}".encode(), "text/plain")


async def test_uploads_are_limited_per_organisation_by_file_count(
    clients: ClientFactory,
) -> None:
    client = await clients.new()
    owner = await client.sign_up()
    first = await upload(client.http, owner.access_token, [text_file(i) for i in range(3)])
    assert first.status_code == 200 and "errors" not in first.json(), first.text
    # Two more files do not fit in the one left.
    refused = await upload(client.http, owner.access_token, [text_file(3), text_file(4)])
    assert refused.status_code == 200
    assert_rate_limited(error_of(cast(JSON, refused.json())), at_most=30)
    one = await upload(client.http, owner.access_token, [text_file(5)])
    assert "errors" not in one.json(), one.text
    # Another organisation has its own budget.
    other = await client.sign_up()
    ok = await upload(client.http, other.access_token, [text_file(i) for i in range(6, 10)])
    assert "errors" not in ok.json(), ok.text


async def test_ask_and_answer_share_a_budget_per_user(clients: ClientFactory) -> None:
    client = await clients.new()
    account = await client.sign_up()
    colleague = await client.sign_up()
    missing_chat = str(uuid.uuid4())
    # The budget is spent before the service runs, so even a missing chat costs one.
    for _ in range(3):
        assert (
            await client.error_code(ASK, {"c": missing_chat}, account.access_token) == "NOT_FOUND"
        )
    refused = await client.execute(ASK, {"c": missing_chat}, account.access_token)
    assert_rate_limited(error_of(refused), at_most=20)
    request = gql(ANSWER)
    request.variable_values = {"c": missing_chat, "q": "Who built it?"}
    with pytest.raises(TransportQueryError) as streamed:
        async with Client(transport=transport(clients.server, account.access_token)) as session:
            async for _ in session.subscribe(request):
                pytest.fail("the answer stream started")
    assert streamed.value.errors is not None
    assert_rate_limited(cast(JSON, streamed.value.errors[0]["extensions"]), at_most=20)
    # Budgets are per user.
    assert await client.error_code(ASK, {"c": missing_chat}, colleague.access_token) == "NOT_FOUND"


async def test_searches_are_limited_per_user_and_each_alias_counts(
    clients: ClientFactory,
) -> None:
    client = await clients.new()
    account = await client.sign_up()
    colleague = await client.sign_up()
    # Two aliased searches spend two of the three.
    assert await client.execute(SEARCH_TWICE, {}, account.access_token) == {
        "data": {"first": [], "second": []}
    }
    assert "errors" not in await client.execute(SEARCH_ONCE, {}, account.access_token)
    refused = await client.execute(SEARCH_ONCE, {}, account.access_token)
    assert_rate_limited(error_of(refused), at_most=20)
    # Another address does not help: the budget is the user's.
    elsewhere = await clients.new()
    again = await elsewhere.execute(SEARCH_ONCE, {}, account.access_token)
    assert_rate_limited(error_of(again), at_most=20)
    # Budgets are per user.
    assert await client.execute(SEARCH_TWICE, {}, colleague.access_token) == {
        "data": {"first": [], "second": []}
    }


async def connect(server: ServerThread, token: str) -> ClientConnection:
    """A graphql-transport-ws socket, acknowledged (or closed by the server)."""
    ws = await websockets.connect(
        ws_url(server), subprotocols=[Subprotocol("graphql-transport-ws")]
    )
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    return ws


async def test_open_websockets_are_limited_per_user(clients: ClientFactory) -> None:
    account = await clients.account()
    other = await clients.account()
    first, second = [await connect(clients.server, account.access_token) for _ in range(2)]
    for ws in (first, second):
        assert json.loads(await ws.recv())["type"] == "connection_ack"
    third = await connect(clients.server, account.access_token)
    with pytest.raises(ConnectionClosed) as closed:
        await third.recv()
    # Not 4403 (clients take that for bad credentials): "too many", and when to retry.
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert_rate_limited(json.loads(closed.value.rcvd.reason), at_most=60)
    # Another user is not affected.
    theirs = await connect(clients.server, other.access_token)
    assert json.loads(await theirs.recv())["type"] == "connection_ack"
    await theirs.close()
    # A closed socket gives its slot back.
    await first.close()
    await released(clients.server, account.access_token)
    await second.close()


async def released(server: ServerThread, token: str) -> None:
    """Connect until the server has released a slot (it does so as the socket closes)."""
    for _ in range(100):
        ws = await connect(server, token)
        try:
            if json.loads(await ws.recv())["type"] == "connection_ack":
                return
        except ConnectionClosed:
            await asyncio.sleep(0.05)
        finally:
            await ws.close()
    pytest.fail("the closed socket's slot was never released")


async def test_legacy_protocol_is_told_why_the_socket_was_refused(
    clients: ClientFactory,
) -> None:
    account = await clients.account()
    held = [await connect(clients.server, account.access_token) for _ in range(2)]
    for ws in held:
        assert json.loads(await ws.recv())["type"] == "connection_ack"
    async with websockets.connect(
        ws_url(clients.server), subprotocols=[Subprotocol("graphql-ws")]
    ) as legacy:
        init = {
            "type": "connection_init",
            "payload": {"authorization": f"Bearer {account.access_token}"},
        }
        await legacy.send(json.dumps(init))
        error = json.loads(await legacy.recv())
    assert error["type"] == "connection_error"
    assert_rate_limited(error["payload"], at_most=60)
    for ws in held:
        await ws.close()


async def subscribe(ws: ClientConnection, operation_id: str) -> None:
    message = {"id": operation_id, "type": "subscribe", "payload": {"query": EVENTS}}
    await ws.send(json.dumps(message))


def refusal(message: JSON) -> JSON:
    """The extensions of a subscription refused with an error."""
    payload = message["payload"]
    errors = payload if message["type"] == "error" else cast(JSON, payload)["errors"]
    return cast(JSON, cast(list[JSON], errors)[0]["extensions"])


async def completed(ws: ClientConnection, refused: JSON) -> None:
    """A refusal sent as a result with errors is followed by its `complete`."""
    if refused["type"] == "next":
        assert json.loads(await ws.recv()) == {"id": refused["id"], "type": "complete"}


async def held_slots(redis: Redis, server: ServerThread, user_id: str, count: int) -> None:
    """Wait until the user holds ``count`` subscription slots (documentEvents sends
    nothing while no document changes, so Redis is where an open one shows)."""
    key = f"{server_prefix(server)}ratelimit:subscriptions_user:{hashed(user_id)}"
    for _ in range(600):
        if await redis.zcard(key) == count:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"the user never held {count} subscription slots")


async def test_open_subscriptions_are_limited_per_user_across_sockets(
    clients: ClientFactory, redis_url: str
) -> None:
    account = await clients.account()
    sockets = [await connect(clients.server, account.access_token) for _ in range(2)]
    for ws in sockets:
        assert json.loads(await ws.recv())["type"] == "connection_ack"
    redis = Redis.from_url(redis_url)
    try:
        await subscribe(sockets[0], "first")
        await held_slots(redis, clients.server, account.user_id, 1)
        await subscribe(sockets[1], "second")
        await held_slots(redis, clients.server, account.user_id, 2)
        await subscribe(sockets[0], "third")
        refused = json.loads(await sockets[0].recv())
        assert refused["id"] == "third", refused
        assert_rate_limited(refusal(refused), at_most=60)
        await completed(sockets[0], refused)
        # Completing an open one gives its slot back, and a new one gets it.
        await sockets[1].send(json.dumps({"id": "second", "type": "complete"}))
        await held_slots(redis, clients.server, account.user_id, 1)
        await subscribe(sockets[0], "fourth")
        await held_slots(redis, clients.server, account.user_id, 2)
        # Closing a socket ends its subscriptions and frees their slots.
        await sockets[0].close()
        await held_slots(redis, clients.server, account.user_id, 0)
    finally:
        await redis.aclose()
        for ws in sockets:
            await ws.close()
