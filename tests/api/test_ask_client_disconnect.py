"""An `ask` over HTTP stops when its client hangs up: generation is cancelled (Gemini's
stream is closed) and no answer is stored, as when a subscriber leaves an `answer`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from infrastructure.container import BackendUrls
from infrastructure.observability.answer_metrics import ANSWER_OUTCOMES
from infrastructure.observability.metrics import HTTP_REQUESTS
from infrastructure.settings import Settings
from tests.api.test_answers_api import ASK, new_chat
from tests.api.test_gemini_answers_api import QUESTION, on_standin, stored_roles
from tests.conftest import ServerThread
from tests.gemini_standin import GeminiStandIn, Reply
from tests.helpers import GraphQLClient
from tests.knowledge import Corpus


@pytest.fixture(scope="module")
def gemini_server(
    settings: Settings, urls: BackendUrls, standin: GeminiStandIn
) -> Iterator[ServerThread]:
    server = ServerThread(on_standin(settings, standin, gemini_max_attempts=1), urls)
    server.start()
    yield server
    server.stop()


async def _until(condition: Callable[[], bool]) -> None:
    """Polls ``condition`` for up to 20 s (the caller asserts what it needs)."""
    for _ in range(1_000):
        if condition():
            return
        await asyncio.sleep(0.02)


async def _post_then_hang_up(
    server: ServerThread, token: str, body: bytes, hang_up_when: Callable[[], bool]
) -> None:
    """A POST /graphql on a connection of its own, closed once ``hang_up_when`` holds,
    without reading a byte of the response."""
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (
        "POST /graphql HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    await _until(hang_up_when)
    assert hang_up_when(), "the request never got that far"
    writer.close()
    await writer.wait_closed()


async def test_an_ask_whose_client_hangs_up_stops_generating_and_stores_nothing(
    gemini_server: ServerThread, standin: GeminiStandIn, corpus: Corpus
) -> None:
    standin.reset()
    token = corpus.owner.access_token
    async with httpx.AsyncClient(base_url=gemini_server.base_url, timeout=30) as http:
        api = GraphQLClient(http)
        chat_id = await new_chat(api, token)
        cancelled = ANSWER_OUTCOMES.labels("cancelled")._value.get()
        hung_up = HTTP_REQUESTS.labels("POST", "/graphql", "499")._value.get()
        # Five seconds of answer, unless the server hangs up on Gemini first.
        standin.script(Reply.ok(*["slowly "] * 50, delay_seconds=0.1))
        body = json.dumps({"query": ASK, "variables": {"c": chat_id, "q": QUESTION}}).encode()

        def generating() -> bool:
            return any(r.method == "streamGenerateContent" for r in standin.requests)

        await _post_then_hang_up(gemini_server, token, body, generating)

        await _until(lambda: bool(standin.stream_endings))
        assert standin.stream_endings == ["client_closed"]
        assert await stored_roles(api, token, chat_id) == ["USER"]
        assert ANSWER_OUTCOMES.labels("cancelled")._value.get() == cancelled + 1
        # Counted as the client's hang-up (nginx's 499), not as a server error.
        await _until(lambda: HTTP_REQUESTS.labels("POST", "/graphql", "499")._value.get() > hung_up)
        assert HTTP_REQUESTS.labels("POST", "/graphql", "499")._value.get() == hung_up + 1

        # The server carries on: the next ask on the chat is answered and stored.
        standin.script(Reply.ok("Margaret Vance ", "built it [1]."))
        await api.data(ASK, {"c": chat_id, "q": QUESTION}, token)
        assert await stored_roles(api, token, chat_id) == ["USER", "USER", "ASSISTANT"]
    standin.reset()
