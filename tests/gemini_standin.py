"""A local stand-in for the Gemini REST API, for the real google-genai client.

It speaks the shapes the SDK (google/genai/models.py, ``AsyncModels``) sends in
Gemini Developer API mode:

- ``POST /{api_version}/models/{model}:batchEmbedContents`` (``v1`` in SDK 3.x) with
  ``{"requests": [{"content": {"parts": [{"text": ...}]}, "taskType": ...,
  "outputDimensionality": ..., "model": "models/..."}]}``, answered with
  ``{"embeddings": [{"values": [...]}]}``;
- ``POST .../models/{model}:streamGenerateContent?alt=sse`` with ``contents``,
  ``systemInstruction`` and ``generationConfig``, answered as ``text/event-stream``:
  one ``data: {json}\\r\\n\\r\\n`` event per text piece, each a GenerateContentResponse
  (``candidates[0].content.parts[0].text``, role ``model``, running ``usageMetadata``),
  the last one carrying ``finishReason: STOP``;
- ``POST .../models/{model}:generateContent``: the same answer in one JSON body.

Errors use Google's error envelope. Each test scripts the next responses with
:meth:`GeminiStandIn.script`, reads what arrived in :attr:`GeminiStandIn.requests`,
and how each stream ended in :attr:`GeminiStandIn.stream_endings`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal, cast

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

JSONObject = dict[str, object]

# Every vector the stand-in returns has this norm, so a test can tell whether
# the adapter normalised it (the real API only normalises 3072-dim output).
RAW_NORM = 7.5
DEFAULT_PIECES = ("Stand-in ", "answer.")

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

ReplyKind = Literal["ok", "error", "hang", "cut", "truncated", "error_event", "garbled"]
StreamEnding = Literal["completed", "client_closed", "cut", "truncated", "error_event"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer; build it with the static methods."""

    kind: ReplyKind = "ok"
    status: int = 200
    hang_seconds: float = 0.0
    pieces: tuple[str, ...] = DEFAULT_PIECES
    delay_seconds: float = 0.0
    usage: bool = True
    finish_reason: str = "STOP"
    thoughts_tokens: int = 0

    @staticmethod
    def ok(
        *pieces: str,
        delay_seconds: float = 0.0,
        usage: bool = True,
        finish_reason: str = "STOP",
        thoughts_tokens: int = 0,
    ) -> Reply:
        """Embed, or generate ``pieces`` (one stream event each, ``delay_seconds`` apart).

        ``thoughts_tokens``: the model thought that much before its first piece (reported
        as ``usageMetadata.thoughtsTokenCount``, as thinking models do)."""
        return Reply(
            pieces=pieces or DEFAULT_PIECES,
            delay_seconds=delay_seconds,
            usage=usage,
            finish_reason=finish_reason,
            thoughts_tokens=thoughts_tokens,
        )

    @staticmethod
    def error(status: int) -> Reply:
        """Answer HTTP ``status`` with Google's error envelope, before any stream."""
        return Reply("error", status)

    @staticmethod
    def hang(seconds: float) -> Reply:
        """Sleep ``seconds`` before answering (successfully), to trip client timeouts."""
        return Reply("hang", 200, seconds)

    @staticmethod
    def garbled() -> Reply:
        """Answer 200 with a whole body that is not JSON (cut inside it, as a proxy may)."""
        return Reply("garbled")

    @staticmethod
    def cut(*pieces: str) -> Reply:
        """Stream ``pieces``, then drop the connection mid-body (an incomplete chunked read)."""
        return Reply("cut", pieces=pieces)

    @staticmethod
    def truncated(*pieces: str) -> Reply:
        """Stream ``pieces``, then end the body cleanly without any finishReason."""
        return Reply("truncated", pieces=pieces)

    @staticmethod
    def error_event(status: int, *pieces: str) -> Reply:
        """Stream ``pieces``, then an ``{"error": ...}`` event, as the API reports late faults."""
        return Reply("error_event", status, pieces=pieces)


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    path: str
    api_version: str
    model: str
    api_key: str | None
    body: JSONObject
    method: str = ""
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    """The request's headers, names in lower case."""

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

    @property
    def system_instruction(self) -> str:
        return _text_of({"content": self.body.get("systemInstruction", {})})

    @property
    def user_text(self) -> str:
        contents = cast(list[JSONObject], self.body.get("contents", []))
        return "\n".join(_text_of({"content": content}) for content in contents)

    @property
    def generation_config(self) -> JSONObject:
        return cast(JSONObject, self.body.get("generationConfig", {}))

    @property
    def prompt_token_count(self) -> int:
        """The stand-in's token count: whitespace-separated words sent to the model."""
        return len(self.system_instruction.split()) + len(self.user_text.split())


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


def completion_token_count(pieces: tuple[str, ...] | list[str]) -> int:
    return sum(len(piece.split()) for piece in pieces)


