"""DrainingServer's shutdown stays within one grace period: uvicorn waits for the
remaining requests only as long as draining the answers has left of it. HTTP keep-alive
connections take no new requests once the drain has begun: idle ones are closed then,
an `ask` already running over one finishes and is stored, and a mutation that still
reaches the API over one is refused with 503 SERVICE_UNAVAILABLE."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import cast

import httpx
import uvicorn
from pydantic import SecretStr
from sqlalchemy import select
from starlette.types import Receive, Scope, Send

from domain.entities import Principal, Role
from infrastructure.container import BackendUrls, Container
from infrastructure.database.models import MessageRow
from infrastructure.http.app import create_app
from infrastructure.http.draining import AnswerDrain, DrainingServer, answer_drain_of
from infrastructure.http.server_config import uvicorn_config
from infrastructure.settings import Settings
from tests.conftest import free_port
from tests.gemini_standin import GeminiStandIn, Reply
from tests.helpers import JSON, GraphQLClient
from tests.integration.test_chunk_search import DIMENSIONS, document_with_chunks, unit

GRACE_SECONDS = 1


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _started(server: uvicorn.Server) -> threading.Thread:
    """``server`` running in a thread of its own, once it accepts connections."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    return thread


def _serving(drain: AnswerDrain, grace_seconds: int) -> tuple[DrainingServer, threading.Thread]:
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=free_port(),
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=grace_seconds,
    )
    server = DrainingServer(config, drain, grace_seconds)
    return server, _started(server)


def _served_then_stopped(drain: AnswerDrain) -> DrainingServer:
    """A DrainingServer that started and was then asked to stop, as SIGTERM does."""
    server, thread = _serving(drain, GRACE_SECONDS)
    server.should_exit = True
    thread.join(timeout=30)
    assert not thread.is_alive()
    return server


def test_an_answer_that_used_the_whole_grace_leaves_uvicorn_no_more_time() -> None:
    drain = AnswerDrain()
    drain.started()  # an answer that does not finish within the grace period
    server = _served_then_stopped(drain)
    assert server.config.timeout_graceful_shutdown == 0


def test_with_no_answer_in_flight_uvicorn_has_the_whole_grace_period() -> None:
    server = _served_then_stopped(AnswerDrain())
    assert server.config.timeout_graceful_shutdown == GRACE_SECONDS


def test_an_idle_keep_alive_connection_is_closed_when_the_drain_begins() -> None:
    """Left open until the drain ended, it carried new requests (a whole `ask`) that the
    drain neither refused nor waited for, cut when the grace period ran out."""
    drain = AnswerDrain()
    drain.started()  # an answer over a WebSocket, still streaming: the drain waits
    server, thread = _serving(drain, grace_seconds=5)
    try:
        with socket.create_connection(("127.0.0.1", server.config.port), timeout=5) as idle:
            idle.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert idle.recv(4096).startswith(b"HTTP/1.1 200 ")  # kept alive
            server.should_exit = True
            _wait_for(lambda: drain.closing)
            idle.settimeout(2)  # well before the drain's end (5 s)
            assert idle.recv(4096) == b"", "the server closed the idle connection"
            assert thread.is_alive() and drain.in_flight == 1  # the drain is still waiting
    finally:
        drain.finished()
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


def _wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# An `ask` over HTTP runs for as long as its answer; the drain lets one running finish.
ASK_GRACE_SECONDS = 8
ASK = "mutation($c: ID!, $q: String!) { ask(chatId: $c, question: $q) { role content } }"
QUESTION = "Who built the Skerry Point lighthouse?"
ANSWER_PIECES = ["Margaret Vance "] + ["slowly "] * 20 + ["built it [1]."]  # about 2 s
REFUSED = {
    "errors": [
        {
            "message": "The server is shutting down; connect again and ask again.",
            "extensions": {"code": "SERVICE_UNAVAILABLE"},
        }
    ]
}


def _request(body: object, token: str) -> bytes:
    """A POST /graphql as written on a keep-alive connection."""
    data = json.dumps(body).encode()
    head = (
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], object]:
    """The next response on the connection: status, headers, JSON body."""
    status_line = await reader.readline()
    assert status_line, "the server closed the connection without a response"
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, json.loads(body)


