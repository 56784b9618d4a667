"""A plain POST's client hanging up: watch_for_disconnect notices it, and work run through
unless_set (``ask``'s answer) is cancelled then, and only then; any other cancellation
of the request still goes through."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from infrastructure.http.graphql_view import watch_for_disconnect
from schema.context import unless_set


class Client:
    """The request's ``receive`` once the body is read: nothing until a hang-up."""

    def __init__(self) -> None:
        self._messages: asyncio.Queue[Message] = asyncio.Queue()

    async def receive(self) -> Message:
        return await self._messages.get()

    def hang_up(self) -> None:
        self._messages.put_nowait({"type": "http.disconnect"})


class Operation:
    """Runs until released; records whether it was cancelled (and cleaned up)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cleaned_up = False

    async def run(self) -> str:
        self.started.set()
        try:
            await self.release.wait()
        finally:
            self.cleaned_up = not self.release.is_set()
        return "answer"


async def test_the_watch_notices_the_hang_up() -> None:
    client, gone = Client(), asyncio.Event()
    watcher = asyncio.create_task(watch_for_disconnect(client.receive, gone))
    await asyncio.sleep(0)
    assert not gone.is_set()
    client.hang_up()
    await asyncio.wait_for(watcher, 10)
    assert gone.is_set()


async def test_work_that_completes_returns_its_result() -> None:
    operation = Operation()
    operation.release.set()
    assert await unless_set(asyncio.Event(), operation.run()) == "answer"
    assert await unless_set(None, _done()) == "done"
    assert not operation.cleaned_up


async def _done() -> str:
    return "done"


async def test_a_hang_up_cancels_the_work_and_leaves_the_request_going() -> None:
    operation, gone = Operation(), asyncio.Event()

    async def request() -> str:
        try:
            return await unless_set(gone, operation.run())
        except asyncio.CancelledError:
            # The request's own task is not being cancelled: the view answers nobody.
            current = asyncio.current_task()
            assert current is not None and current.cancelling() == 0
            return "hung up"

    handling = asyncio.create_task(request())
    await operation.started.wait()
    gone.set()
    assert await asyncio.wait_for(handling, 10) == "hung up"
    assert operation.cleaned_up  # cancelled, and its clean-up ran before the request ended


async def test_a_hang_up_after_the_work_ended_changes_nothing() -> None:
    operation, gone = Operation(), asyncio.Event()
    operation.release.set()
    result = await unless_set(gone, operation.run())
    gone.set()
    assert result == "answer" and not operation.cleaned_up


async def test_cancelling_the_request_cancels_the_work_and_goes_through() -> None:
    operation, gone = Operation(), asyncio.Event()
    handling = asyncio.create_task(unless_set(gone, operation.run()))
    await operation.started.wait()
    handling.cancel()  # a server shutting down
    with pytest.raises(asyncio.CancelledError):
        await handling
    assert operation.cleaned_up
