"""Graceful shutdown bookkeeping: which operations are answers, counting them (and GraphQL
requests over HTTP), refusing new ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import pytest
from graphql import parse
from starlette.types import Message, Receive, Scope, Send

from infrastructure.http.draining import (
    AnswerDrain,
    DrainingHTTP,
    DrainingWebSockets,
    is_answer_subscription,
    is_drained_operation,
)
from schema.build import SchemaLimits

ANSWER = 'subscription A($c: ID!) { answer(chatId: $c, question: "q") { __typename } }'
EVENTS = "subscription { documentEvents { progress } }"
ASK = 'mutation Ask { ask(chatId: "c", question: "q") { id } }'


LIMITS = SchemaLimits(max_tokens=100, max_chars=1_000)


def draining(app: object, drain: AnswerDrain) -> DrainingWebSockets:
    return DrainingWebSockets(app, drain, LIMITS, LIMITS.document_cache())  # type: ignore[arg-type]


def test_answer_subscriptions_are_recognised() -> None:
    assert is_answer_subscription({"query": ANSWER}, parse)
    assert not is_answer_subscription({"query": EVENTS}, parse)
    assert not is_answer_subscription({"query": "query { me { id } }"}, parse)
    assert not is_answer_subscription({"query": "subscription {"}, parse)  # unparsable
    assert not is_answer_subscription({"query": 3}, parse)
    assert not is_answer_subscription(None, parse)
    both = f"{ANSWER} subscription B {{ documentEvents {{ progress }} }}"
    assert is_answer_subscription({"query": both, "operationName": "A"}, parse)
    assert not is_answer_subscription({"query": both, "operationName": "B"}, parse)
    assert not is_answer_subscription({"query": both}, parse)  # ambiguous without a name
    inline = (
        'subscription { ... on Subscription { answer(chatId: "c", question: "q") { __typename } } }'
    )
    named = (
        "subscription { ...Ask } "
        'fragment Ask on Subscription { ... { answer(chatId: "c", question: "q") { __typename } } }'
    )
    assert is_answer_subscription({"query": inline}, parse)
    assert is_answer_subscription({"query": named}, parse)
    looping = (
        "subscription { ...A } fragment A on Subscription { ...A documentEvents { progress } }"
    )
    assert not is_answer_subscription({"query": looping}, parse)


async def test_texts_over_the_schemas_limits_are_not_parsed() -> None:
    """The drain reads frames before the socket is authenticated: it parses within the
    schema's limits, through the schema's cache."""
    documents = LIMITS.document_cache()
    drain = AnswerDrain()
    inner = FakeGraphQLSocket()
    incoming: asyncio.Queue[Message] = asyncio.Queue()
    app = DrainingWebSockets(inner, drain, LIMITS, documents)

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    connection = asyncio.create_task(app({"type": "websocket"}, incoming.get, send))
    long_answer = ANSWER.replace("{ __typename }", "{ __typename" + " " * 1_000 + "}")
    many_tokens = ANSWER.replace("__typename", "__typename " * 100)
    await incoming.put(frame("subscribe", "3", long_answer))
    await incoming.put(frame("subscribe", "4", many_tokens))
    await asyncio.wait_for(inner.both_seen.wait(), 10)
    assert drain.in_flight == 0  # neither was read as an answer
    assert len(documents) == 0
    await incoming.put(frame("subscribe", "6", ANSWER))
    await incoming.put({"type": "websocket.disconnect", "code": 1000})
    await connection
    assert len(documents) == 1  # the same entry the schema's parse will find


async def test_a_reused_operation_id_is_counted_once() -> None:
    drain = AnswerDrain()
    inner = FakeGraphQLSocket()
    incoming: asyncio.Queue[Message] = asyncio.Queue()
    connection = asyncio.create_task(
        draining(inner, drain)({"type": "websocket"}, incoming.get, send_nothing)
    )
    await incoming.put(frame("subscribe", "5", ANSWER))
    await incoming.put(frame("subscribe", "5", ANSWER))  # strawberry closes with 4409
    await asyncio.wait_for(inner.both_seen.wait(), 10)
    assert drain.in_flight == 1
    await incoming.put({"type": "websocket.disconnect", "code": 1000})
    await connection
    assert drain.in_flight == 0


async def test_only_the_accepted_protocols_start_frames_count() -> None:
    """strawberry's legacy graphql-ws handler ignores a graphql-transport-ws "subscribe"
    without answering it: counted, it would stay "in flight" until the socket closed
    (and every distinct id would be kept)."""
    drain = AnswerDrain()
    received: list[str] = []
    done = asyncio.Event()

    async def legacy_socket(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.accept", "subprotocol": "graphql-ws"})
        while (message := await receive())["type"] != "websocket.disconnect":
            received.append(json.loads(message["text"])["type"])
            if len(received) == 2:
                done.set()

    async def sent(message: Message) -> None:
        return None

    incoming: asyncio.Queue[Message] = asyncio.Queue()
    connection = asyncio.create_task(
        draining(legacy_socket, drain)({"type": "websocket"}, incoming.get, sent)
    )
    await incoming.put(frame("subscribe", "x", ANSWER))  # not this protocol's: ignored
    await incoming.put(frame("start", "y", ANSWER))
    await asyncio.wait_for(done.wait(), 10)
    assert received == ["subscribe", "start"]
    assert drain.in_flight == 1  # only "start"
    await incoming.put({"type": "websocket.disconnect", "code": 1000})
    await connection
    assert drain.in_flight == 0


async def send_nothing(message: Message) -> None:
    raise AssertionError("nothing is sent")


def frame(kind: str, operation_id: str, query: str | None = None) -> Message:
    payload: dict[str, object] = {"type": kind, "id": operation_id}
    if query is not None:
        payload["payload"] = {"query": query}
    return {"type": "websocket.receive", "text": json.dumps(payload)}


class FakeGraphQLSocket:
    """Like strawberry: keeps reading frames while operations run; operation "1" completes
    when told to."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.both_seen = asyncio.Event()
        self.finish = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def complete_later() -> None:
            await self.finish.wait()
            complete = json.dumps({"type": "complete", "id": "1"})
            await send({"type": "websocket.send", "text": complete})

        running: list[asyncio.Task[None]] = []
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await asyncio.gather(*running)
                return
            body = json.loads(message["text"])
            self.seen.append(f"{body['type']}:{body['id']}")
            if len(self.seen) == 2:
                self.both_seen.set()
            if body["type"] == "subscribe" and body["id"] == "1":
                running.append(asyncio.create_task(complete_later()))


