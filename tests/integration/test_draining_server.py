"""DrainingServer's shutdown stays within one grace period: uvicorn waits for the
remaining requests only as long as draining the answers has left of it."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.types import Receive, Scope, Send

from infrastructure.http.draining import AnswerDrain, DrainingServer
from tests.conftest import free_port

GRACE_SECONDS = 1


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


def _served_then_stopped(drain: AnswerDrain) -> DrainingServer:
    """A DrainingServer that started and was then asked to stop, as SIGTERM does."""
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=free_port(),
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    server = DrainingServer(config, drain, GRACE_SECONDS)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
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
