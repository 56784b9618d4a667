"""A local stand-in for the Gemini REST API's embeddings endpoint, for the real google-genai client.

It speaks the shape the SDK (google/genai/models.py, ``AsyncModels._embed_content``
with ``_EmbedContentParametersPrivate_to_mldev``) sends in Gemini Developer API
mode: ``POST /{api_version}/models/{model}:batchEmbedContents`` (``v1`` in SDK 3.x) with

    {"requests": [{"content": {"parts": [{"text": ...}]}, "taskType": ...,
                   "outputDimensionality": ..., "model": "models/..."}]}

and answers ``{"embeddings": [{"values": [...]}]}``. Errors use Google's error
envelope. Each test scripts the next responses with :meth:`GeminiStandIn.script`
and reads what arrived in :attr:`GeminiStandIn.requests`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, cast

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

JSONObject = dict[str, object]

# Every vector the stand-in returns has this norm, so a test can tell whether
# the adapter normalised it (the real API only normalises 3072-dim output).
RAW_NORM = 7.5

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: ``ok`` embeds, ``error`` returns ``status``, ``hang`` sleeps first."""

    kind: Literal["ok", "error", "hang"] = "ok"
    status: int = 200
    hang_seconds: float = 0.0

    @staticmethod
    def ok() -> Reply:
        return Reply()

    @staticmethod
    def error(status: int) -> Reply:
        return Reply("error", status)

    @staticmethod
    def hang(seconds: float) -> Reply:
        """Sleep ``seconds`` before answering (successfully), to trip client timeouts."""
        return Reply("hang", 200, seconds)


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    path: str
    api_version: str
    model: str
    api_key: str | None
    body: JSONObject

    @property
    def items(self) -> list[JSONObject]:
        return cast(list[JSONObject], self.body.get("requests", []))

    @property
    def texts(self) -> list[str]:
        return [_text_of(item) for item in self.items]

    @property
    def task_types(self) -> set[object]:
        return {item.get("taskType") for item in self.items}

    @property
    def dimensionalities(self) -> set[object]:
        return {item.get("outputDimensionality") for item in self.items}


def fake_vector(text: str, dimensions: int) -> list[float]:
    """Deterministic per text, norm RAW_NORM (deliberately not unit length)."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((byte - 127.5) / 127.5 for byte in digest)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(math.fsum(v * v for v in values))
    return [RAW_NORM * v / norm for v in values]


def _text_of(item: JSONObject) -> str:
    content = cast(JSONObject, item.get("content", {}))
    parts = cast(list[JSONObject], content.get("parts", []))
    return "".join(str(part.get("text", "")) for part in parts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class GeminiStandIn:
    """uvicorn + Starlette in a background thread on a free 127.0.0.1 port."""

    port: int = field(default_factory=_free_port)
    requests: list[ReceivedRequest] = field(default_factory=list)
    _replies: deque[Reply] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies`` in order, then succeed again."""
        with self._lock:
            self._replies.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self.requests.clear()

    def start(self) -> None:
        app = Starlette(
            routes=[Route("/{version}/models/{call:path}", self._handle, methods=["POST"])]
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("Gemini stand-in did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    async def _handle(self, request: Request) -> JSONResponse:
        call = request.path_params["call"]
        model, _, method = call.partition(":")
        body = cast(JSONObject, await request.json())
        received = ReceivedRequest(
            path=request.url.path,
            api_version=request.path_params["version"],
            model=model,
            api_key=request.headers.get("x-goog-api-key"),
            body=body,
        )
        with self._lock:
            self.requests.append(received)
            reply = self._replies.popleft() if self._replies else Reply.ok()
        if method != "batchEmbedContents":
            return _error(404, f"stand-in does not implement {method}")
        if reply.kind == "error":
            return _error(reply.status, f"scripted {reply.status}")
        if reply.kind == "hang" and not await _wait_unless_disconnected(
            request, reply.hang_seconds
        ):
            return JSONResponse({}, status_code=499)  # the client gave up; nobody reads this
        embeddings = [
            {"values": fake_vector(_text_of(item), _dimensions(item))} for item in received.items
        ]
        return JSONResponse({"embeddings": embeddings})


async def _wait_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; False as soon as the client hangs up (so shutdown is not held up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return False
        await asyncio.sleep(0.02)
    return True


def _dimensions(item: JSONObject) -> int:
    value = item.get("outputDimensionality", 3072)
    return value if isinstance(value, int) else 3072


def _error(status: int, message: str) -> JSONResponse:
    envelope = {
        "error": {
            "code": status,
            "message": message,
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }
    return JSONResponse(envelope, status_code=status)


@contextmanager
def running_standin() -> Iterator[GeminiStandIn]:
    standin = GeminiStandIn()
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