def _text_of(item: JSONObject) -> str:
    content = cast(JSONObject, item.get("content", {}))
    parts = cast(list[JSONObject], content.get("parts", []))
    return "".join(str(part.get("text", "")) for part in parts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _ScriptedCut(Exception):
    """Raised inside a started response so uvicorn drops the connection mid-body."""


class _QuietScriptedCuts(logging.Filter):
    """uvicorn logs an app exception as an error; a scripted cut is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _ScriptedCut))


_uvicorn_error_log = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _QuietScriptedCuts) for f in _uvicorn_error_log.filters):
    _uvicorn_error_log.addFilter(_QuietScriptedCuts())


@dataclass
class GeminiStandIn:
    """uvicorn + Starlette in a background thread on a free 127.0.0.1 port."""

    port: int = field(default_factory=_free_port)
    requests: list[ReceivedRequest] = field(default_factory=list)
    stream_endings: list[StreamEnding] = field(default_factory=list)
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
            self.stream_endings.clear()

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

    def _ended(self, ending: StreamEnding) -> None:
        with self._lock:
            self.stream_endings.append(ending)

    async def _handle(self, request: Request) -> Response:
        call = request.path_params["call"]
        model, _, method = call.partition(":")
        body = cast(JSONObject, await request.json())
        received = ReceivedRequest(
            path=request.url.path,
            api_version=request.path_params["version"],
            model=model,
            api_key=request.headers.get("x-goog-api-key"),
            body=body,
            method=method,
            query=request.url.query,
            headers=dict(request.headers),
        )
        with self._lock:
            self.requests.append(received)
            reply = self._replies.popleft() if self._replies else Reply.ok()
        if method not in ("batchEmbedContents", "streamGenerateContent", "generateContent"):
            return _error(404, f"stand-in does not implement {method}")
        if reply.kind == "error":
            return _error(reply.status, f"scripted {reply.status}")
        if reply.kind == "garbled":
            return Response(b'{"embeddings": [{"values": [0.25, ', media_type="application/json")
        if reply.kind == "hang" and not await _wait_unless_disconnected(
            request, reply.hang_seconds
        ):
            return JSONResponse({}, status_code=499)  # the client gave up; nobody reads this
        if method == "batchEmbedContents":
            embeddings = [
                {"values": fake_vector(_text_of(item), _dimensions(item))}
                for item in received.items
            ]
            return JSONResponse({"embeddings": embeddings})
        if method == "streamGenerateContent":
            return _EventStream(self, reply, received)
        if reply.kind == "cut":
            return _CutBody(b'{"candidates": [{"content": {"parts": [{"text": "')
        pieces = list(reply.pieces)
        return JSONResponse(_chunk("".join(pieces), received, pieces, reply, last=True))


class _EventStream(Response):
    """``text/event-stream`` of scripted pieces that notices when the client hangs up."""

    def __init__(self, standin: GeminiStandIn, reply: Reply, received: ReceivedRequest) -> None:
        super().__init__()
        # No Content-Length: the body is chunked and as long as the script makes it.
        self.raw_headers = [(b"content-type", b"text/event-stream")]
        self._standin = standin
        self._reply = reply
        self._received = received

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        hung_up = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, hung_up))
        try:
            ending = await self._stream(send, hung_up)
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
        self._standin._ended(ending)
        if ending == "cut":
            raise _ScriptedCut
        if ending != "client_closed":
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, send: Send, hung_up: asyncio.Event) -> StreamEnding:
        reply, pieces = self._reply, self._reply.pieces
        sent: list[str] = []
        for number, piece in enumerate(pieces):
            if number and reply.delay_seconds:
                with suppress(TimeoutError):
                    await asyncio.wait_for(hung_up.wait(), reply.delay_seconds)
            if hung_up.is_set():
                return "client_closed"
            sent.append(piece)
            last = reply.kind == "ok" and number == len(pieces) - 1
            await _send_event(send, _chunk(piece, self._received, sent, reply, last=last))
        if reply.kind == "error_event":
            await _send_event(send, _envelope(reply.status, f"scripted {reply.status}"))
            return "error_event"
        if reply.kind in ("cut", "truncated"):
            return reply.kind
        return "completed"


class _CutBody(Response):
    """A 200 whose body stops part way: the connection drops before the JSON is complete."""

    def __init__(self, partial: bytes) -> None:
        super().__init__()
        self.raw_headers = [(b"content-type", b"application/json; charset=UTF-8")]
        self._partial = partial

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self._partial, "more_body": True})
        raise _ScriptedCut


async def _send_event(send: Send, payload: JSONObject) -> None:
    data = f"data: {json.dumps(payload)}\r\n\r\n".encode()
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _watch_disconnect(receive: Receive, hung_up: asyncio.Event) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            hung_up.set()
            return


def _chunk(
    text: str, received: ReceivedRequest, sent: list[str], reply: Reply, *, last: bool
) -> JSONObject:
    """One GenerateContentResponse as the API sends it (usage is a running total)."""
    candidate: JSONObject = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if last:
        candidate["finishReason"] = reply.finish_reason
    chunk: JSONObject = {
        "candidates": [candidate],
        "modelVersion": received.model,
        "responseId": f"standin-{len(sent)}",
    }
    if reply.usage:
        prompt, completion = received.prompt_token_count, completion_token_count(sent)
        usage: JSONObject = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion + reply.thoughts_tokens,
        }
        if reply.thoughts_tokens:
            usage["thoughtsTokenCount"] = reply.thoughts_tokens
        chunk["usageMetadata"] = usage
    return chunk


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


def _envelope(status: int, message: str) -> JSONObject:
    return {
        "error": {
            "code": status,
            "message": message,
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(_envelope(status, message), status_code=status)


@contextmanager
def running_standin() -> Iterator[GeminiStandIn]:
    standin = GeminiStandIn()
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
