"""Resilience: Redis and PostgreSQL restarted under load, and a graceful shutdown.

One `foundry serve` and one `foundry worker` run against a redis-server and an
embedded PostgreSQL owned by this module, so both can be stopped and started
mid-run. A few clients keep asking, reading and uploading meanwhile. While a
dependency is down requests fail fast with SERVICE_UNAVAILABLE (never INTERNAL,
never a hang); afterwards everything recovers without restarting a process, no
document stays PROCESSING and no chat message is lost or duplicated.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import httpx
import pytest
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from sqlalchemy import select

from infrastructure.database.engine import create_engine
from infrastructure.database.migrate import upgrade_to_head
from infrastructure.database.models import DocumentRow, MessageRow
from infrastructure.embedded import EmbeddedPostgres
from tests.conftest import TEST_JWT_SECRET, WorkerProcess
from tests.gemini_standin import GeminiStandIn, Reply, running_standin
from tests.helpers import JSON, Account, GraphQLClient, upload, upload_outcomes, wait_for_document
from tests.knowledge import LIGHTHOUSE
from tests.redis_server import RedisServer
from tests.system.conftest import (
    ANSWER,
    ASK,
    CREATE_CHAT,
    FAST_HASHING,
    MESSAGES,
    ApiProcess,
    document_events,
    transport,
)

log = logging.getLogger("tests.system.faults")
OK = "ok"
ME = "query { me { id } documents(first: 5) { totalCount } }"


@dataclass
class Stack:
    redis: RedisServer
    postgres: EmbeddedPostgres
    database_url: str
    standin: GeminiStandIn
    api: ApiProcess
    worker: WorkerProcess
    env: dict[str, str]  # the processes' environment, for a test's own extra API process
    root: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("faults")
    with ExitStack() as cleanup:
        standin = cleanup.enter_context(running_standin())
        redis = RedisServer(root)
        redis.start()
        cleanup.callback(redis.stop)
        postgres = EmbeddedPostgres(root / "pg", "foundry_faults")
        postgres.start()
        cleanup.callback(postgres.stop)
        asyncio.run(postgres.ensure_database())
        database_url = postgres.sqlalchemy_url()
        upgrade_to_head(database_url, "foundry_app")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRY_")}
        env.update(
            {
                **FAST_HASHING,
                "FOUNDRY_ENVIRONMENT": "test",
                "FOUNDRY_DATABASE_URL": database_url,
                "FOUNDRY_REDIS_URL": redis.url,
                "FOUNDRY_STATE_DIR": str(root / "state"),
                "FOUNDRY_REDIS_KEY_PREFIX": "foundry-faults:",
                "FOUNDRY_JWT_SECRET": TEST_JWT_SECRET,
                "FOUNDRY_LOG_JSON": "true",
                "FOUNDRY_WORKER_THREADS": "2",
                # A short-fused watchdog: jobs lost with Redis are re-queued within seconds.
                "FOUNDRY_WATCHDOG_INTERVAL_SECONDS": "1",
                "FOUNDRY_INGEST_PENDING_TIMEOUT_SECONDS": "6",
                "FOUNDRY_INGEST_PROCESSING_TIMEOUT_SECONDS": "20",
                "FOUNDRY_INGEST_MAX_ATTEMPTS": "5",
                "FOUNDRY_SHUTDOWN_GRACE_SECONDS": "20",
                # Answers come from the Gemini stand-in, so a test can make one stream slowly.
                "FOUNDRY_ANSWERER": "gemini",
                "FOUNDRY_GEMINI_API_KEY": "stand-in-key",
                "FOUNDRY_GEMINI_BASE_URL": standin.base_url,
                "FOUNDRY_LLM_BREAKER_FAILURE_THRESHOLD": "1000",
            }
        )
        api = ApiProcess(env, root / "api.log")
        cleanup.callback(api.stop)
        worker = WorkerProcess(env, root / "worker.log")
        cleanup.callback(worker.stop)
        api.wait_ready()
        worker.wait_started()
        yield Stack(redis, postgres, database_url, standin, api, worker, env, root)


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api.base_url, timeout=30) as client:
        yield client


@dataclass
class Asked:
    question: str
    message_id: str | None  # the stored answer's id, when the ask succeeded


@dataclass
class LoadClient:
    account: Account
    chat_id: str
    rounds: int = 0
    clean_rounds: int = 0  # rounds in which every request succeeded
    asked: list[Asked] = field(default_factory=list)


@dataclass
class Load:
    """A few clients reading, asking and uploading in a loop, recording every outcome."""

    http: httpx.AsyncClient
    clients: list[LoadClient]
    phase: str = "steady"
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # phase, operation, result
    uploaded: list[str] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        await asyncio.gather(*(self._client(client) for client in self.clients))

    async def _client(self, client: LoadClient) -> None:
        api = GraphQLClient(self.http)
        token = client.account.access_token
        while not self.stopping.is_set():
            client.rounds += 1
            number = client.rounds
            read = await self._record("read", self._graphql(api, ME, {}, token))
            results = [read[0]]
            question = f"Round {number}: when is the lamp of the lighthouse lit?"
            answer = await self._record(
                "ask", self._graphql(api, ASK, {"c": client.chat_id, "q": question}, token)
            )
            results.append(answer[0])
            if answer[0] == OK:
                message = cast(JSON, cast(JSON, answer[1])["ask"])
                client.asked.append(Asked(question, str(message["id"])))
            else:
                client.asked.append(Asked(question, None))
            if number % 2 == 0:
                body = f"Load note {uuid.uuid4().hex}: the lamp is lit at dusk. " * 40
                sent = await self._record("upload", self._upload(token, body.encode()))
                results.append(sent[0])
                if sent[0] == OK:
                    self.uploaded.append(str(sent[1]))
            if all(result == OK for result in results):
                client.clean_rounds += 1
            await asyncio.sleep(0.1)

    async def _record(
        self, operation: str, call: Awaitable[tuple[str, object]]
    ) -> tuple[str, object]:
        phase = self.phase
        try:
            result, value = await call
        except httpx.TimeoutException:
            result, value = "TIMEOUT", None
        except httpx.HTTPError as exc:
            result, value = f"TRANSPORT {type(exc).__name__}", None
        self.outcomes.append((phase, operation, result))
        return result, value

    async def _graphql(
        self, api: GraphQLClient, query: str, variables: JSON, token: str
    ) -> tuple[str, object]:
        response = await api.http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}"},
        )
        return _result(response)

    async def _upload(self, token: str, content: bytes) -> tuple[str, object]:
        response = await upload(self.http, token, [("load-note.txt", content, "text/plain")])
        result, data = _result(response)
        if result != OK:
            return result, None
        [outcome] = cast(list[JSON], cast(JSON, data)["uploadDocuments"])
        if outcome["error"] is not None:
            return str(cast(JSON, outcome["error"])["code"]), None
        return OK, cast(JSON, outcome["document"])["id"]

    async def wait_rounds(self, rounds: int, *, clean: bool) -> None:
        """Until every client completed ``rounds`` more rounds (all requests ok if clean)."""

        def done(client: LoadClient) -> int:
            return client.clean_rounds if clean else client.rounds

        targets = [done(client) + rounds for client in self.clients]
        for _ in range(1200):
            if all(done(c) >= t for c, t in zip(self.clients, targets, strict=True)):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the load made no progress in phase {self.phase}: {self.summary()}")

    def summary(self) -> Counter[tuple[str, str, str]]:
        return Counter(self.outcomes)


def _result(response: httpx.Response) -> tuple[str, object]:
    """`ok` or the error code; with the HTTP status unless it is 200 or a 503."""
    try:
        body = cast(JSON, response.json())
    except ValueError:
        return f"HTTP {response.status_code}", None
    errors = cast(list[JSON] | None, body.get("errors"))
    code = str(cast(JSON, errors[0].get("extensions") or {}).get("code")) if errors else OK
    if response.status_code not in (200, 503):
        return f"HTTP {response.status_code} {code}", None
    return code, body.get("data") if code == OK else None


async def readiness(http: httpx.AsyncClient) -> tuple[int, JSON]:
    response = await http.get("/readyz")
    return response.status_code, cast(JSON, response.json())


async def wait_readiness(http: httpx.AsyncClient, status: int) -> JSON:
    for _ in range(600):
        code, body = await readiness(http)
        if code == status:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status}")


async def outage(
    load: Load,
    http: httpx.AsyncClient,
    name: str,
    stop: Callable[[], None],
    start: Callable[[], None],
) -> None:
    """Stop a dependency under load, check readiness says so, start it, wait for recovery."""
    load.phase = f"{name} down"
    stop()
    try:
        body = await wait_readiness(http, 503)
        checks = cast(JSON, body["checks"])
        assert str(checks[name]).startswith("unreachable"), checks
        assert all(result == "ok" for check, result in checks.items() if check != name), checks
        await load.wait_rounds(2, clean=False)
    finally:
        start()  # a failed check must not leave the module's other tests without it
    load.phase = f"{name} back"
    await wait_readiness(http, 200)
    await load.wait_rounds(3, clean=True)


async def test_redis_and_postgres_restarts_under_load_fail_with_codes_and_recover(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    api = GraphQLClient(http)
    clients: list[LoadClient] = []
    for _ in range(3):
        account = await api.sign_up()
        chat = cast(JSON, (await api.data(CREATE_CHAT, None, account.access_token))["createChat"])
        clients.append(LoadClient(account, str(chat["id"])))
    owner = clients[0].account
    load = Load(http, clients)
    running = asyncio.create_task(load.run())
    try:
        await load.wait_rounds(2, clean=True)
        # Redis: sessions cannot be checked, jobs not queued, events not sent. It comes
        # back empty (no persistence), so queued jobs are lost too.
        await outage(load, http, "redis", stack.redis.stop, stack.redis.start)
        # PostgreSQL: stopped with its data, like a managed database's restart/failover.
        await outage(load, http, "database", stack.postgres.stop, stack.postgres.start)
        assert stack.postgres.sqlalchemy_url() == stack.database_url  # same socket again
    finally:
        load.stopping.set()
        await running

    summary = load.summary()
    log.info("load outcomes (phase, operation, result): %s", dict(summary))
    # Clear codes only: no INTERNAL, no hangs (TIMEOUT), no dropped connections.
    assert {result for _, _, result in load.outcomes} <= {OK, "SERVICE_UNAVAILABLE"}, summary
    for down in ("redis down", "database down"):
        assert (down, "read", "SERVICE_UNAVAILABLE") in summary, summary
        assert (down, "ask", "SERVICE_UNAVAILABLE") in summary, summary
    # Recovered by themselves: the same processes serve again.
    assert stack.api.process.poll() is None and stack.worker.process.poll() is None

    # Every upload, made before, between or after the faults, ends READY or FAILED with
    # a code; none is left PROCESSING (jobs lost with Redis are re-queued by the watchdog).
    assert len(load.uploaded) > 3
    for document_id in load.uploaded:
        status, error_code = await _final_status(stack, document_id)
        assert status == "ready" or (status == "failed" and error_code), (status, error_code)

    for client in clients:
        await assert_chat_complete(api, client)

    # The API's Redis listener came back: events flow to a new subscription.
    async with document_events(stack.api, owner.access_token) as received:
        [after] = await upload_outcomes(
            http, owner.access_token, [("after.txt", b"After the faults. " * 50, "text/plain")]
        )
        document_id = str(cast(JSON, after["document"])["id"])
        assert (await wait_for_document(api, owner.access_token, document_id))["status"] == "READY"
        for _ in range(100):
            if "READY" in received.statuses(document_id):
                break
            await asyncio.sleep(0.1)
    assert received.statuses(document_id)[-1] == "READY"


async def assert_chat_complete(api: GraphQLClient, client: LoadClient) -> None:
    """No chat message lost or duplicated: every answered ask is stored once, after its
    question; a failed ask left no answer (and its question at most once)."""
    data = await api.data(MESSAGES, {"id": client.chat_id}, client.account.access_token)
    edges = cast(list[JSON], cast(JSON, cast(JSON, data["chat"])["messages"])["edges"])
    nodes = [cast(JSON, edge["node"]) for edge in edges]
    ids = [str(node["id"]) for node in nodes]
    assert len(ids) == len(set(ids))
    answered = [asked.message_id for asked in client.asked if asked.message_id]
    assert [str(node["id"]) for node in nodes if node["role"] == "ASSISTANT"] == answered
    questions = [str(node["content"]) for node in nodes if node["role"] == "USER"]
    assert len(questions) == len(set(questions))
    for asked in client.asked:
        if asked.message_id is not None:
            assert nodes[ids.index(asked.message_id) - 1]["content"] == asked.question


async def _final_status(stack: Stack, document_id: str) -> tuple[str, str | None]:
    """The document once it left PENDING/PROCESSING (the watchdog runs every second)."""
    engine = create_engine(stack.database_url, 1, 5_000)
    try:
        for _ in range(900):
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(DocumentRow.status, DocumentRow.error_code).where(
                            DocumentRow.id == uuid.UUID(document_id)
                        )
                    )
                ).one()
            if row.status not in ("pending", "processing"):
                return str(row.status), row.error_code
            await asyncio.sleep(0.1)
        raise AssertionError(f"document {document_id} is still {row.status}")
    finally:
        await engine.dispose()


async def _chat_over_lighthouse(api: GraphQLClient, http: httpx.AsyncClient) -> tuple[str, str]:
    """A new account whose organisation holds the lighthouse document, READY, and a chat:
    its access token and the chat's id."""
    token = (await api.sign_up()).access_token
    [outcome] = await upload_outcomes(
        http, token, [("lighthouse.md", LIGHTHOUSE.encode(), "text/markdown")]
    )
    document_id = str(cast(JSON, outcome["document"])["id"])
    assert (await wait_for_document(api, token, document_id))["status"] == "READY"
    chat_id = str(cast(JSON, (await api.data(CREATE_CHAT, None, token))["createChat"])["id"])
    return token, chat_id