async def _until(condition: Callable[[], bool]) -> None:
    """Polls ``condition`` for up to a minute (the model loads on the first question)."""
    for _ in range(6_000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def _answering_server(
    settings: Settings, urls: BackendUrls, standin: GeminiStandIn
) -> tuple[DrainingServer, AnswerDrain, int]:
    """The app as `foundry serve` runs it, answering with the Gemini stand-in."""
    configured = settings.model_copy(
        update={
            "host": "127.0.0.1",
            "port": free_port(),
            "shutdown_grace_seconds": ASK_GRACE_SECONDS,
            "answerer": "gemini",
            "gemini_api_key": SecretStr("stand-in-key"),
            "gemini_base_url": standin.base_url,
            "gemini_max_attempts": 1,
            "llm_breaker_failure_threshold": 1_000,
            # The seeded passage is a source whatever the question's embedding.
            "answer_min_similarity": -1.0,
        }
    )
    app = create_app(configured, urls)
    drain = answer_drain_of(app)
    server = DrainingServer(uvicorn_config(app, configured), drain, ASK_GRACE_SECONDS)
    return server, drain, configured.port


async def _owner_with_two_chats(port: int, container: Container) -> tuple[str, str, str]:
    """A new account whose organisation has one passage: (token, chat, chat)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        api = GraphQLClient(http)
        account = await api.sign_up()
        owner = Principal(
            uuid.UUID(account.user_id), uuid.UUID(account.organization_id), Role.ADMIN, uuid.uuid4()
        )
        passage = "Margaret Vance built the Skerry Point lighthouse in 1874."
        await document_with_chunks(container, owner, [unit([1.0] * DIMENSIONS)], texts=[passage])
        token = account.access_token
        created = [await api.data("mutation { createChat { id } }", token=token) for _ in "ab"]
    first, second = (str(cast(JSON, data["createChat"])["id"]) for data in created)
    return token, first, second


async def _stored_roles(container: Container, chat_id: str) -> list[str]:
    async with container.session_factory() as session:
        roles = await session.scalars(
            select(MessageRow.role)
            .where(MessageRow.chat_id == uuid.UUID(chat_id))
            .order_by(MessageRow.created_at)
        )
    return list(roles)


async def test_an_http_ask_running_at_shutdown_is_answered_and_one_behind_it_refused(
    settings: Settings, urls: BackendUrls, standin: GeminiStandIn, container: Container
) -> None:
    server, drain, port = _answering_server(settings, urls, standin)
    thread = _started(server)
    writers: list[asyncio.StreamWriter] = []
    try:
        token, answered, refused = await _owner_with_two_chats(port, container)
        # A keep-alive connection, idle when the shutdown begins.
        idle, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        writer.write(_request({"query": "{ __typename }"}, token))
        assert (await _response(idle))[0] == 200
        # An ask, and a second one pipelined behind it on the same connection: the
        # server reads that one once the first has been answered.
        standin.reset()
        standin.script(Reply.ok(*ANSWER_PIECES, delay_seconds=0.1))
        busy, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        writer.write(
            _request({"query": ASK, "variables": {"c": answered, "q": QUESTION}}, token)
            + _request({"query": ASK, "variables": {"c": refused, "q": QUESTION}}, token)
        )
        await _until(lambda: any(r.method == "streamGenerateContent" for r in standin.requests))

        stopping = time.monotonic()
        server.should_exit = True  # what SIGTERM does
        await _until(lambda: drain.closing)
        counted = drain.in_flight
        # The idle connection is closed now, while the ask is still being answered.
        async with asyncio.timeout(2):
            assert await idle.read() == b""
        assert not standin.stream_endings, "the answer is still streaming"

        status, _, first = await _response(busy)
        assert status == 200
        assert first == {"data": {"ask": {"role": "ASSISTANT", "content": "".join(ANSWER_PIECES)}}}
        status, headers, second = await _response(busy)
        assert status == 503, second
        assert headers["connection"] == "close"
        assert second == REFUSED
        assert await busy.read() == b""
        # The shutdown waited for the ask (it counted it), and ended within the grace.
        assert counted == 1
        await asyncio.to_thread(thread.join, ASK_GRACE_SECONDS + 10)
        assert not thread.is_alive()
        assert time.monotonic() - stopping < ASK_GRACE_SECONDS
    finally:
        for writer in writers:
            writer.close()
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
        standin.reset()
    assert await _stored_roles(container, answered) == ["user", "assistant"]
    assert await _stored_roles(container, refused) == []  # not even the question
