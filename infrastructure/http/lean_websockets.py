"""uvicorn's WebSocket protocol, lighter for connections that sit idle for hours.

uvicorn's sans-I/O protocol (what ``ws="auto"`` picks with websockets installed) keeps
an ``asyncio.Queue`` per connection for the app's ``receive()``: about 3 KB of deques
and an Event (tracemalloc), for a connection that mostly sits idle under a
subscription. The Inbox does the same job (unbounded, FIFO, ``put_nowait``/``get``/
``empty``, the only calls the protocol makes) in a few hundred bytes while idle. It
also kept the handshake's request and response (their parsed headers, ~3 KB) for the
connection's life, though it reads them only until the accept is sent.

uvicorn is pinned in the lock file; its WebSocket tests (tests/api/test_websocket.py and
every subscription test) run through this class.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from infrastructure.inbox import Inbox


class LeanWebSocketsProtocol(WebSocketsSansIOProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],  # uvicorn's own annotation
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.queue = Inbox()  # type: ignore[assignment]  # the calls it needs, not the class

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if self.handshake_complete and "response" in self.__dict__:
            del self.request, self.response