async def test_sigterm_lets_the_answer_in_flight_finish_and_refuses_new_connections(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    api = GraphQLClient(http)
    token, chat_id = await _chat_over_lighthouse(api, http)

    # An API process of its own on the stack's Redis and PostgreSQL: the module's stays
    # up for the other tests, whichever order they run in.
    stopping = ApiProcess(stack.env, stack.root / f"sigterm-api-{uuid.uuid4().hex[:8]}.log")
    try:
        stopping.wait_ready()
        pieces = [f"Piece {n} of a slow answer [1]. " for n in range(10)]
        stack.standin.reset()
        stack.standin.script(Reply.ok(*pieces, delay_seconds=0.4))
        request = gql(ANSWER)
        request.variable_values = {"c": chat_id, "q": "Who built the Skerry Point lighthouse?"}
        events: list[JSON] = []
        refused_before_done = False
        async with Client(transport=transport(stopping.ws_url, token)) as session:
            async for result in session.subscribe(request):
                event = cast(JSON, result["answer"])
                events.append(event)
                if event["__typename"] == "AnswerToken" and len(events) == 2:
                    stopping.terminate()  # SIGTERM with the answer mid-stream
                    refused_before_done = await _refuses_connections(stopping)
        exit_code = stopping.process.wait(timeout=60)
    finally:
        stopping.stop()

    kinds = [event["__typename"] for event in events]
    assert kinds[0] == "AnswerSources" and kinds[-1] == "AnswerDone", kinds
    assert refused_before_done  # new connections were refused while the answer streamed
    streamed = "".join(
        str(event["text"]) for event in events if event["__typename"] == "AnswerToken"
    )
    assert streamed == "".join(pieces)
    message = cast(JSON, events[-1]["message"])
    assert exit_code == 0
    assert "shutdown.draining_answers" in stopping.log_text()

    # The answer was stored before the process stopped.
    engine = create_engine(stack.database_url, 1, 5_000)
    try:
        async with engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(MessageRow.role, MessageRow.content).where(
                        MessageRow.chat_id == uuid.UUID(chat_id)
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert sorted((row.role, row.content) for row in stored) == sorted(
        [("assistant", streamed), ("user", "Who built the Skerry Point lighthouse?")]
    )
    assert str(message["content"]) == streamed
    # The module's API process was not the one stopped: it still serves.
    assert stack.api.process.poll() is None
    assert (await readiness(http))[0] == 200


async def _refuses_connections(api: ApiProcess) -> bool:
    """Whether the listening socket closes (a new client's connect refused) within a few
    seconds.

    A probe that connects just before the listener closes sits in the kernel's accept
    queue, which the close resets: it sees a read error or a disconnect with no response
    (a CI run saw it), and the next probe finds the port closed. Only a refused connect
    counts: a server that accepted and dropped connections would not pass.
    """
    for _ in range(100):
        try:
            async with httpx.AsyncClient(timeout=2) as fresh:
                await fresh.get(f"{api.base_url}/healthz")
        except httpx.ConnectError:
            return True
        except (httpx.ReadError, httpx.RemoteProtocolError):
            pass  # reset in the accept queue as the listener closed: probe again
        await asyncio.sleep(0.05)
    return False


async def test_sigterm_lets_an_ask_over_a_websocket_finish_and_refuses_new_asks(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """gql's WebsocketsTransport (as urql and graphql-ws clients can) sends the `ask`
    mutation over the socket: a SIGTERM mid-answer lets it finish and be stored, and a
    new ask on the open socket is refused with SERVICE_UNAVAILABLE meanwhile."""
    api = GraphQLClient(http)
    token, chat_id = await _chat_over_lighthouse(api, http)
    question = "Who kept the Skerry Point lighthouse?"

    stopping = ApiProcess(stack.env, stack.root / f"sigterm-ask-{uuid.uuid4().hex[:8]}.log")
    try:
        stopping.wait_ready()
        pieces = [f"Piece {n} of a slow answer [1]. " for n in range(10)]
        stack.standin.reset()
        stack.standin.script(Reply.ok(*pieces, delay_seconds=0.4))
        request = gql(ASK)
        request.variable_values = {"c": chat_id, "q": question}
        async with Client(transport=transport(stopping.ws_url, token)) as session:
            asking = asyncio.create_task(session.execute(request))
            for _ in range(300):  # until the answer is being generated
                if any(r.method == "streamGenerateContent" for r in stack.standin.requests):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the ask never reached the model")
            assert not asking.done()
            stopping.terminate()  # SIGTERM with the answer mid-way
            for _ in range(300):  # until the server drains
                if "shutdown.draining_answers" in stopping.log_text():
                    break
                await asyncio.sleep(0.05)
            again = gql(ASK)
            again.variable_values = {"c": chat_id, "q": "And who built it?"}
            with pytest.raises(TransportQueryError) as refused:
                await session.execute(again)
            result = await asking
        exit_code = stopping.process.wait(timeout=60)
    finally:
        stopping.stop()

    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    answer = cast(JSON, result["ask"])
    assert answer["content"] == "".join(pieces)
    assert exit_code == 0
    data = await api.data(MESSAGES, {"id": chat_id}, token)
    edges = cast(list[JSON], cast(JSON, cast(JSON, data["chat"])["messages"])["edges"])
    stored = [(cast(JSON, e["node"])["role"], cast(JSON, e["node"])["content"]) for e in edges]
    assert stored == [("USER", question), ("ASSISTANT", "".join(pieces))]