async def test_answers_in_flight_are_counted_and_new_ones_refused_while_closing() -> None:
    drain = AnswerDrain()
    inner = FakeGraphQLSocket()
    incoming: asyncio.Queue[Message] = asyncio.Queue()
    sent: list[dict[str, object]] = []
    refused = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append(json.loads(message["text"]))
        refused.set()

    app = draining(inner, drain)
    connection = asyncio.create_task(app({"type": "websocket"}, incoming.get, send))
    await incoming.put(frame("subscribe", "0", EVENTS))
    await incoming.put(frame("subscribe", "1", ANSWER))
    await asyncio.wait_for(inner.both_seen.wait(), 10)
    assert drain.in_flight == 1  # the answer, not the documentEvents subscription

    drain.closing = True
    waiting = asyncio.create_task(drain.wait_idle(30))
    await incoming.put(frame("subscribe", "2", ANSWER))  # refused, never reaches the app
    await asyncio.wait_for(refused.wait(), 10)
    assert sent[0]["id"] == "2" and sent[0]["type"] == "error"
    assert sent[0]["payload"] == [
        {
            "message": "The server is shutting down; connect again and ask again.",
            "extensions": {"code": "SERVICE_UNAVAILABLE"},
        }
    ]
    assert not waiting.done()

    inner.finish.set()  # the answer completes
    assert await asyncio.wait_for(waiting, 10) is True
    assert drain.in_flight == 0
    await incoming.put({"type": "websocket.disconnect", "code": 1000})
    await connection
    assert inner.seen == ["subscribe:0", "subscribe:1"]


async def test_a_dropped_connection_releases_its_answers() -> None:
    drain = AnswerDrain()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise ConnectionResetError

    incoming: asyncio.Queue[Message] = asyncio.Queue()
    await incoming.put(frame("start", "7", ANSWER))  # the legacy graphql-ws protocol

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    with contextlib.suppress(ConnectionResetError):
        await draining(app, drain)({"type": "websocket"}, incoming.get, send)
    assert drain.in_flight == 0
    assert await drain.wait_idle(0) is True


def test_mutations_are_drained_as_answers_are() -> None:
    """`ask` answers over a socket too (gql's WebsocketsTransport, urql, graphql-ws)."""
    assert is_drained_operation({"query": ANSWER}, parse)
    assert is_drained_operation({"query": ASK}, parse)
    assert is_drained_operation({"query": 'mutation { createChat(title: "t") { id } }'}, parse)
    assert not is_drained_operation({"query": EVENTS}, parse)
    assert not is_drained_operation({"query": "query { me { id } }"}, parse)
    both = f"{ASK} query Me {{ me {{ id }} }}"
    assert is_drained_operation({"query": both, "operationName": "Ask"}, parse)
    assert not is_drained_operation({"query": both, "operationName": "Me"}, parse)
    assert not is_drained_operation({"query": None}, parse)


