"""Real `foundry serve` / `foundry worker` processes, an own redis-server, and clients.

System tests run the product as operators do: separate API and worker processes
sharing one PostgreSQL and one Redis. Fault tests also own those two servers, so
they can stop and start them without touching anything another test relies on.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import free_port
from tests.helpers import JSON

FOUNDRY = [sys.executable, "-m", "infrastructure.cli"]

# Fast password hashing: system tests sign up many clients.
FAST_HASHING = {
    "FOUNDRY_ARGON2_TIME_COST": "1",
    "FOUNDRY_ARGON2_MEMORY_COST_KIB": "1024",
    "FOUNDRY_ARGON2_PARALLELISM": "1",
}

MESSAGE_FIELDS = "id role content sources { index document { id filename } }"
CREATE_CHAT = "mutation { createChat { id } }"
ASK = f"mutation($c: ID!, $q: String!) {{ ask(chatId: $c, question: $q) {{ {MESSAGE_FIELDS} }} }}"
ANSWER = f"""
subscription($c: ID!, $q: String!) {{
  answer(chatId: $c, question: $q) {{
    __typename
    ... on AnswerSources {{ sources {{ index }} }}
    ... on AnswerToken {{ text }}
    ... on AnswerDone {{ message {{ {MESSAGE_FIELDS} }} }}
    ... on AnswerError {{ code errorMessage: message }}
  }}
}}
"""
DOCUMENT_EVENTS = "subscription { documentEvents { document { id status chunkCount } progress } }"
MESSAGES = """
query($id: ID!) {
  chat(id: $id) { messages(first: 100) { edges { node { id role content } } } }
}
"""


class ApiProcess:
    """`foundry serve` as a child process on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [*FOUNDRY, "serve", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"foundry serve exited:\n{self.log_text()[-4000:]}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=3).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"foundry serve was not ready:\n{self.log_text()[-4000:]}")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def transport(url: str, token: str) -> WebsocketsTransport:
    return WebsocketsTransport(
        url=url,
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )


async def stream_answer(ws_url: str, token: str, chat_id: str, question: str) -> list[JSON]:
    """Every event of one `answer` subscription, to its end."""
    request = gql(ANSWER)
    request.variable_values = {"c": chat_id, "q": question}
    events: list[JSON] = []
    async with Client(transport=transport(ws_url, token)) as session:
        async for result in session.subscribe(request):
            events.append(cast(JSON, result["answer"]))
    return events


@dataclass
class EventLog:
    """documentEvents received by one subscription."""

    events: list[JSON]

    def statuses(self, document_id: str) -> list[str]:
        return [
            str(cast(JSON, event["document"])["status"])
            for event in self.events
            if cast(JSON, event["document"])["id"] == document_id
        ]


@asynccontextmanager
async def document_events(
    api: ApiProcess, token: str, subscribers_before: int = 0
) -> AsyncIterator[EventLog]:
    """A documentEvents subscription on ``api``, listening once the server says so."""
    log = EventLog([])

    async def listen() -> None:
        async with Client(transport=transport(api.ws_url, token)) as session:
            async for result in session.subscribe(gql(DOCUMENT_EVENTS)):
                log.events.append(cast(JSON, result["documentEvents"]))

    task = asyncio.create_task(listen())
    try:
        await wait_for_subscribers(api, subscribers_before + 1, task)
        yield log
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


SUBSCRIBERS = re.compile(r"^foundry_document_event_subscribers (\S+)$", re.MULTILINE)


async def wait_for_subscribers(api: ApiProcess, count: int, task: asyncio.Task[None]) -> None:
    """Until the API's metrics show ``count`` open documentEvents subscriptions."""
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as http:
        for _ in range(300):
            if task.done():
                task.result()
                raise AssertionError("the subscription ended before it was listening")
            found = SUBSCRIBERS.search((await http.get("/metrics")).text)
            if found and float(found.group(1)) >= count:
                return  # counted once the process's Redis listener is subscribed
            await asyncio.sleep(0.1)
    raise AssertionError("the documentEvents subscription never reached the server")
