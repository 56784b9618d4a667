"""A minimal HTTP/1.1 client for the measured requests of the query benchmark.

The load generator shares the API's two cores, so every millisecond of CPU it spends
per request is taken from the server it measures. httpx spends about 1.3 ms per
search (bench/README.md, run 21); this client keeps one plain keep-alive connection
per concurrent worker and spends a fraction of that. It speaks only what the
benchmark needs: POST with a JSON body, a response with Content-Length.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

MAX_HEADER_BYTES = 64 * 1024


class LeanHttpError(RuntimeError):
    pass


@dataclass
class LeanResponse:
    status_code: int
    body: bytes

    def json(self) -> Any:  # as httpx.Response.json: a JSON document of any shape
        return json.loads(self.body)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> LeanResponse:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEADER_BYTES:
            raise LeanHttpError("response headers too large")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length: int | None = None
        keep_alive = True
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep_alive = False
            elif name == "transfer-encoding":
                raise LeanHttpError(f"unsupported transfer encoding: {value.strip()}")
        if length is None:
            raise LeanHttpError("the response has no Content-Length")
        body = await self.reader.readexactly(length)
        if not keep_alive:
            self.close()
        return LeanResponse(status, body)

    @property
    def open(self) -> bool:
        return not self.writer.is_closing()

    @property
    def reusable(self) -> bool:
        """Still open, and the server has not closed its side (uvicorn closes a keep-alive
        connection after 5 idle seconds)."""
        return self.open and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class LeanHttpClient:
    """Keep-alive connections to one host, one per request in flight."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._idle: list[_Connection] = []

    async def post_json(
        self, path: str, payload: object, headers: dict[str, str] | None = None
    ) -> LeanResponse:
        body = json.dumps(payload, separators=(",", ":")).encode()
        lines = [
            f"POST {path} HTTP/1.1",
            f"host: {self._host}:{self._port}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        connection, reused = await self._connection()
        try:
            response = await connection.exchange(request)
        except asyncio.IncompleteReadError as error:
            connection.close()
            if not reused or error.partial:
                raise
            # The server closed the idle connection as the request went out, before any
            # byte of a response: nothing was processed, so it is sent once more, fresh.
            connection, reused = await self._connect(), False
            try:
                response = await connection.exchange(request)
            except BaseException:
                connection.close()
                raise
        except BaseException:
            connection.close()
            raise
        if connection.open:
            self._idle.append(connection)
        return response

    async def _connection(self) -> tuple[_Connection, bool]:
        """An idle connection the server still keeps open (True), or a new one."""
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection, True
            connection.close()
        return await self._connect(), False

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        while self._idle:
            connection = self._idle.pop()
            connection.close()
            await connection.writer.wait_closed()