async def test_an_ask_over_a_socket_is_waited_for_and_refused_while_closing() -> None:
    drain = AnswerDrain()
    inner = FakeGraphQLSocket()
    incoming: asyncio.Queue[Message] = asyncio.Queue()
    sent: list[dict[str, object]] = []
    refused = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append(json.loads(message["text"]))
        refused.set()

    connection = asyncio.create_task(
        draining(inner, drain)({"type": "websocket"}, incoming.get, send)
    )
    await incoming.put(frame("subscribe", "0", "query { me { id } }"))
    await incoming.put(frame("subscribe", "1", ASK))
    await asyncio.wait_for(inner.both_seen.wait(), 10)
    assert drain.in_flight == 1  # the ask, not the query

    drain.closing = True
    waiting = asyncio.create_task(drain.wait_idle(30))
    await incoming.put(frame("subscribe", "2", ASK))  # refused, never reaches the app
    await asyncio.wait_for(refused.wait(), 10)
    assert sent[0]["id"] == "2" and sent[0]["type"] == "error"
    assert not waiting.done()
    inner.finish.set()  # the ask's answer is stored and sent
    assert await asyncio.wait_for(waiting, 10) is True
    await incoming.put({"type": "websocket.disconnect", "code": 1000})
    await connection
    assert inner.seen == ["subscribe:0", "subscribe:1"]


class FakeLegacySocket:
    """Like strawberry's graphql-ws handler: a start reusing the id of a running operation
    cancels it (which sends its complete) and runs the new one; "finish" completes it."""

    def __init__(self) -> None:
        self.starts = 0
        self.restarted = asyncio.Event()
        self.finish = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.accept", "subprotocol": "graphql-ws"})

        async def complete(operation_id: str) -> None:
            text = json.dumps({"type": "complete", "id": operation_id})
            await send({"type": "websocket.send", "text": text})

        running: asyncio.Task[None] | None = None
        while (message := await receive())["type"] != "websocket.disconnect":
            body = json.loads(message["text"])
            if body["type"] != "start":
                continue
            self.starts += 1
            if running is not None:  # the same id again: the old one stops
                running.cancel()
                await complete(body["id"])
            running = asyncio.create_task(self._run(body["id"], complete))
            if self.starts == 2:
                self.restarted.set()
        if running is not None:
            await running

    async def _run(self, operation_id: str, complete: Callable[[str], Awaitable[None]]) -> None:
        await self.finish.wait()
        await complete(operation_id)


@pytest.mark.parametrize("first", [ANSWER, EVENTS], ids=["answer", "events"])
async def test_an_answer_restarted_under_its_id_on_graphql_ws_is_still_drained(
    first: str,
) -> None:
    """graphql-ws lets a start reuse a running operation's id: the old operation (an
    answer or not) stops, its complete comes, and the new answer runs: waited for too."""
    drain = AnswerDrain()
    inner = FakeLegacySocket()
    incoming: asyncio.Queue[Message] = asyncio.Queue()

    async def sent(message: Message) -> None:
        return None

    connection = asyncio.create_task(
        draining(inner, drain)({"type": "websocket"}, incoming.get, sent)
    )
    await incoming.put(frame("start", "1", first))
    await incoming.put(frame("start", "1", ANSWER))
    await asyncio.wait_for(inner.restarted.wait(), 10)
    assert drain.in_flight == 1  # the new answer, after the old one's complete
    inner.finish.set()
    assert await drain.wait_idle(10) is True
    await incoming.put({"type": "websocket.disconnect", "code": 1000})
    await connection
    assert drain.in_flight == 0


async def _receive_nothing() -> Message:
    raise AssertionError("the body is not read")


async def test_an_http_request_is_counted_while_it_runs() -> None:
    """An `ask` over HTTP running when the shutdown begins is waited for, however it ends."""
    drain = AnswerDrain()
    release = asyncio.Event()
    running = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        running.set()
        await release.wait()
        raise ConnectionResetError  # ended by an error: still released

    request = asyncio.create_task(
        DrainingHTTP(app, drain)({"type": "http"}, _receive_nothing, send_nothing)
    )
    await asyncio.wait_for(running.wait(), 10)
    assert drain.in_flight == 1
    drain.closing = True
    waiting = asyncio.create_task(drain.wait_idle(30))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    release.set()
    with pytest.raises(ConnectionResetError):
        await request
    assert await asyncio.wait_for(waiting, 10) is True
    assert drain.in_flight == 0


async def test_a_new_http_request_is_refused_while_closing() -> None:
    drain = AnswerDrain()
    drain.closing = True
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("a refused request never reaches the app")

    async def send(message: Message) -> None:
        sent.append(message)

    await DrainingHTTP(app, drain)({"type": "http"}, _receive_nothing, send)
    start, body = sent
    assert start["status"] == 503
    headers = dict(start["headers"])
    assert headers[b"connection"] == b"close"  # the client takes its next one elsewhere
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    assert json.loads(body["body"]) == {
        "errors": [
            {
                "message": "The server is shutting down; connect again and ask again.",
                "extensions": {"code": "SERVICE_UNAVAILABLE"},
            }
        ]
    }
    assert drain.in_flight == 0
